"""Post-hoc attribution of answer sentences to retrieved passages (lens_rag.attribution)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from lens_rag.attribution import attribute_answer, attribution_summary, content_terms, split_sentences
from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import ConfigurationError

pytestmark = pytest.mark.unit

PASSAGES = [
    ScoredDocument(
        Document(id="v", content="Scurvy is caused by a lack of vitamin C in the diet.", meta={"title": "Vitamins"}),
        2.0,
        1,
    ),
    ScoredDocument(Document(id="e", content="Volcanoes erupt when magma rises through the crust."), 1.0, 2),
]


def test_sentences_keep_citation_marks_written_after_the_full_stop() -> None:
    text = "Yes. Scurvy comes from too little vitamin C [1]. It affects sailors. [2] Fruit helps!"
    assert split_sentences(text) == [
        "Yes.",
        "Scurvy comes from too little vitamin C [1].",
        "It affects sailors. [2]",
        "Fruit helps!",
    ]
    assert split_sentences("  ") == []


def test_content_terms_are_stemmed_without_stopwords_or_marks() -> None:
    assert content_terms("The volcanoes [2] are erupting") == ["volcano", "erupt"]


def test_each_sentence_gets_its_best_passage_or_is_unsupported() -> None:
    rows = attribute_answer(
        "Yes. A lack of vitamin C causes scurvy [2]. Magma rises and volcanoes erupt. Pizza is popular in Naples.",
        PASSAGES,
    )
    assert [(r.status, r.passage_number, r.document_id) for r in rows] == [
        ("trivial", None, None),
        ("supported", 1, "v"),
        ("supported", 2, "e"),
        ("unsupported", None, None),
    ]
    assert rows[1].inline == [2]  # the model's own (wrong) citation is kept apart from the attributed one
    assert rows[3].best_passage_number is not None and rows[3].support < 0.45
    assert attribution_summary(rows) == {
        "sentences": 4, "checked": 3, "supported": 2, "unsupported": 1, "passages": [1, 2],
    }  # fmt: skip


def test_dense_similarity_can_lift_a_paraphrase_above_the_threshold() -> None:
    answer = "Ascorbic acid deficiency leads to this illness."  # no shared word with passage 1

    def embed(texts: Sequence[str]) -> np.ndarray:
        # A toy embedding: "vitamin"/"ascorbic" texts point one way, everything else the other.
        return np.array([[1.0, 0.0] if ("vitamin" in t.lower() or "ascorbic" in t.lower()) else [0.0, 1.0]
                         for t in texts])  # fmt: skip

    lexical_only = attribute_answer(answer, PASSAGES)[0]
    with_dense = attribute_answer(answer, PASSAGES, embed=embed)[0]
    assert lexical_only.status == "unsupported"
    assert with_dense.status == "supported" and with_dense.passage_number == 1 and with_dense.dense == 1.0


def test_no_passages_or_empty_answer() -> None:
    assert attribute_answer("", PASSAGES) == []
    rows = attribute_answer("Scurvy needs vitamin C.", [])
    assert [r.status for r in rows] == ["unsupported"]


@pytest.mark.parametrize("kwargs", [{"threshold": 1.5}, {"lexical_weight": -0.1}])
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        attribute_answer("Scurvy needs vitamin C.", PASSAGES, **kwargs)
