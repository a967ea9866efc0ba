"""Async paths never block the event loop: a heartbeat task keeps ticking while they run (unit tier, fakes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import pytest
from _llm_fakes import FakeRetriever

from lens_rag.answer import answer_question_async
from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.lamer import LameRRetriever
from lens_rag.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever
from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit

T = TypeVar("T")

BLOCK_S = 0.3  # each fake call blocks its thread this long
MAX_GAP_S = 0.15  # a heartbeat every 10 ms may be late, but never by a whole blocking call


async def run_with_heartbeat(awaitable: Awaitable[T], interval: float = 0.01) -> tuple[T, float]:
    """Await `awaitable` while a task ticks every `interval`; return its result and the longest gap between ticks."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(interval)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(heartbeat())
    await asyncio.sleep(interval * 3)  # the heartbeat is running
    try:
        result = await awaitable
    finally:
        done.set()
        await task
    return result, max(gaps)


class SlowSyncStore:
    """A store with only sync searches that block (as a disk- or CPU-bound store does)."""

    def __init__(self) -> None:
        self.doc = Document(id="d1", content="vitamin c")

    def _hits(self, label: str) -> list[ScoredDocument]:
        time.sleep(BLOCK_S)
        return [ScoredDocument(self.doc, score=1.0, rank=1, sources={label: SourceHit(score=1.0, rank=1)})]

    def search_bm25(self, query: str, top_k: int = 10, filters: Any = None) -> list[ScoredDocument]:
        return self._hits("bm25")

    def search_sparse(self, query: SparseVector, top_k: int = 10, filters: Any = None) -> list[ScoredDocument]:
        return self._hits("sparse")

    def search_dense(self, query: Sequence[float], top_k: int = 10, filters: Any = None) -> list[ScoredDocument]:
        return self._hits("dense")


class SlowSparse:
    name = "slow-sparse"

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        time.sleep(BLOCK_S)
        return [SparseVector.from_dict({0: 1.0}) for _ in texts]

    encode_documents = encode_queries

    def to_config(self) -> dict[str, Any]:
        return {"type": "slow-sparse"}

    def close(self) -> None: ...


class SlowDense:
    name = "slow-dense"
    dimension = 2

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]:
        time.sleep(BLOCK_S)
        return [[1.0, 0.0] for _ in texts]

    encode_documents = encode_queries

    def to_config(self) -> dict[str, Any]:
        return {"type": "slow-dense"}

    def close(self) -> None: ...


async def test_the_heartbeat_sees_a_blocked_loop() -> None:
    """Control: the measurement catches blocking, so the tests below can fail."""

    async def blocks() -> None:
        time.sleep(BLOCK_S)

    _, gap = await run_with_heartbeat(blocks())
    assert gap >= BLOCK_S * 0.9


async def test_hybrid_over_a_sync_only_store_keeps_the_loop_responsive() -> None:
    store = SlowSyncStore()
    hybrid = HybridRetriever(
        [BM25Retriever(store), SparseRetriever(store, SlowSparse()), DenseRetriever(store, SlowDense())]  # type: ignore[arg-type]
    )
    start = time.perf_counter()
    hits, gap = await run_with_heartbeat(hybrid.retrieve_async("vitamin c", top_k=3))
    elapsed = time.perf_counter() - start
    assert [h.id for h in hits] == ["d1"] and set(hits[0].sources) == {"bm25", "sparse", "dense"}
    assert gap < MAX_GAP_S, f"the event loop was blocked for {gap * 1000:.0f} ms"
    # The three retrievers ran concurrently: about two blocking calls deep (encode, then search), not six.
    assert elapsed < 5 * BLOCK_S


async def test_hybrid_over_an_embedded_store_keeps_the_loop_responsive() -> None:
    store = EmbeddedStore(None, progress=False)
    store.write_documents(
        [
            Document(id="d1", content="vitamin c", sparse_embedding=SparseVector.from_dict({0: 1.0}), embedding=[1, 0]),
            Document(id="d2", content="magma", sparse_embedding=SparseVector.from_dict({1: 1.0}), embedding=[0, 1]),
        ]
    )
    hybrid = HybridRetriever(
        [BM25Retriever(store), SparseRetriever(store, SlowSparse()), DenseRetriever(store, SlowDense())]
    )
    hits, gap = await run_with_heartbeat(hybrid.retrieve_async("vitamin", top_k=2))
    assert hits[0].id == "d1"
    assert gap < MAX_GAP_S, f"the event loop was blocked for {gap * 1000:.0f} ms"


class SlowNameLLM:
    """An LLM client whose `model` property blocks (as an OpenAI client asking /v1/models does)."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def model(self) -> str:
        time.sleep(BLOCK_S)
        return "slow-name"

    def generate(self, prompt: Any, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]:
        raise AssertionError("the sync path must not be used from async code")

    async def generate_async(
        self, prompt: Any, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256
    ) -> list[str]:
        self.calls += 1
        await asyncio.sleep(0.01)
        return ["vitamin c answer [1]"] * n

    def to_config(self) -> dict[str, Any]:
        return {"type": "slow-name"}


async def test_lamer_and_answer_never_read_a_blocking_model_name_on_the_loop() -> None:
    llm = SlowNameLLM()
    lamer = LameRRetriever(FakeRetriever(), llm, n_answers=2)  # type: ignore[arg-type]
    hits, gap = await run_with_heartbeat(lamer.retrieve_async("vitamin", top_k=3))
    assert len(hits) == 3 and llm.calls == 1
    assert gap < MAX_GAP_S, f"LameR blocked the event loop for {gap * 1000:.0f} ms"
    answer, gap = await run_with_heartbeat(answer_question_async("vitamin?", FakeRetriever(), llm))  # type: ignore[arg-type]
    assert answer.model == "slow-name" and answer.cited
    assert gap < MAX_GAP_S, f"answer_question_async blocked the event loop for {gap * 1000:.0f} ms"


async def test_lamer_disk_cache_is_read_off_the_loop(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lens_rag.llm.base import LLMCache

    original_get = LLMCache.get

    def slow_get(self: LLMCache, key: str) -> list[str] | None:
        time.sleep(BLOCK_S)
        return original_get(self, key)

    monkeypatch.setattr(LLMCache, "get", slow_get)
    llm = SlowNameLLM()
    lamer = LameRRetriever(FakeRetriever(), llm, n_answers=1, cache=tmp_path)  # type: ignore[arg-type]
    _, gap = await run_with_heartbeat(lamer.augment_async("vitamin"))
    augmented, gap2 = await run_with_heartbeat(lamer.augment_async("vitamin"))
    assert augmented.cached and llm.calls == 1
    assert max(gap, gap2) < MAX_GAP_S, f"the LLM cache blocked the event loop for {max(gap, gap2) * 1000:.0f} ms"
