"""Sparse and dense retrievers check, once, that the store's vectors were made by their encoder (contract 4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import lens_rag.identity as identity
from lens_rag.documents import Document
from lens_rag.errors import EncoderMismatchError
from lens_rag.identity import encoder_identity
from lens_rag.retrieval import DenseRetriever, SparseRetriever
from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit


class Sparse:
    name = "toy-sparse"

    def __init__(self, model: str = "toy-sparse-a") -> None:
        self.model = model

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [SparseVector.from_dict({0: 1.0}) for _ in texts]

    encode_documents = encode_queries

    def to_config(self) -> dict[str, Any]:
        return {"type": "toy", "model": self.model}

    def close(self) -> None: ...


class Dense:
    name = "toy-dense"
    dimension = 2

    def __init__(self, model: str = "toy-dense-a") -> None:
        self.model = model

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0, 0.0] for _ in texts]

    encode_documents = encode_queries

    def to_config(self) -> dict[str, Any]:
        return {"type": "toy", "model": self.model}

    def close(self) -> None: ...


@pytest.fixture
def store() -> EmbeddedStore:
    s = EmbeddedStore(None, progress=False)
    s.write_documents(
        [Document(id="d1", content="x", sparse_embedding=SparseVector.from_dict({0: 1.0}), embedding=[1.0, 0.0])]
    )
    s.set_info(
        {"encoders": {"sparse": encoder_identity(Sparse(), "sparse"), "dense": encoder_identity(Dense(), "dense")}}
    )
    return s


def test_the_recording_encoders_search(store: EmbeddedStore) -> None:
    assert [h.id for h in SparseRetriever(store, Sparse()).retrieve("q")] == ["d1"]
    assert [h.id for h in DenseRetriever(store, Dense()).retrieve("q")] == ["d1"]


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda s: SparseRetriever(s, Sparse("toy-sparse-b")), "sparse"),
        (lambda s: DenseRetriever(s, Dense("toy-dense-b")), "dense"),
    ],
)
async def test_other_encoders_are_refused_sync_and_async(store: EmbeddedStore, make: Any, kind: str) -> None:
    retriever = make(store)
    with pytest.raises(EncoderMismatchError, match=rf"toy-{kind}-a.*toy-{kind}-b|toy-{kind}-b.*toy-{kind}-a"):
        retriever.retrieve("q")
    with pytest.raises(EncoderMismatchError):
        await make(store).retrieve_async("q")


def test_the_check_runs_once(store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []
    real = identity.ensure_encoder

    def spy(s: Any, kind: str, encoder: Any, *, record: bool) -> None:
        calls.append((kind, record))
        real(s, kind, encoder, record=record)

    monkeypatch.setattr(identity, "ensure_encoder", spy)
    retriever = SparseRetriever(store, Sparse())
    for _ in range(3):
        retriever.retrieve("q")
    assert calls == [("sparse", False)]
