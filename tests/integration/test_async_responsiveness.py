"""Async retrieval with real models and services keeps the event loop free (integration tier).

- A heartbeat task ticking every 10 ms never waits more than 100 ms while a hybrid `retrieve_async`
  (BM25 + SPLADE-tiny + MiniLM) runs over an embedded store.
- One `ElasticsearchStore` serves two successive `asyncio.run` loops (its async client is per loop).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from lens_rag.documents import Document
from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
from lens_rag.encoders.mlm import MLMSparseEncoder
from lens_rag.indexing import index_documents
from lens_rag.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

T = TypeVar("T")

MAX_GAP_S = 0.1

PASSAGES = {
    "scurvy": "Scurvy is a disease resulting from a lack of vitamin C; symptoms include bleeding gums.",
    "stocks": "The stock market closed higher on Friday as technology shares rallied.",
    "photo": "Photosynthesis converts light energy into chemical energy in plants.",
    "football": "The football team won the championship after a penalty shootout.",
    "aspirin": "Aspirin lowers the risk of a second heart attack in patients with heart disease.",
    "volcano": "Magma rises through the crust and erupts from volcanoes as lava.",
}


async def run_with_heartbeat(awaitable: Awaitable[T], interval: float = 0.01) -> tuple[T, float]:
    """Await `awaitable` while a task ticks every `interval`; its result and the longest gap between ticks."""
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
    await asyncio.sleep(interval * 3)
    try:
        result = await awaitable
    finally:
        done.set()
        await task
    return result, max(gaps)


@pytest.fixture(scope="module")
def encoders() -> tuple[MLMSparseEncoder, SentenceTransformerDenseEncoder]:
    sparse, dense = MLMSparseEncoder(progress=False), SentenceTransformerDenseEncoder(progress=False)
    sparse.warm_up()
    dense.warm_up()
    yield sparse, dense
    sparse.close()
    dense.close()


def _docs() -> list[Document]:
    return [Document(id=k, content=v) for k, v in PASSAGES.items()]


async def test_hybrid_retrieve_async_on_an_embedded_store_keeps_the_loop_ticking(tmp_path: Path, encoders) -> None:
    sparse, dense = encoders
    store = EmbeddedStore(tmp_path / "store", progress=False)
    index_documents(store, _docs(), sparse_encoder=sparse, dense_encoder=dense, progress=False)
    store.close()
    store = EmbeddedStore(tmp_path / "store", progress=False)  # cold: caches are rebuilt inside the search
    hybrid = HybridRetriever([BM25Retriever(store), SparseRetriever(store, sparse), DenseRetriever(store, dense)])
    worst = 0.0
    for query in ("does vitamin C deficiency cause scurvy", "aspirin heart attack", "lava from volcanoes"):
        hits, gap = await run_with_heartbeat(hybrid.retrieve_async(query, top_k=3))
        worst = max(worst, gap)
        assert hits and set(hits[0].sources) <= {"bm25", "sparse", "dense"}
    assert hits[0].id == "volcano"
    assert worst < MAX_GAP_S, f"the event loop was blocked for {worst * 1000:.0f} ms during a hybrid retrieve_async"
    # The same answers as the sync path.
    assert [h.id for h in hybrid.retrieve("aspirin heart attack", top_k=3)] == [
        h.id for h in await hybrid.retrieve_async("aspirin heart attack", top_k=3)
    ]
    store.close()


def test_elasticsearch_async_client_works_from_two_successive_event_loops(es_url: str, encoders) -> None:
    from lens_rag.stores.elasticsearch import ElasticsearchStore

    sparse, dense = encoders
    store = ElasticsearchStore(url=es_url, index=f"lens-async-loops-{uuid.uuid4().hex[:10]}", progress=False)
    hybrid = HybridRetriever([BM25Retriever(store), SparseRetriever(store, sparse), DenseRetriever(store, dense)])
    try:
        index_documents(store, _docs(), sparse_encoder=sparse, dense_encoder=dense, progress=False)

        async def search(query: str) -> list[str]:
            hits, gap = await run_with_heartbeat(hybrid.retrieve_async(query, top_k=2))
            assert gap < 0.5, f"the event loop was blocked for {gap * 1000:.0f} ms"
            return [h.id for h in hits]

        first = asyncio.run(search("vitamin C deficiency and scurvy"))
        second = asyncio.run(search("aspirin heart attack"))  # a new loop: the old client's loop is closed
        third = asyncio.run(store.count_documents_async())
        assert first[0] == "scurvy" and second[0] == "aspirin" and third == len(PASSAGES)

        async def close_in_loop() -> None:
            await store.count_documents_async()
            await store.close_async()

        asyncio.run(close_in_loop())
        assert store._async_client is None
    finally:
        store.delete_index()
        store.close()
