"""LangChain's own contract suites against our retrievers and vector store, with real models.

Retrievers run over an embedded store holding `examples/data`, indexed with the packaged SPLADE-tiny
and MiniLM; LameR asks the real local LLM server through langchain-openai's `ChatOpenAI`.
The vector store suite runs on the embedded store and on real Elasticsearch.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import ClassVar

import pytest

pytest.importorskip("langchain_tests")

from langchain_core.vectorstores import VectorStore
from langchain_lens_rag import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    LameRRetriever,
    LensRagVectorStore,
    SparseRetriever,
)
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
from lens_rag.encoders.mlm import MLMSparseEncoder
from lens_rag.indexing import index_documents
from lens_rag.ingest import load_source
from lens_rag.llm.base import LLMCache
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
QUERY = "How do vitamins, aspirin and volcanoes affect health?"


@pytest.fixture(scope="module")
def encoders():
    return MLMSparseEncoder(progress=False), SentenceTransformerDenseEncoder(progress=False)


@pytest.fixture(scope="module")
def indexed_store(tmp_path_factory, encoders):
    sparse, dense = encoders
    store = EmbeddedStore(tmp_path_factory.mktemp("lc-store") / "store", progress=False)
    index_documents(
        store, list(load_source(DATA, progress=False)), sparse_encoder=sparse, dense_encoder=dense, progress=False
    )
    yield store
    store.close()


class _Base(RetrieversIntegrationTests):
    """Each suite gets the module's indexed store and encoders through an autouse fixture."""

    params: ClassVar[dict] = {}

    @pytest.fixture(autouse=True)
    def _setup(self, indexed_store, encoders):
        sparse, dense = encoders
        type(self).params = self.make_params(indexed_store, sparse, dense)

    @property
    def retriever_constructor_params(self) -> dict:
        return dict(self.params)

    @property
    def retriever_query_example(self) -> str:
        return QUERY

    @pytest.fixture
    def retriever(self, _setup):
        return self.retriever_constructor(**self.retriever_constructor_params)


class TestBM25RetrieverStandard(_Base):
    @property
    def retriever_constructor(self):
        return BM25Retriever

    def make_params(self, store, sparse, dense):
        return {"store": store}


class TestSparseRetrieverStandard(_Base):
    @property
    def retriever_constructor(self):
        return SparseRetriever

    def make_params(self, store, sparse, dense):
        return {"store": store, "encoder": sparse}


class TestDenseRetrieverStandard(_Base):
    @property
    def retriever_constructor(self):
        return DenseRetriever

    def make_params(self, store, sparse, dense):
        return {"store": store, "encoder": dense}


class TestHybridRetrieverStandard(_Base):
    @property
    def retriever_constructor(self):
        return HybridRetriever

    def make_params(self, store, sparse, dense):
        return {
            "retrievers": [
                BM25Retriever(store=store),
                SparseRetriever(store=store, encoder=sparse),
                DenseRetriever(store=store, encoder=dense),
            ]
        }


_LAMER_CACHE = LLMCache()  # one generation per distinct prompt across the suite's many constructions


class TestLameRRetrieverStandard(_Base):
    @property
    def retriever_constructor(self):
        return LameRRetriever

    def make_params(self, store, sparse, dense):
        import os

        from langchain_openai import ChatOpenAI

        url = os.environ.get("LENS_RAG_LLM_URL")
        if not url:
            if os.environ.get("LENS_RAG_REQUIRE_SERVICES"):
                pytest.fail("LENS_RAG_LLM_URL is not set")
            pytest.skip("LENS_RAG_LLM_URL is not set; start the local LLM server")
        llm = ChatOpenAI(
            base_url=url, api_key="not-needed", model=os.environ.get("LENS_RAG_LLM_MODEL") or "local", timeout=60
        )
        return {
            "retriever": BM25Retriever(store=store),
            "llm": llm,
            "n_answers": 1,
            "max_tokens": 24,
            "n_candidates": 2,
            "cache": _LAMER_CACHE,
        }


def test_lamer_really_used_the_llm(indexed_store, llm_url, llm_model):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=llm_url, api_key="not-needed", model=llm_model or "local", timeout=60)
    lamer = LameRRetriever(retriever=BM25Retriever(store=indexed_store), llm=llm, n_answers=1, max_tokens=24, k=2)
    with _no_fallback():
        docs = lamer.invoke(QUERY)
    assert len(docs) == 2
    assert lamer.as_core().stats.llm_calls == 1


class _no_fallback:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.records = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        from lens_rag.llm.base import LLMFallbackWarning

        fell_back = [w for w in self.records if issubclass(w.category, LLMFallbackWarning)]
        assert not fell_back, f"LameR fell back instead of using the LLM: {fell_back[0].message}"


class TestEmbeddedVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self) -> VectorStore:  # type: ignore[override]
        return LensRagVectorStore(self.get_embeddings(), store=EmbeddedStore(None, progress=False))


class TestElasticsearchVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, es_url):  # type: ignore[override]
        from lens_rag.stores.elasticsearch import ElasticsearchStore

        store = ElasticsearchStore(es_url, index=f"lens-rag-lc-{uuid.uuid4().hex[:10]}", progress=False)
        yield LensRagVectorStore(self.get_embeddings(), store=store)
        store.delete_index()
        store.close()
