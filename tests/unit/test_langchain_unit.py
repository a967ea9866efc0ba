"""LangChain adapter: retrievers, vector store, compressor and chat-model client on fakes (no models, no server)."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document as LCDocument
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.retrievers import BaseRetriever
from langchain_lens_rag import (
    BM25Retriever,
    ChatModelClient,
    CrossEncoderCompressor,
    DenseRetriever,
    HybridRetriever,
    LameRRetriever,
    LensRagVectorStore,
    RerankingRetriever,
    SparseRetriever,
)

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import ConfigurationError, LLMError
from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit

TEXTS = {
    "scurvy": ("Scurvy is caused by a lack of vitamin C.", {"topic": "nutrition", "year": 1930}),
    "rickets": ("Rickets is caused by a lack of vitamin D.", {"topic": "nutrition", "year": 1920}),
    "aspirin": ("Aspirin lowers the risk of heart attack.", {"topic": "cardiology", "year": 1990}),
    "volcano": ("Magma reaches the surface in volcanoes.", {"topic": "geology", "year": 2001}),
}


def _words(text: str) -> list[str]:
    return [w.strip(".,?").lower() for w in text.split() if len(w) > 2]


def _bucket(word: str, n: int) -> int:
    return int(hashlib.md5(word.encode()).hexdigest(), 16) % n


class FakeSparse:
    name = "fake-sparse"

    def warm_up(self) -> None: ...

    def _encode(self, texts):
        out = []
        for t in texts:
            idx = sorted({_bucket(w, 1000) for w in _words(t)})
            out.append(SparseVector(np.asarray(idx, dtype=np.int64), np.ones(len(idx), dtype=np.float32)))
        return out

    encode_queries = encode_documents = _encode

    def to_config(self):
        return {"type": "fake"}


class FakeDense:
    name = "fake-dense"
    dimension = 64

    def warm_up(self) -> None: ...

    def _encode(self, texts):
        out = []
        for t in texts:
            v = np.zeros(64, dtype=np.float32)
            for w in _words(t):
                v[_bucket(w, 64)] += 1.0
            out.append(v.tolist())
        return out

    encode_queries = encode_documents = _encode

    def to_config(self):
        return {"type": "fake"}


class FakeEmbeddings:
    """LangChain Embeddings over FakeDense."""

    def __init__(self) -> None:
        self.encoder = FakeDense()

    def embed_documents(self, texts):
        return self.encoder.encode_documents(texts)

    def embed_query(self, text):
        return self.encoder.encode_queries([text])[0]

    async def aembed_documents(self, texts):
        return self.embed_documents(texts)

    async def aembed_query(self, text):
        return self.embed_query(text)


@pytest.fixture()
def store() -> EmbeddedStore:
    s = EmbeddedStore(None, progress=False)
    sparse, dense = FakeSparse(), FakeDense()
    docs = [
        Document(
            id=i,
            content=t,
            meta=m,
            embedding=dense.encode_documents([t])[0],
            sparse_embedding=sparse.encode_documents([t])[0],
        )
        for i, (t, m) in TEXTS.items()
    ]
    s.write_documents(docs)
    return s


def _hybrid(store):
    return HybridRetriever(
        retrievers=[
            BM25Retriever(store=store),
            SparseRetriever(store=store, encoder=FakeSparse()),
            DenseRetriever(store=store, encoder=FakeDense()),
        ],
        k=3,
    )


def test_k_constructor_and_per_call(store):
    r = BM25Retriever(store=store, k=1)
    assert len(r.invoke("vitamin lack")) == 1
    assert len(r.invoke("vitamin lack", k=2)) == 2
    assert r.invoke("vitamin lack", k=0) == []
    with pytest.raises(ConfigurationError, match="k must be an integer"):
        r.invoke("vitamin lack", k=-1)


def test_unknown_kwarg_is_an_error_not_silently_ignored(store):
    with pytest.raises(TypeError):
        BM25Retriever(store=store).invoke("vitamin", top_k=2)


def test_documents_carry_store_id_and_scores(store):
    docs = BM25Retriever(store=store).invoke("vitamin C scurvy")
    assert docs[0].id == "scurvy"
    assert docs[0].metadata["topic"] == "nutrition"
    assert docs[0].metadata["rank"] == 1
    assert docs[0].metadata["sources"]["bm25"]["rank"] == 1
    assert docs[0].metadata["lens_rag"]["score"] == pytest.approx(docs[0].metadata["score"])


def test_user_metadata_named_score_is_kept(store):
    store.write_documents([Document(id="s", content="vitamin C score card", meta={"score": "A+"})])
    doc = next(d for d in BM25Retriever(store=store, k=5).invoke("vitamin score card") if d.id == "s")
    assert doc.metadata["score"] == "A+"
    assert isinstance(doc.metadata["lens_rag"]["score"], float)


def test_hybrid_fuses_by_id_with_every_source(store):
    docs = _hybrid(store).invoke("lack of vitamin C")
    assert len(docs) == 3
    assert docs[0].id == "scurvy"
    assert set(docs[0].metadata["sources"]) == {"bm25", "sparse", "dense"}
    assert len({d.id for d in docs}) == 3


def test_filters_constructor_and_call_are_anded(store):
    r = DenseRetriever(store=store, encoder=FakeDense(), filters={"topic": "nutrition"}, k=4)
    assert {d.id for d in r.invoke("lack of vitamin")} == {"scurvy", "rickets"}
    try:
        narrowed = r.invoke("lack of vitamin", filters={"year": {"gte": 1925}})
    except ConfigurationError:
        pytest.skip("the core filter language has no $and yet")
    assert {d.id for d in narrowed} == {"scurvy"}


async def test_async_matches_sync(store):
    hybrid = _hybrid(store)
    sync_ids = [d.id for d in hybrid.invoke("heart attack aspirin", k=2)]
    async_ids = [d.id for d in await hybrid.ainvoke("heart attack aspirin", k=2)]
    assert sync_ids == async_ids and len(sync_ids) == 2


def test_batch(store):
    results = BM25Retriever(store=store, k=1).batch(["vitamin C", "magma volcanoes"])
    assert [r[0].id for r in results] == ["scurvy", "volcano"]


class _StaticRetriever(BaseRetriever):
    docs: list[LCDocument]

    def _get_relevant_documents(self, query, *, run_manager):
        return self.docs


def test_foreign_retriever_merges_by_id(store):
    foreign = _StaticRetriever(
        docs=[LCDocument(id="volcano", page_content="other text"), LCDocument(page_content="no id at all")]
    )
    docs = HybridRetriever(retrievers=[BM25Retriever(store=store), foreign], k=10).invoke("magma volcanoes")
    ids = [d.id for d in docs]
    assert ids.count("volcano") == 1
    volcano = next(d for d in docs if d.id == "volcano")
    assert set(volcano.metadata["sources"]) == {"bm25", "_StaticRetriever"}
    assert any(i.startswith("sha1:") for i in ids)


def test_foreign_retriever_refuses_lens_filters(store):
    foreign = _StaticRetriever(docs=[])
    hybrid = HybridRetriever(retrievers=[BM25Retriever(store=store), foreign])
    with pytest.raises(ConfigurationError, match="not a lens-rag retriever"):
        hybrid.invoke("x", filters={"topic": "geology"})


class ReverseReranker:
    """Reverses candidates (a deterministic stand-in for a cross-encoder)."""

    def rerank(self, query, documents, top_k=None):
        out = [
            ScoredDocument(document=d.document, score=float(i), rank=i + 1, sources={**d.sources})
            for i, d in enumerate(reversed(list(documents)))
        ]
        return out if top_k is None else out[:top_k]

    async def rerank_async(self, query, documents, top_k=None):
        return self.rerank(query, documents, top_k)

    def to_config(self):
        return {"type": "reverse"}


def test_reranking_retriever(store):
    first = BM25Retriever(store=store, k=4)
    firsts = [d.id for d in first.invoke("vitamin lack", k=4)]
    reranked = RerankingRetriever(retriever=first, reranker=ReverseReranker(), candidate_k=len(firsts), k=2)
    assert [d.id for d in reranked.invoke("vitamin lack")] == list(reversed(firsts))[:2]


def test_compressor_keeps_metadata_and_adds_relevance(store):
    docs = [LCDocument(id="a", page_content="one", metadata={"m": 1}), LCDocument(id="b", page_content="two")]
    out = CrossEncoderCompressor(reranker=ReverseReranker(), top_n=1).compress_documents(docs, "q")
    assert [d.id for d in out] == ["b"]
    assert "relevance_score" in out[0].metadata
    assert asyncio.run(CrossEncoderCompressor(reranker=ReverseReranker(), top_n=None).acompress_documents(docs, "q"))


def test_chat_model_client_samples_n_and_wraps_errors():
    client = ChatModelClient(FakeListChatModel(responses=["a1", "a2", "a3"]))
    assert client.generate("question?", n=3, temperature=1.0, max_tokens=8) == ["a1", "a2", "a3"]

    class Broken(FakeListChatModel):
        def _call(self, *args, **kwargs):
            raise RuntimeError("down")

    with pytest.raises(LLMError, match="down"):
        ChatModelClient(Broken(responses=["x"])).generate("q")


def test_lamer_with_a_langchain_chat_model(store):
    llm = FakeListChatModel(responses=["Scurvy comes from missing vitamin C in the diet."] * 5)
    lamer = LameRRetriever(retriever=BM25Retriever(store=store), llm=llm, n_answers=2, k=2)
    docs = lamer.invoke("what disease?")
    assert docs[0].id == "scurvy"


def test_vector_store_add_get_delete_search(store):
    vs = LensRagVectorStore(FakeEmbeddings())
    ids = vs.add_texts(["vitamin C scurvy", "magma volcano"], metadatas=[{"t": 1}, {"t": 2}], ids=["a", "b"])
    assert ids == ["a", "b"]
    assert [d.id for d in vs.get_by_ids(["b", "a"])] == ["b", "a"]
    (doc, score), *_ = vs.similarity_search_with_score("volcano magma", k=1)
    assert doc.id == "b" and score == pytest.approx(1.0, abs=1e-5)
    assert [d.id for d in vs.similarity_search("scurvy", k=2, filter={"t": 1})] == ["a"]
    assert vs.delete(["a"]) is True
    assert vs.get_by_ids(["a"]) == []
    rel = vs.similarity_search_with_relevance_scores("volcano magma", k=1)
    assert 0.0 <= rel[0][1] <= 1.0


def test_our_result_keys_do_not_leak_back_into_metadata(store):
    from langchain_lens_rag._convert import from_lc_document

    doc = BM25Retriever(store=store).invoke("vitamin C scurvy")[0]
    assert from_lc_document(doc).meta == TEXTS["scurvy"][1]
    nested = HybridRetriever(retrievers=[_hybrid(store), BM25Retriever(store=store, name="bm25b")], k=1)
    top = nested.invoke("lack of vitamin C")[0]
    assert set(top.metadata["sources"]) >= {"hybrid", "bm25b"}
