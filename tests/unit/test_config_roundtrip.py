"""Serialisable components (contract 3): the registry, and to_config -> JSON -> from_config round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lens_rag import config as cfg
from lens_rag.errors import ConfigurationError
from lens_rag.lamer import LameRRetriever
from lens_rag.llm.openai_client import OpenAICompatibleClient
from lens_rag.llm.transformers_client import TransformersClient
from lens_rag.rerank import CrossEncoderReranker, Reranker
from lens_rag.retrieval import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    RerankingRetriever,
    SparseRetriever,
)
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit

SECRET = "sk-very-secret-0123456789"


def _sparse_encoder() -> Any:
    from lens_rag.encoders.mlm import MLMSparseEncoder

    return MLMSparseEncoder("splade-tiny", progress=False)


def _dense_encoder() -> Any:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder

    return SentenceTransformerDenseEncoder(progress=False)


def _hybrid(store: Any) -> HybridRetriever:
    sparse, dense = _sparse_encoder(), _dense_encoder()
    return HybridRetriever(
        [BM25Retriever(store), SparseRetriever(store, sparse, query_top_k=32), DenseRetriever(store, dense)],
        fusion="rrf",
        weights={"bm25": 0.5, "sparse": 1.0, "dense": 2.0},
        candidate_k=40,
        name="three-way",
    )


def _json_round_trip(obj: Any) -> tuple[dict[str, Any], Any]:
    config = cfg.to_config(obj)
    text = json.dumps(config, allow_nan=False)  # JSON only: no objects, no NaN
    return config, cfg.from_config(json.loads(text))


def _assert_shared_parts(hybrid: HybridRetriever) -> None:
    bm25, sparse, dense = hybrid.retrievers
    assert isinstance(bm25, BM25Retriever) and isinstance(sparse, SparseRetriever)
    assert isinstance(dense, DenseRetriever)
    # One store instance for the three retrievers (one connection, one cache), as before saving.
    assert bm25.store is sparse.store is dense.store
    assert (hybrid.fusion, hybrid.weights, hybrid.candidate_k, hybrid.name) == (
        "rrf",
        {"bm25": 0.5, "sparse": 1.0, "dense": 2.0},
        40,
        "three-way",
    )
    assert sparse.query_top_k == 32


def test_registry_resolves_every_type_to_a_serialisable_class() -> None:
    for name in cfg.REGISTRY:
        cls = cfg.resolve(name)
        assert callable(getattr(cls, "from_config", None)), name
        assert callable(getattr(cls, "to_config", None)), name
        assert cfg.registered_type(cls) == name


def test_importing_the_registry_loads_no_model_library() -> None:
    code = "import sys, lens_rag.config; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_hybrid_of_three_over_an_embedded_store_round_trips(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store", bm25_k1=0.9, bm25_b=0.4, progress=False)
    hybrid = _hybrid(store)
    config, rebuilt = _json_round_trip(hybrid)
    assert config["type"] == "hybrid_retriever"
    assert [r["type"] for r in config["retrievers"]] == ["bm25_retriever", "sparse_retriever", "dense_retriever"]
    assert config["retrievers"][0]["store"]["type"] == "embedded_store"
    assert isinstance(rebuilt, HybridRetriever) and cfg.to_config(rebuilt) == config
    _assert_shared_parts(rebuilt)
    assert isinstance(rebuilt.retrievers[0].store, EmbeddedStore)
    assert rebuilt.retrievers[0].store.bm25_k1 == 0.9
    assert not (tmp_path / "store").exists()  # construction did no I/O
    assert rebuilt.retrievers[1].encoder._model is None  # nor loaded a model


def test_hybrid_of_three_over_an_elasticsearch_store_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    from lens_rag.stores.elasticsearch import ElasticsearchStore

    monkeypatch.setenv("ES_API_KEY", SECRET)
    # Nothing listens on port 9: construction and the round trip must not connect.
    store = ElasticsearchStore(url="http://127.0.0.1:9", index="lens-config-test", dense_dims=384, progress=False)
    hybrid = _hybrid(store)
    config, rebuilt = _json_round_trip(hybrid)
    assert config["retrievers"][0]["store"]["type"] == "elasticsearch_store"
    assert SECRET not in json.dumps(config)
    assert isinstance(rebuilt, HybridRetriever) and cfg.to_config(rebuilt) == config
    _assert_shared_parts(rebuilt)
    rebuilt_store = rebuilt.retrievers[0].store
    assert isinstance(rebuilt_store, ElasticsearchStore) and rebuilt_store.index == "lens-config-test"
    assert rebuilt_store._client is None and rebuilt_store._async_client is None
    for secret_kwargs in ({"api_key": SECRET}, {"basic_auth": ("elastic", SECRET)}):
        by_value = ElasticsearchStore(url="http://127.0.0.1:9", index="lens-config-test", **secret_kwargs)
        assert SECRET not in json.dumps(cfg.to_config(HybridRetriever([BM25Retriever(by_value)])))


def test_reranking_and_lamer_round_trip_with_nested_reranker_and_llm(tmp_path: Path) -> None:
    store = EmbeddedStore(None, progress=False)
    bm25 = BM25Retriever(store)
    llm = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="MY_KEY", n_mode="loop")
    lamer = LameRRetriever(bm25, llm, second_stage=_hybrid(store), n_answers=3, domain="scifact", cache=tmp_path)
    reranked = RerankingRetriever(lamer, CrossEncoderReranker("some/cross-encoder", top_k=5), candidate_k=20)
    config, rebuilt = _json_round_trip(reranked)
    assert cfg.to_config(rebuilt) == config
    assert config["reranker"]["type"] == "cross_encoder_reranker"
    inner = config["retriever"]
    assert inner["type"] == "lamer_retriever" and inner["llm"]["api_key_env"] == "MY_KEY"
    assert inner["template"] is None and inner["domain"] == "scientific" and inner["cache"] == str(tmp_path)
    assert isinstance(rebuilt, RerankingRetriever) and isinstance(rebuilt.reranker, Reranker)
    assert isinstance(rebuilt.retriever, LameRRetriever) and rebuilt.retriever.n_answers == 3
    # The first stage's store and the hybrid's are one store again.
    second = rebuilt.retriever.second_stage
    assert isinstance(second, HybridRetriever)
    assert rebuilt.retriever.first_stage.store is second.retrievers[0].store  # type: ignore[attr-defined]


def test_lamer_with_one_stage_and_a_local_llm_keeps_one_stage() -> None:
    bm25 = BM25Retriever(EmbeddedStore(None, progress=False))
    lamer = LameRRetriever(bm25, TransformersClient(seed=7), template="Q: {query}\n{candidates}", cache=False)
    config, rebuilt = _json_round_trip(lamer)
    assert config["second_stage"] is None and config["llm"]["type"] == "transformers"
    assert config["template"] == "Q: {query}\n{candidates}" and config["cache"] is False
    assert rebuilt.second_stage is rebuilt.first_stage and rebuilt.cache is None
    assert cfg.to_config(rebuilt) == config


def test_no_secret_in_any_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LENS_RAG_LLM_API_KEY", SECRET)
    monkeypatch.setenv("MY_KEY", SECRET)
    by_env = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="MY_KEY")
    by_value = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m", api_key=SECRET)
    default = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m")
    for client in (by_env, by_value, default):
        assert client._resolve_api_key() == SECRET  # the key is in use ...
        lamer = LameRRetriever(BM25Retriever(EmbeddedStore(None, progress=False)), client)
        assert SECRET not in json.dumps(cfg.to_config(lamer))  # ... and never saved


def test_equal_nested_configs_share_one_instance_only_within_one_call() -> None:
    store_config = EmbeddedStore(None, progress=False).to_config()
    a = cfg.from_config({"type": "bm25_retriever", "store": store_config, "name": "a"})
    b = cfg.from_config({"type": "bm25_retriever", "store": store_config, "name": "b"})
    assert a.store is not b.store  # separate top-level calls build separate stores
    both = cfg.from_config(
        {
            "type": "hybrid_retriever",
            "retrievers": [
                {"type": "bm25_retriever", "store": store_config, "name": "a"},
                {"type": "bm25_retriever", "store": store_config, "name": "b"},
            ],
        }
    )
    assert both.retrievers[0].store is both.retrievers[1].store


def test_direct_class_from_config_matches_the_registry() -> None:
    config = BM25Retriever(EmbeddedStore(None, progress=False), name="lex").to_config()
    assert BM25Retriever.from_config(config).to_config() == config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"store": {}}, "has no 'type'"),
        ({"type": "nope"}, "unknown component type 'nope'"),
        ({"type": "bm25_retriever"}, "BM25Retriever config needs 'store'"),
        ({"type": "bm25_retriever", "store": {"type": "embedded_store"}, "nmae": "x"}, r"unknown BM25Retriever"),
        ({"type": "hybrid_retriever", "retrievers": "bm25"}, "must be a list of configs"),
    ],
)
def test_bad_configs_are_named(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        cfg.from_config(config)


def test_components_without_to_config_are_refused_clearly() -> None:
    class Custom:
        name = "custom"

        def retrieve(self, query: str, top_k: int = 10, filters: Any = None) -> list[Any]:
            return []

        async def retrieve_async(self, query: str, top_k: int = 10, filters: Any = None) -> list[Any]:
            return []

    hybrid = HybridRetriever([Custom(), BM25Retriever(EmbeddedStore(None, progress=False))])
    with pytest.raises(ConfigurationError, match=r"Custom has no to_config\(\).*lens_rag.config.register"):
        cfg.to_config(hybrid)


def test_register_a_custom_component() -> None:
    class Echo:
        def __init__(self, word: str) -> None:
            self.word = word

        def to_config(self) -> dict[str, Any]:
            return {"type": "test_echo", "word": self.word}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Echo:
            return cls(config["word"])

    cfg.register("test_echo", Echo)
    try:
        assert cfg.from_config(cfg.to_config(Echo("hi"))).word == "hi"
        with pytest.raises(ConfigurationError, match="already registered"):
            cfg.register("test_echo", "somewhere:Else")
    finally:
        del cfg.REGISTRY["test_echo"]


def test_encoders_round_trip_with_a_registered_type(tmp_path: Path) -> None:
    from lens_rag.encoders.lens import LENSEncoder

    for encoder in (_sparse_encoder(), _dense_encoder(), LENSEncoder(model=str(tmp_path))):
        config, rebuilt = _json_round_trip(encoder)
        assert type(rebuilt) is type(encoder) and cfg.to_config(rebuilt) == config
        assert cfg.registered_type(type(encoder)) == config["type"]
