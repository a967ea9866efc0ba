from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError
from lens_rag.retrieval import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    RerankingRetriever,
    Retriever,
    SparseRetriever,
)
from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit

VOCAB = ["vitamin", "scurvy", "aspirin", "heart", "volcano", "magma"]


class WordSparse:
    """A stand-in sparse encoder: one dimension per known word (unit tier, no model)."""

    name = "words"

    def warm_up(self) -> None: ...

    def _vec(self, text: str) -> SparseVector:
        words = text.lower().replace("?", " ").split()
        return SparseVector.from_dict({VOCAB.index(w): 1.0 for w in words if w in VOCAB})

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self._vec(t) for t in texts]

    encode_documents = encode_queries


class WordDense(WordSparse):
    dimension = len(VOCAB)

    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]:  # type: ignore[override]
        out = []
        for t in texts:
            v = [0.0] * len(VOCAB)
            for i, w in zip(self._vec(t).indices, self._vec(t).values):
                v[int(i)] = float(w)
            out.append(v)
        return out

    encode_documents = encode_queries  # type: ignore[assignment]


TEXTS = {
    "a": "scurvy comes from missing vitamin c",
    "b": "aspirin protects the heart",
    "c": "volcano magma",
    "d": "vitamin d and heart",
}


@pytest.fixture
def store() -> EmbeddedStore:
    s = EmbeddedStore(None, progress=False)
    sparse, dense = WordSparse(), WordDense()
    s.write_documents(
        [
            Document(
                id=k,
                content=v,
                sparse_embedding=sparse.encode_documents([v])[0],
                embedding=dense.encode_documents([v])[0],
            )
            for k, v in TEXTS.items()
        ]
    )
    return s


def test_single_retrievers_label_their_sources(store: EmbeddedStore) -> None:
    for r in (BM25Retriever(store), SparseRetriever(store, WordSparse()), DenseRetriever(store, WordDense())):
        assert isinstance(r, Retriever)
        hits = r.retrieve("scurvy vitamin", top_k=2)
        assert hits[0].id == "a"
        assert list(hits[0].sources) == [r.name]
    named = BM25Retriever(store, name="lexical").retrieve("scurvy", top_k=1)
    assert list(named[0].sources) == ["lexical"]


def test_hybrid_keeps_per_source_scores_and_separates_depth(store: EmbeddedStore) -> None:
    hybrid = HybridRetriever(
        [BM25Retriever(store), SparseRetriever(store, WordSparse()), DenseRetriever(store, WordDense())],
        candidate_k=3,
        fusion="rrf",
    )
    hits = hybrid.retrieve("vitamin heart", top_k=2)
    assert len(hits) == 2
    assert hits[0].id == "d"  # first in all three lists
    assert set(hits[0].sources) == {"bm25", "sparse", "dense"}
    assert hits[0].score == pytest.approx(3 / 61)
    minmax = HybridRetriever([BM25Retriever(store), DenseRetriever(store, WordDense())])
    assert minmax.fusion == "minmax"  # the default, see HybridRetriever's docstring
    assert minmax.retrieve("vitamin heart", top_k=1)[0].score == pytest.approx(2.0)  # top of both lists


def test_async_matches_sync(store: EmbeddedStore) -> None:
    hybrid = HybridRetriever([BM25Retriever(store), DenseRetriever(store, WordDense())], fusion="dbsf")
    sync = hybrid.retrieve("aspirin heart", top_k=3)
    asyn = asyncio.run(hybrid.retrieve_async("aspirin heart", top_k=3))
    assert [(h.id, h.score) for h in sync] == [(h.id, h.score) for h in asyn]


def test_sparse_query_pruning(store: EmbeddedStore) -> None:
    r = SparseRetriever(store, WordSparse(), query_top_k=1)
    assert len(r._encode("scurvy vitamin heart")) == 1
    with pytest.raises(ConfigurationError, match="query_top_k"):
        SparseRetriever(store, WordSparse(), query_top_k=0)


def test_hybrid_validation(store: EmbeddedStore) -> None:
    with pytest.raises(ConfigurationError, match="at least one retriever"):
        HybridRetriever([])
    with pytest.raises(ConfigurationError, match="names must be unique"):
        HybridRetriever([BM25Retriever(store), BM25Retriever(store)])
    with pytest.raises(ConfigurationError, match="weights name unknown"):
        HybridRetriever([BM25Retriever(store)], weights={"dense": 1.0})
    with pytest.raises(ConfigurationError, match="top_k must be >= 0"):
        BM25Retriever(store).retrieve("x", top_k=-1)


def test_reranking_retriever_reorders(store: EmbeddedStore) -> None:
    class Reverse:
        def rerank(self, query: str, documents: list, top_k: int | None = None) -> list:
            out = list(reversed(documents))
            return out[:top_k] if top_k is not None else out

    r = RerankingRetriever(BM25Retriever(store), Reverse(), candidate_k=10)
    base = BM25Retriever(store).retrieve("vitamin heart", top_k=10)
    assert [h.id for h in r.retrieve("vitamin heart", top_k=1)] == [base[-1].id]
