"""Haystack components over fake encoders, a fake cross-encoder, a fake chat generator and a fake ES client.

Everything here is offline and fast: the core does the work (in-memory embedded store, fusion, LameR),
the fakes only replace model forward passes and network calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from haystack import Document, Pipeline, component
from haystack.dataclasses import ChatMessage, SparseEmbedding
from haystack.errors import FilterError
from haystack_integrations.components.embedders.lens_rag import (
    LensRagDenseDocumentEmbedder,
    LensRagDenseTextEmbedder,
    LensRagSparseDocumentEmbedder,
    LensRagSparseTextEmbedder,
)
from haystack_integrations.components.joiners.lens_rag import LensRagDocumentJoiner
from haystack_integrations.components.query.lens_rag import LensRagLameRQueryAugmenter
from haystack_integrations.components.rankers.lens_rag import LensRagRanker
from haystack_integrations.components.retrievers.lens_rag import (
    LensRagBM25Retriever,
    LensRagDenseRetriever,
    LensRagHybridRetriever,
    LensRagLameRRetriever,
    LensRagSparseRetriever,
)
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

from lens_rag.errors import ConfigurationError
from lens_rag.sparse import SparseVector

pytestmark = pytest.mark.unit

VOCAB = ["scurvy", "vitamin", "aspirin", "heart", "volcano", "magma", "lack", "risk"]
TEXTS = {
    "d1": "Scurvy is caused by a lack of vitamin C.",
    "d2": "Aspirin lowers the risk of heart attack.",
    "d3": "Magma reaches the surface in volcano eruptions.",
}


class FakeSparse:
    """Bag of known words: weight 1 per vocabulary word the text contains."""

    name = "fake-sparse"

    def __init__(self) -> None:
        self.calls = 0

    def warm_up(self) -> None: ...

    def _one(self, text: str) -> SparseVector:
        idx = [i for i, w in enumerate(VOCAB) if w in text.lower()]
        return SparseVector.from_arrays(idx, [1.0] * len(idx))

    def encode_queries(self, texts: list[str]) -> list[SparseVector]:
        return [self._one(t) for t in texts]

    def encode_documents(self, texts: list[str]) -> list[SparseVector]:
        self.calls += 1
        return [self._one(t) for t in texts]

    def to_config(self) -> dict[str, Any]:
        return {"type": "mlm", "model": "fake-sparse"}


class FakeDense(FakeSparse):
    name = "fake-dense"
    dimension = len(VOCAB)

    def _vec(self, text: str) -> list[float]:
        v = np.zeros(len(VOCAB), dtype=np.float32) + 0.01
        v[self._one(text).indices] = 1.0
        return (v / np.linalg.norm(v)).tolist()

    def encode_queries(self, texts: list[str]) -> list[list[float]]:  # type: ignore[override]
        return [self._vec(t) for t in texts]

    def encode_documents(self, texts: list[str]) -> list[list[float]]:  # type: ignore[override]
        self.calls += 1
        return [self._vec(t) for t in texts]

    def to_config(self) -> dict[str, Any]:
        return {"type": "sentence-transformers", "model": "fake-dense"}


def _with(embedder: Any, encoder: Any) -> Any:
    embedder._encoder = encoder
    return embedder


@pytest.fixture
def store() -> LensRagDocumentStore:
    store = LensRagDocumentStore()
    docs = [Document(id=i, content=t, meta={"n": k}) for k, (i, t) in enumerate(TEXTS.items())]
    docs = _with(LensRagSparseDocumentEmbedder(), FakeSparse()).run(docs)["documents"]
    docs = _with(LensRagDenseDocumentEmbedder(), FakeDense()).run(docs)["documents"]
    store.write_documents(docs)
    return store


# ---------------------------------------------------------------------------------------------- embedders


def test_embedders_do_not_load_on_construction() -> None:
    for cls in (LensRagSparseTextEmbedder, LensRagSparseDocumentEmbedder, LensRagDenseTextEmbedder):
        assert cls()._encoder is None


def test_sparse_embedder_to_dict_default_and_custom() -> None:
    assert LensRagSparseTextEmbedder().to_dict() == {
        "type": "haystack_integrations.components.embedders.lens_rag.sparse.LensRagSparseTextEmbedder",
        "init_parameters": {
            "model": "splade-tiny",
            "batch_size": None,
            "max_length": None,
            "device": None,
            "progress_bar": True,
            "encoder_kwargs": None,
            "query_top_k": None,
        },
    }
    custom = LensRagSparseDocumentEmbedder(
        "/models/lens", batch_size=4, progress_bar=False, meta_fields_to_embed=["title"], cache_dir="/tmp/c"
    ).to_dict()["init_parameters"]
    assert custom["model"] == "/models/lens" and custom["batch_size"] == 4 and custom["progress_bar"] is False
    assert custom["meta_fields_to_embed"] == ["title"] and custom["cache_dir"] == "/tmp/c"
    back = LensRagSparseDocumentEmbedder.from_dict(LensRagSparseDocumentEmbedder(batch_size=4).to_dict())
    assert back.batch_size == 4
    minimal = {"type": LensRagDenseTextEmbedder().to_dict()["type"], "init_parameters": {}}
    assert LensRagDenseTextEmbedder.from_dict(minimal).model == "all-MiniLM-L6-v2"


def test_embedders_build_the_core_encoder_from_their_parameters() -> None:
    sparse = LensRagSparseTextEmbedder(batch_size=3, max_length=64, progress_bar=False).encoder
    assert sparse.to_config()["batch_size"] == 3 and sparse.to_config()["max_length"] == 64
    assert sparse.to_config()["progress"] is False
    dense = LensRagDenseDocumentEmbedder(prompt="passage: ", normalize=False).encoder
    assert dense.to_config()["document_prompt"] == "passage: " and dense.to_config()["normalize"] is False
    assert LensRagDenseTextEmbedder(prompt="query: ").encoder.to_config()["query_prompt"] == "query: "


def test_sparse_text_embedder_output_and_query_top_k() -> None:
    out = _with(LensRagSparseTextEmbedder(), FakeSparse()).run(text="vitamin and scurvy")["sparse_embedding"]
    assert out == SparseEmbedding(indices=[0, 1], values=[1.0, 1.0])
    top = _with(LensRagSparseTextEmbedder(query_top_k=1), FakeSparse()).run(text="vitamin and scurvy")
    assert len(top["sparse_embedding"].indices) == 1
    with pytest.raises(TypeError, match="LensRagSparseDocumentEmbedder"):
        LensRagSparseTextEmbedder().run(text=[Document(content="x")])  # type: ignore[arg-type]


def test_document_embedders_return_new_documents_and_use_meta_fields() -> None:
    doc = Document(id="a", content="lowers risk", meta={"title": "Aspirin"})
    out = _with(LensRagSparseDocumentEmbedder(meta_fields_to_embed=["title"]), FakeSparse()).run([doc])["documents"]
    assert doc.sparse_embedding is None  # input untouched
    assert out[0].sparse_embedding.indices == [2, 7]  # "aspirin" from the title, "risk" from the content
    dense = _with(LensRagDenseDocumentEmbedder(), FakeDense()).run([doc])["documents"][0]
    assert len(dense.embedding) == len(VOCAB) and dense.id == "a"
    with pytest.raises(TypeError, match="list of Documents"):
        LensRagDenseDocumentEmbedder().run("not documents")  # type: ignore[arg-type]


def test_document_embedder_cache_encodes_each_text_once(tmp_path) -> None:
    encoder = FakeSparse()
    embedder = _with(LensRagSparseDocumentEmbedder(cache_dir=str(tmp_path)), encoder)
    docs = [Document(id="a", content="scurvy"), Document(id="b", content="heart")]
    first = embedder.run(docs)["documents"]
    again = embedder.run([*docs, Document(id="c", content="magma")])["documents"]
    assert encoder.calls == 2  # second run encoded only "c"
    assert [d.sparse_embedding for d in again[:2]] == [d.sparse_embedding for d in first]


# ---------------------------------------------------------------------------------------------- retrievers


def test_retrievers_run_and_run_async_agree(store: LensRagDocumentStore) -> None:
    sparse_q = _with(LensRagSparseTextEmbedder(), FakeSparse()).run(text="heart risk")["sparse_embedding"]
    dense_q = _with(LensRagDenseTextEmbedder(), FakeDense()).run(text="heart risk")["embedding"]
    cases = [
        (LensRagBM25Retriever(document_store=store), {"query": "heart risk"}),
        (LensRagSparseRetriever(document_store=store), {"query_sparse_embedding": sparse_q}),
        (LensRagDenseRetriever(document_store=store), {"query_embedding": dense_q}),
    ]
    for retriever, args in cases:
        docs = retriever.run(**args)["documents"]
        assert docs[0].id == "d2" and docs[0].score is not None
        assert docs[0].embedding is None  # search results carry no vectors
        assert asyncio.run(retriever.run_async(**args))["documents"] == docs


def test_retriever_filters_policy_and_top_k(store: LensRagDocumentStore) -> None:
    only_d1 = {"field": "meta.n", "operator": "==", "value": 0}
    retriever = LensRagBM25Retriever(document_store=store, filters=only_d1, top_k=5)
    assert [d.id for d in retriever.run(query="heart risk")["documents"]] == []
    assert [d.id for d in retriever.run(query="heart", filters={"field": "id", "operator": "==", "value": "d2"})[
        "documents"
    ]] == ["d2"]  # fmt: skip
    merge = LensRagBM25Retriever(document_store=store, filters=only_d1, filter_policy="merge")
    assert merge.run(query="heart", filters={"field": "id", "operator": "==", "value": "d2"})["documents"] == []
    assert LensRagBM25Retriever(document_store=store).run(query="heart", top_k=0)["documents"] == []
    with pytest.raises(FilterError):
        retriever.run(query="x", filters={"operator": "AND"})


def test_retriever_refuses_other_stores_and_round_trips(store: LensRagDocumentStore) -> None:
    with pytest.raises(ValueError, match="LensRagElasticsearchSparseRetriever"):
        LensRagSparseRetriever(document_store=object())  # type: ignore[arg-type]
    retriever = LensRagDenseRetriever(document_store=store, top_k=3, filter_policy="merge", filters={"a": 1})
    data = retriever.to_dict()
    assert data["init_parameters"] == {
        "document_store": store.to_dict(),
        "filters": {"a": 1},
        "top_k": 3,
        "filter_policy": "merge",
    }
    back = LensRagDenseRetriever.from_dict(data)
    assert back.top_k == 3 and back.filter_policy.value == "merge" and isinstance(back.document_store, type(store))


# ---------------------------------------------------------------------------------------------- joiner


def _docs(*ids_scores: tuple[str, float]) -> list[Document]:
    return [Document(id=i, content=i, score=s) for i, s in ids_scores]


def test_joiner_rrf_worked_example_keeps_every_source() -> None:
    joiner = LensRagDocumentJoiner(sources=["bm25", "dense"], fusion="rrf")
    out = joiner.run(bm25=_docs(("a", 9.0), ("b", 5.0)), dense=_docs(("b", 0.9), ("c", 0.5)))["documents"]
    assert [d.id for d in out] == ["b", "a", "c"]
    assert out[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert out[0].meta["lens_rag_sources"] == {"bm25": {"score": 5.0, "rank": 2}, "dense": {"score": 0.9, "rank": 1}}
    assert out[2].meta["lens_rag_sources"] == {"dense": {"score": 0.5, "rank": 2}}


def test_joiner_minmax_weights_top_k_and_missing_inputs() -> None:
    joiner = LensRagDocumentJoiner(fusion="minmax", weights={"bm25": 0.0}, top_k=1)
    out = joiner.run(bm25=_docs(("a", 9.0), ("b", 5.0)), dense=_docs(("b", 0.9), ("a", 0.1)))["documents"]
    assert [d.id for d in out] == ["b"]  # bm25 weighs nothing
    assert joiner.run(dense=_docs(("x", 1.0)))["documents"][0].id == "x"  # unconnected sockets are ignored
    assert len(joiner.run(top_k=5, bm25=_docs(("a", 1.0), ("b", 0.5)))["documents"]) == 2


def test_joiner_feeding_a_joiner_keeps_upstream_sources() -> None:
    first = LensRagDocumentJoiner(sources=["bm25", "dense"]).run(bm25=_docs(("a", 2.0)), dense=_docs(("a", 0.5)))
    second = LensRagDocumentJoiner(sources=["hybrid", "lamer"], fusion="rrf").run(
        hybrid=first["documents"], lamer=_docs(("a", 3.0))
    )
    assert set(second["documents"][0].meta["lens_rag_sources"]) == {"bm25", "dense", "hybrid", "lamer"}


def test_joiner_validates_and_round_trips() -> None:
    with pytest.raises(ConfigurationError, match="fusion"):
        LensRagDocumentJoiner(fusion="sum")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown sources"):
        LensRagDocumentJoiner(weights={"elser": 1.0})
    joiner = LensRagDocumentJoiner(sources=["x", "y"], fusion="dbsf", weights={"x": 2.0}, rrf_k=10, top_k=3)
    back = LensRagDocumentJoiner.from_dict(joiner.to_dict())
    assert (back.sources, back.fusion, back.weights, back.rrf_k, back.top_k) == (["x", "y"], "dbsf", {"x": 2.0}, 10, 3)
    assert LensRagDocumentJoiner.from_dict({"type": joiner.to_dict()["type"], "init_parameters": {}}).sources == [
        "bm25",
        "sparse",
        "dense",
    ]


# ---------------------------------------------------------------------------------------------- hybrid


def _hybrid(store: LensRagDocumentStore, **kwargs: Any) -> LensRagHybridRetriever:
    return LensRagHybridRetriever(
        document_store=store,
        sparse_embedder=_with(LensRagSparseTextEmbedder(), FakeSparse()),
        dense_embedder=_with(LensRagDenseTextEmbedder(), FakeDense()),
        **kwargs,
    )


def test_hybrid_super_component_equals_the_core_fusion(store: LensRagDocumentStore) -> None:
    from lens_rag.fusion import fuse

    hybrid = _hybrid(store, top_k=2, candidate_k=3)
    out = hybrid.run(query="heart risk")["documents"]
    assert next(d.id for d in out) == "d2" and len(out) == 2
    assert set(out[0].meta["lens_rag_sources"]) == {"bm25", "sparse", "dense"}
    core = store.store
    lists = {
        "bm25": core.search_bm25("heart risk", top_k=3),
        "sparse": core.search_sparse(FakeSparse().encode_queries(["heart risk"])[0], top_k=3),
        "dense": core.search_dense(FakeDense().encode_queries(["heart risk"])[0], top_k=3),
    }
    expected = fuse(lists, "minmax", top_k=2)
    assert [(d.id, pytest.approx(d.score)) for d in out] == [(h.id, h.score) for h in expected]
    assert asyncio.run(hybrid.run_async(query="heart risk"))["documents"] == out
    only = hybrid.run(query="heart risk", filters={"field": "id", "operator": "==", "value": "d1"}, top_k=5)
    assert [d.id for d in only["documents"]] == ["d1"]


def test_hybrid_subset_of_sources_and_round_trip(store: LensRagDocumentStore) -> None:
    hybrid = _hybrid(store, sources=["bm25", "dense"], fusion="rrf", weights={"dense": 2.0})
    out = hybrid.run(query="heart risk")["documents"]
    assert set(out[0].meta["lens_rag_sources"]) == {"bm25", "dense"}
    assert out[0].score == pytest.approx(1 / 61 + 2 / 61)  # rank 1 in both, dense weighs 2
    # The same components wired by hand (embedders -> retrievers -> joiner) give the same documents.
    p = Pipeline()
    p.add_component("embedder", _with(LensRagDenseTextEmbedder(), FakeDense()))
    p.add_component("bm25", LensRagBM25Retriever(document_store=store, top_k=100))
    p.add_component("dense", LensRagDenseRetriever(document_store=store, top_k=100))
    p.add_component("joiner", LensRagDocumentJoiner(sources=["bm25", "dense"], fusion="rrf", weights={"dense": 2.0}))
    p.connect("embedder.embedding", "dense.query_embedding")
    p.connect("bm25.documents", "joiner.bm25")
    p.connect("dense.documents", "joiner.dense")
    by_hand = p.run({"embedder": {"text": "heart risk"}, "bm25": {"query": "heart risk"}, "joiner": {"top_k": 10}})
    assert [(d.id, d.score, d.meta) for d in by_hand["joiner"]["documents"]] == [(d.id, d.score, d.meta) for d in out]
    data = hybrid.to_dict()
    back = LensRagHybridRetriever.from_dict(data)
    assert back.to_dict() == data
    with pytest.raises(ConfigurationError, match="sources"):
        _hybrid(store, sources=["bm25", "elser"])


# ---------------------------------------------------------------------------------------------- ranker


class FakeCrossEncoder:
    def predict(self, pairs: list[tuple[str, str]], **_: Any) -> np.ndarray:
        return np.array([float(len(set(q.split()) & set(p.lower().split()))) for q, p in pairs])


def test_ranker_reorders_and_keeps_sources() -> None:
    ranker = LensRagRanker("some/cross-encoder", top_k=2)
    assert ranker.reranker._model is None  # nothing loaded at construction
    ranker.reranker._model = FakeCrossEncoder()
    joined = LensRagDocumentJoiner(sources=["bm25"]).run(
        bm25=[Document(id="x", content="nothing here", score=3.0), Document(id="y", content="heart risk", score=1.0)]
    )["documents"]
    out = ranker.run(query="heart risk", documents=joined)["documents"]
    assert [d.id for d in out] == ["y", "x"] and out[0].score == 2.0
    assert out[0].meta["lens_rag_sources"]["bm25"] == {"score": 1.0, "rank": 2}
    assert out[0].meta["lens_rag_sources"]["fused"]["rank"] == 2
    assert out[0].meta["lens_rag_sources"]["rerank"] == {"score": 2.0, "rank": 1}
    assert asyncio.run(ranker.run_async(query="heart risk", documents=joined))["documents"] == out
    assert ranker.run(query="heart risk", documents=joined, top_k=0)["documents"] == []
    assert LensRagRanker.from_dict(ranker.to_dict()).to_dict() == ranker.to_dict()


# ---------------------------------------------------------------------------------------------- LameR


@component
class FakeChatGenerator:
    """Answers one reply per call (like llama.cpp, which ignores `n`), or fails when asked to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage], generation_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("server down")
        self.calls.append(generation_kwargs or {})
        return {"replies": [ChatMessage.from_assistant(f"vitamin C answer {len(self.calls)}")]}


def test_lamer_augmenter_with_a_chat_generator() -> None:
    generator = FakeChatGenerator()
    augmenter = LensRagLameRQueryAugmenter(chat_generator=generator, n_answers=2, n_candidates=1)
    out = augmenter.run(query="scurvy?", documents=_docs(("d1", 1.0), ("d2", 0.5)))
    assert out == {
        "query": "scurvy? vitamin C answer 1 scurvy? vitamin C answer 2",
        "answers": ["vitamin C answer 1", "vitamin C answer 2"],
        "fell_back": False,
    }
    assert generator.calls[0] == {"n": 2, "temperature": 1.0, "max_tokens": 128}  # asked again for the second
    assert asyncio.run(augmenter.run_async(query="scurvy?", documents=_docs(("d1", 1.0))))["query"] == out["query"]


def test_lamer_augmenter_falls_back_loudly() -> None:
    from lens_rag.llm.base import LLMFallbackWarning

    augmenter = LensRagLameRQueryAugmenter(chat_generator=FakeChatGenerator(fail=True))
    with pytest.warns(LLMFallbackWarning, match="server down"):
        out = augmenter.run(query="scurvy?", documents=[])
    assert out == {"query": "scurvy?", "answers": [], "fell_back": True}


def test_lamer_augmenter_serialises_generator_or_core_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from haystack.components.generators.chat import OpenAIChatGenerator
    from haystack.utils import Secret

    monkeypatch.setenv("LLM_KEY", "not-a-real-key")
    generator = OpenAIChatGenerator(api_key=Secret.from_env_var("LLM_KEY"), model="m", api_base_url="http://h/v1")
    data = LensRagLameRQueryAugmenter(chat_generator=generator, domain="scifact").to_dict()
    assert "not-a-real-key" not in str(data)
    back = LensRagLameRQueryAugmenter.from_dict(data)
    assert isinstance(back.chat_generator, OpenAIChatGenerator) and back.lamer.domain == "scientific"
    core = LensRagLameRQueryAugmenter(llm_config={"type": "openai", "base_url": "http://h/v1", "model": "m"})
    assert LensRagLameRQueryAugmenter.from_dict(core.to_dict()).lamer.llm.model == "m"
    with pytest.raises(ConfigurationError, match="not both"):
        LensRagLameRQueryAugmenter(chat_generator=generator, llm_config={"type": "openai"})


def test_lamer_retriever_second_stage_searches_the_augmented_query(store: LensRagDocumentStore) -> None:
    # No passage mentions "deficiency disease"; the fake LLM answers "vitamin C answer N", which BM25 then finds.
    generator = FakeChatGenerator()
    augmenter = LensRagLameRQueryAugmenter(chat_generator=generator, n_answers=2, n_candidates=2)
    lamer = LensRagLameRRetriever(document_store=store, augmenter=augmenter, top_k=1)
    out = lamer.run(query="deficiency disease")
    assert out["fell_back"] is False and [d.id for d in out["documents"]] == ["d1"]
    assert len(generator.calls) == 2
    failing = LensRagLameRRetriever(
        document_store=store, augmenter=LensRagLameRQueryAugmenter(chat_generator=FakeChatGenerator(fail=True))
    )
    with pytest.warns(UserWarning, match="fell back"):
        fallback = failing.run(query="deficiency disease", top_k=1)
    assert fallback["fell_back"] is True and fallback["documents"] == []  # the original query finds nothing
    core_llm = LensRagLameRQueryAugmenter(llm_config={"type": "openai", "base_url": "http://h/v1", "model": "m"})
    data = LensRagLameRRetriever(document_store=store, augmenter=core_llm, top_k=3).to_dict()
    assert LensRagLameRRetriever.from_dict(data).to_dict() == data
    with pytest.raises(ConfigurationError, match="second_stage"):
        LensRagLameRRetriever(document_store=store, augmenter=augmenter, second_stage="dense")


# ---------------------------------------------------------------------------------------------- pipelines


def test_indexing_and_query_pipelines_connect(store: LensRagDocumentStore) -> None:
    pipeline = Pipeline()
    pipeline.add_component("embedder", _with(LensRagSparseTextEmbedder(), FakeSparse()))
    pipeline.add_component("sparse", LensRagSparseRetriever(document_store=store))
    pipeline.add_component("bm25", LensRagBM25Retriever(document_store=store))
    pipeline.add_component("joiner", LensRagDocumentJoiner(sources=["bm25", "sparse"], fusion="rrf"))
    pipeline.connect("embedder.sparse_embedding", "sparse.query_sparse_embedding")
    pipeline.connect("sparse.documents", "joiner.sparse")
    pipeline.connect("bm25.documents", "joiner.bm25")
    result = pipeline.run({"embedder": {"text": "scurvy vitamin"}, "bm25": {"query": "scurvy vitamin"}})
    top = result["joiner"]["documents"][0]
    assert top.id == "d1" and set(top.meta["lens_rag_sources"]) == {"bm25", "sparse"}
