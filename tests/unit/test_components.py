from __future__ import annotations

from pathlib import Path

import pytest

from lens_rag.components import Encoders, build_retriever, method_needs
from lens_rag.errors import ConfigurationError
from lens_rag.retrieval import BM25Retriever, HybridRetriever
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("method", "needs"),
    [
        ("bm25", {"bm25"}),
        ("hybrid", {"bm25", "sparse", "dense"}),
        ("hybrid:bm25+dense", {"bm25", "dense"}),
        ("lamer", {"bm25"}),
        ("lamer:hybrid:sparse+dense", {"sparse", "dense"}),
    ],
)
def test_method_needs(method: str, needs: set[str]) -> None:
    assert method_needs(method) == needs


@pytest.mark.parametrize("method", ["bm42", "hybrid:bm25+tfidf", "dense:x"])
def test_unknown_methods_are_named(method: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown method"):
        build_retriever(method, EmbeddedStore(None), Encoders())


def test_build_retriever_is_lazy_and_typed() -> None:
    store = EmbeddedStore(None)
    enc = Encoders()
    assert isinstance(build_retriever("bm25", store, enc), BM25Retriever)
    hybrid = build_retriever("hybrid:bm25+dense", store, enc, fusion="rrf")
    assert isinstance(hybrid, HybridRetriever) and hybrid.fusion == "rrf"
    assert [r.name for r in hybrid.retrievers] == ["bm25", "dense"]
    assert enc._dense is not None and enc._dense._model is None  # type: ignore[attr-defined]  # built, not loaded


def test_lamer_needs_an_llm() -> None:
    with pytest.raises(ConfigurationError, match="needs an LLM"):
        build_retriever("lamer", EmbeddedStore(None), Encoders())


def test_a_lens_directory_picks_the_lens_encoder(tmp_path: Path) -> None:
    (tmp_path / "lens_config.json").write_text("{}")
    assert type(Encoders(sparse_model=str(tmp_path)).sparse).__name__ == "LENSEncoder"
    assert type(Encoders().sparse).__name__ == "MLMSparseEncoder"
