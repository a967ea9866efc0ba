"""Encoder identity: recorded on the first write, checked on every later write and search (no models load)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError, EncoderMismatchError
from lens_rag.identity import encoder_identity, ensure_encoder, identity_from_config, recorded_identity
from lens_rag.indexing import index_documents
from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit


class FakeSparse:
    def __init__(self, model: str = "fake-splade", max_length: int = 256, **runtime: Any) -> None:
        self.name = model
        self.model = model
        self.max_length = max_length
        self.runtime = {"progress": True, "batch_size": 32, "device": None, **runtime}

    def warm_up(self) -> None:
        pass

    def _encode(self, texts: Sequence[str]) -> list[SparseVector]:
        return [SparseVector([len(t) % 7 + 1], [1.0]) for t in texts]

    encode_queries = encode_documents = _encode

    def to_config(self) -> dict[str, Any]:
        return {"type": "fake", "model": self.model, "max_length": self.max_length, **self.runtime}


class FakeDense:
    def __init__(self, model: str = "fake-minilm", dimension: int = 4, normalize: bool = True) -> None:
        self.name = model
        self.model = model
        self._dimension = dimension
        self.normalize = normalize

    @property
    def dimension(self) -> int:
        return self._dimension

    def warm_up(self) -> None:
        pass

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] + [0.0] * (self._dimension - 1) for _ in texts]

    encode_queries = encode_documents = _encode

    def to_config(self) -> dict[str, Any]:
        return {"type": "fake-dense", "model": self.model, "normalize": self.normalize, "batch_size": 8}


class InfoStore:
    """The smallest store with info: enough to test the bookkeeping without the embedded store."""

    def __init__(self, info: dict[str, Any] | None = None, count: int = 0) -> None:
        self._info = dict(info or {})
        self.count = count
        self.path = Path("/tmp/fake-store")

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def set_info(self, info: dict[str, Any]) -> None:
        self._info = dict(info)

    def count_documents(self) -> int:
        return self.count


def test_identity_ignores_runtime_keys_but_not_model_settings() -> None:
    base = encoder_identity(FakeSparse())
    assert base["kind"] == "sparse" and base["name"] == "fake-splade" and base["dimension"] is None
    assert encoder_identity(FakeSparse(batch_size=4, device="cuda", progress=False, threads=2)) == base
    assert encoder_identity(FakeSparse(max_length=128))["config_hash"] != base["config_hash"]
    assert encoder_identity(FakeSparse("other"))["config_hash"] != base["config_hash"]
    assert "batch_size" not in base["config"] and base["config"]["max_length"] == 256


def test_dense_identity_has_its_dimension_and_the_kind_is_guessed() -> None:
    ident = encoder_identity(FakeDense(dimension=8))
    assert ident["kind"] == "dense" and ident["dimension"] == 8 and ident["name"] == "fake-minilm"
    with pytest.raises(ConfigurationError, match="kind"):
        encoder_identity(FakeDense(), kind="colbert")


def test_a_local_model_path_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert encoder_identity(FakeSparse("my-model"))["name"] == str(tmp_path / "my-model")
    assert (
        encoder_identity(FakeSparse("./my-model/"))["config_hash"]
        == encoder_identity(FakeSparse("my-model"))["config_hash"]
    )


def test_first_write_records_and_merges_into_info() -> None:
    store = InfoStore({"eval_dataset": "scifact"})
    ensure_encoder(store, "sparse", FakeSparse(), record=True)
    ensure_encoder(store, "dense", FakeDense(), record=True)
    assert store.info["eval_dataset"] == "scifact"
    assert set(store.info["encoders"]) == {"sparse", "dense"}
    assert store.info["encoders"]["dense"]["dimension"] == 4


def test_search_without_a_record_records_nothing() -> None:
    store = InfoStore(count=3)
    ensure_encoder(store, "sparse", FakeSparse(), record=False)
    assert store.info == {}


@pytest.mark.parametrize("record", [True, False])
def test_another_encoder_is_refused_naming_both(record: bool) -> None:
    store = InfoStore(count=5)
    ensure_encoder(store, "sparse", FakeSparse(), record=True)
    with pytest.raises(EncoderMismatchError) as caught:
        ensure_encoder(store, "sparse", FakeSparse("naver/splade-v3"), record=record)
    message = str(caught.value)
    assert "'fake-splade'" in message and "'naver/splade-v3'" in message
    assert "re-index into a new store" in message and "--sparse-model fake-splade" in message
    assert ("write to" if record else "search") in message
    assert isinstance(caught.value, ConfigurationError)
    assert store.info["encoders"]["sparse"]["name"] == "fake-splade"  # the record is untouched


def test_a_different_dense_dimension_or_setting_is_refused() -> None:
    store = InfoStore(count=1)
    ensure_encoder(store, "dense", FakeDense(dimension=4), record=True)
    ensure_encoder(store, "dense", FakeDense(dimension=4), record=False)
    with pytest.raises(EncoderMismatchError, match="dimension"):
        ensure_encoder(store, "dense", FakeDense(dimension=8), record=False)
    with pytest.raises(EncoderMismatchError, match="settings that differ: normalize"):
        ensure_encoder(store, "dense", FakeDense(normalize=False), record=False)


def test_an_empty_store_takes_the_new_encoder() -> None:
    store = InfoStore(count=0)
    ensure_encoder(store, "sparse", FakeSparse(), record=True)
    ensure_encoder(store, "sparse", FakeSparse("other"), record=True)
    assert store.info["encoders"]["sparse"]["name"] == "other"


def test_legacy_info_is_read_and_upgraded() -> None:
    legacy = {"sparse": {"type": "fake", "model": "fake-splade", "max_length": 256, "progress": False}}
    assert recorded_identity(legacy, "sparse") == identity_from_config("sparse", legacy["sparse"])
    store = InfoStore(legacy, count=2)
    with pytest.raises(EncoderMismatchError):
        ensure_encoder(store, "sparse", FakeSparse("other"), record=False)
    ensure_encoder(store, "sparse", FakeSparse(), record=True)
    assert store.info["encoders"]["sparse"]["name"] == "fake-splade" and "sparse" in store.info


def test_stores_without_info_are_not_checked() -> None:
    ensure_encoder(object(), "sparse", FakeSparse(), record=True)
    ensure_encoder(InfoStore(), "sparse", None, record=True)


def test_index_documents_records_then_refuses_another_encoder(tmp_path: Path) -> None:
    docs = [Document(id=f"d{i}", content=f"text number {i}") for i in range(3)]
    with EmbeddedStore(tmp_path / "s", progress=False) as store:
        index_documents(store, docs, sparse_encoder=FakeSparse(), dense_encoder=FakeDense(), progress=False)
        assert store.info["encoders"]["sparse"]["name"] == "fake-splade"
    with EmbeddedStore(tmp_path / "s", progress=False) as store:
        more = [Document(id="d9", content="another text")]
        with pytest.raises(EncoderMismatchError, match="'fake-minilm'"):
            index_documents(store, more, dense_encoder=FakeDense("other-dense"), progress=False)
        assert store.count_documents() == 3  # nothing was written
        index_documents(store, more, sparse_encoder=FakeSparse(batch_size=1), progress=False)
        assert store.count_documents() == 4
