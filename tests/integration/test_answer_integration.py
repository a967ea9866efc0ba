"""`answer_question` with the real local LLM: it cites at least one retrieved passage (structure, not wording)."""

from __future__ import annotations

import json

import pytest
from _tiny_bm25 import TinyBM25

from lens_rag.answer import answer_question, format_answer
from lens_rag.llm import OpenAICompatibleClient

pytestmark = pytest.mark.integration


def test_answer_cites_a_retrieved_passage(llm_url, llm_model):
    llm = OpenAICompatibleClient(base_url=llm_url, model=llm_model, timeout=120.0)
    answer = answer_question(
        "Does vitamin D supplementation reduce fractures in older adults?", TinyBM25(), llm, top_k=3
    )
    assert answer.answer_text.strip()
    assert answer.cited, f"no citation in: {answer.answer_text!r}"
    passage_ids = [p.id for p in answer.passages]
    for citation in answer.citations:
        assert passage_ids[citation.number - 1] == citation.document_id
    data = json.loads(answer.to_json())
    assert {c["document_id"] for c in data["citations"]} <= set(passage_ids)
    assert "Sources:" in format_answer(answer)
