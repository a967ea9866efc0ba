"""Encode documents and write them to a store in batches, with an optional on-disk embedding cache.

The cache keys document vectors by (encoder configuration, document id, content hash), so
re-indexing the same corpus — or evaluating it on another backend — never encodes twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lens_rag.documents import Document
from lens_rag.encoders.base import DenseEncoder, SparseEncoder
from lens_rag.errors import BulkWriteError, ConfigurationError
from lens_rag.identity import ensure_encoder
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import Store

__all__ = ["EmbeddingCache", "IndexReport", "cached_vectors", "default_cache_dir", "index_documents"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`$LENS_RAG_CACHE`, else `~/.cache/lens-rag`."""
    env = os.environ.get("LENS_RAG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lens-rag"


def _encoder_key(encoder: Any) -> str:
    config = encoder.to_config() if hasattr(encoder, "to_config") else {"name": getattr(encoder, "name", "?")}
    # Document vectors only: runtime settings and the query-side model (lens-rag adapt) do not change them.
    config = {k: v for k, v in config.items() if k not in ("progress", "batch_size", "device", "query_model")}
    blob = json.dumps({"class": type(encoder).__name__, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class EmbeddingCache:
    """Document vectors on disk in SQLite, keyed by encoder, document id and content hash.

    :param directory: where the cache lives (one SQLite file per encoder).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _db(self, encoder: Any) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.directory / f"{_encoder_key(encoder)}.sqlite")
        db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        return db

    @staticmethod
    def _key(doc: Document) -> str:
        return doc.id + "\x00" + hashlib.sha1(doc.content.encode()).hexdigest()

    def lookup(self, encoder: Any, docs: Sequence[Document]) -> dict[int, Any]:
        with self._db(encoder) as db:
            found: dict[int, Any] = {}
            for i, doc in enumerate(docs):
                row = db.execute("SELECT value FROM vec WHERE key = ?", (self._key(doc),)).fetchone()
                if row is not None:
                    found[i] = _decode(row[0])
            return found

    def store(self, encoder: Any, docs: Sequence[Document], vectors: Sequence[Any]) -> None:
        with self._db(encoder) as db:
            db.executemany(
                "INSERT OR REPLACE INTO vec (key, value) VALUES (?, ?)",
                [(self._key(d), _encode(v)) for d, v in zip(docs, vectors, strict=True)],
            )


def _encode(vector: Any) -> bytes:
    if isinstance(vector, SparseVector):
        return b"S" + vector.indices.astype(np.int32).tobytes() + b"|" + vector.values.astype(np.float32).tobytes()
    return b"D" + np.asarray(vector, dtype=np.float32).tobytes()


def _decode(blob: bytes) -> Any:
    if blob[:1] == b"S":
        body = blob[1:]
        n = (len(body) - 1) // 8
        idx = np.frombuffer(body[: 4 * n], dtype=np.int32).astype(np.int64)
        val = np.frombuffer(body[4 * n + 1 :], dtype=np.float32).copy()
        return SparseVector(idx, val)
    return np.frombuffer(blob[1:], dtype=np.float32).tolist()


class IndexReport:
    """What :func:`index_documents` did: counts, and every document that failed with its reason."""

    def __init__(self) -> None:
        self.written = 0
        self.encoded = 0
        self.cached = 0
        self.failed: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"written": self.written, "encoded": self.encoded, "cached": self.cached, "failed": self.failed}


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cached_vectors(
    encoder: Any,
    docs: Sequence[Document],
    cache: EmbeddingCache | None,
    report: IndexReport | None = None,
    chunk_size: int = 512,
) -> list[Any]:
    """The document vectors of `docs` by `encoder`: from `cache` where recorded, the rest encoded and recorded.

    Missing documents are encoded `chunk_size` at a time, each chunk recorded before the next starts, so an
    interrupted run keeps what it encoded.
    """
    found = cache.lookup(encoder, docs) if cache is not None else {}
    missing = [i for i in range(len(docs)) if i not in found]
    for start in range(0, len(missing), chunk_size):
        part = missing[start : start + chunk_size]
        fresh = encoder.encode_documents([docs[i].content for i in part])
        if cache is not None:
            cache.store(encoder, [docs[i] for i in part], fresh)
        found.update(zip(part, fresh, strict=True))
    if report is not None:
        report.encoded += len(missing)
        report.cached += len(docs) - len(missing)
    return [found[i] for i in range(len(docs))]


def index_documents(
    store: Store,
    documents: Iterable[Document],
    *,
    sparse_encoder: SparseEncoder | None = None,
    dense_encoder: DenseEncoder | None = None,
    batch_size: int = 256,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    total: int | None = None,
    report: IndexReport | None = None,
) -> IndexReport:
    """Encode documents with the given encoders and write them to `store`, batch by batch.

    A batch whose documents the store rejects does not stop the run: the rejected ids and reasons
    are collected in the returned report (and logged), the rest is written.

    Before the first write, the encoders' identity is checked against the one the store recorded
    (and recorded when it has none), so a store never mixes vectors of two models
    (see :mod:`lens_rag.identity`).

    :param store: the target store.
    :param documents: documents without embeddings (existing embeddings are replaced).
    :param sparse_encoder: encoder for `sparse_embedding`, or `None` for none.
    :param dense_encoder: encoder for `embedding`, or `None` for none.
    :param batch_size: documents per encode-and-write step.
    :param cache: reuse and record vectors on disk.
    :param progress: show a progress bar.
    :param total: number of documents, for the progress bar.
    :param report: fill this report (so a caller still knows what was written when the run fails midway).
    :returns: an :class:`IndexReport`.
    :raises EncoderMismatchError: if the store holds vectors made by other encoders.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    from tqdm.auto import tqdm

    checked = False
    report = IndexReport() if report is None else report
    bar = tqdm(total=total, desc="indexing", unit="doc", disable=not progress)
    try:
        for batch in _batches(documents, batch_size):
            batch = [d for d in batch if _keep(d, report)]
            if not batch:
                continue
            if not checked:  # once, and only when there is something to write
                ensure_encoder(store, "sparse", sparse_encoder, record=True)
                ensure_encoder(store, "dense", dense_encoder, record=True)
                checked = True
            if sparse_encoder is not None:
                for d, v in zip(batch, cached_vectors(sparse_encoder, batch, cache, report), strict=True):
                    d.sparse_embedding = v
            if dense_encoder is not None:
                for d, v in zip(batch, cached_vectors(dense_encoder, batch, cache, report), strict=True):
                    d.embedding = list(v)
            try:
                report.written += store.write_documents(batch).written
            except BulkWriteError as e:
                report.written += e.written
                report.failed.update(e.failed)
                logger.warning("%d document(s) were rejected by the store: %s", len(e.failed), list(e.failed)[:10])
            bar.update(len(batch))
    finally:
        bar.close()
    return report


def _keep(doc: Document, report: IndexReport) -> bool:
    if not doc.content or not doc.content.strip():
        report.failed[doc.id] = "content is empty"
        return False
    return True
