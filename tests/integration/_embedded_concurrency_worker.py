"""Writer and reader processes for the embedded-store concurrency test (one store directory, many processes).

    python _embedded_concurrency_worker.py writer STORE_DIR PREFIX N BATCH GO_FILE
    python _embedded_concurrency_worker.py reader STORE_DIR GO_FILE STOP_FILE IDS_FILE

A writer writes documents ``<PREFIX>000``.. in batches, and every third batch writes its previous
batch again (a replacement with identical data: the count must not move). A reader keeps ONE store
open for its whole life and loops until STOP_FILE exists: it counts (the count must never go down),
lists which of the expected ids are live, and checks that a live document is found by its own
sparse vector, its own dense vector and its unique BM25 token, with its own content. It prints
``COUNT n`` for every new count and ``ERROR ...`` for anything wrong, and exits 1 on any error.
Document content and vectors are a function of the id alone, so any process can check them.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import numpy as np

DIM = 16
SIGNATURE_BASE = 1000


def number(doc_id: str) -> int:
    """A distinct small number per id (prefix letter -> block of 1000)."""
    return (ord(doc_id[0]) - ord("a")) * 1000 + int(doc_id[1:])


def content(doc_id: str) -> str:
    return f"passage {doc_id} tok{doc_id} written by writer {doc_id[0]}"


def dense_vector(doc_id: str) -> np.ndarray:
    return np.random.default_rng([zlib.crc32(doc_id.encode()), 3]).standard_normal(DIM).astype(np.float32)


def sparse_arrays(doc_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Six random dimensions below 1000 (weights < 1) plus the id's own dimension (weight 5)."""
    rng = np.random.default_rng([zlib.crc32(doc_id.encode()), 4])
    idx = np.sort(rng.choice(SIGNATURE_BASE, size=6, replace=False))
    indices = np.append(idx, SIGNATURE_BASE + number(doc_id)).astype(np.int64)
    return indices, np.append(rng.uniform(0.1, 1.0, size=6), 5.0).astype(np.float32)


def self_sparse_score(doc_id: str) -> float:
    return float(np.sum(sparse_arrays(doc_id)[1].astype(np.float64) ** 2))


def document(doc_id: str) -> Any:
    from lens_rag.documents import Document
    from lens_rag.sparse import SparseVector

    return Document(
        id=doc_id,
        content=content(doc_id),
        meta={"writer": doc_id[0]},
        embedding=dense_vector(doc_id).tolist(),
        sparse_embedding=SparseVector(*sparse_arrays(doc_id)),
    )


def check_document(store: Any, doc_id: str) -> list[str]:
    """Problems with finding `doc_id` by its own vectors and BM25 token (empty when all is well)."""
    from lens_rag.sparse import SparseVector

    problems = []
    hits = store.search_sparse(SparseVector(*sparse_arrays(doc_id)), top_k=1)
    want = self_sparse_score(doc_id)
    if not hits or hits[0].document.id != doc_id or abs(hits[0].score - want) > 1e-3 * want:
        problems.append(f"{doc_id}: own sparse vector gives {[(h.document.id, h.score) for h in hits]}")
    hits = store.search_dense(dense_vector(doc_id).tolist(), top_k=1)
    if not hits or hits[0].document.id != doc_id or hits[0].score < 0.9999:
        problems.append(f"{doc_id}: own dense vector gives {[(h.document.id, h.score) for h in hits]}")
    hits = store.search_bm25(f"tok{doc_id}", top_k=1)
    if not hits or hits[0].document.id != doc_id or hits[0].document.content != content(doc_id):
        problems.append(f"{doc_id}: BM25 on its token gives {[(h.document.id, h.document.content) for h in hits]}")
    return problems


def _wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def writer(path: str, prefix: str, n: int, batch: int, go: str, pause: float = 0.03) -> None:
    from lens_rag.stores.embedded import EmbeddedStore

    ids = [f"{prefix}{i:03d}" for i in range(n)]
    _say("READY")
    _wait_for(Path(go))
    store = EmbeddedStore(path, progress=False)
    for b, start in enumerate(range(0, n, batch)):
        store.write_documents([document(i) for i in ids[start : start + batch]])
        if b % 3 == 2:
            store.write_documents([document(i) for i in ids[start - batch : start]])  # replace, same data
        _say(f"WROTE {min(n, start + batch)}")
        time.sleep(pause)  # leave the reader time to look between commits
    store.close()
    _say("DONE")


def reader(path: str, go: str, stop: str, ids_file: str) -> None:
    from lens_rag.stores.embedded import EmbeddedStore

    all_ids = Path(ids_file).read_text().split()
    rng = random.Random(0)
    warm = EmbeddedStore(None, progress=False)  # import what searches need (torch, bm25s) before the race
    warm.write_documents([document("z000")])
    check_document(warm, "z000")
    _say("READY")
    _wait_for(Path(go))
    store = EmbeddedStore(path, progress=False)
    last, errors, loops = -1, 0, 0
    final = False
    while True:
        final = Path(stop).exists()  # one more full pass after the writers are done
        try:
            count = store.count_documents()
            if count < last:
                _say(f"ERROR count went down from {last} to {count}")
                errors += 1
            if count != last:
                _say(f"COUNT {count}")
            last = max(last, count)
            live = [d.id for d in store.get_documents(all_ids)]
            if len(live) < count:
                _say(f"ERROR count_documents() = {count} but only {len(live)} documents are found by id")
                errors += 1
            for doc_id in rng.sample(live, min(3, len(live))):
                for problem in check_document(store, doc_id):
                    _say(f"ERROR {problem}")
                    errors += 1
        except Exception as e:
            _say(f"ERROR {type(e).__name__}: {e} | {traceback.format_exc(limit=3)!r}")
            errors += 1
        loops += 1
        if final or errors > 20:
            break
        time.sleep(0.01)
    store.close()
    _say(f"LOOPS {loops}")
    _say("DONE")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "writer":
        writer(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        reader(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
