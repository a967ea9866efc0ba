"""The embedded store: BM25, sparse and dense search in one directory, no server needed.

A store directory holds::

    store.sqlite (+ -wal, -shm)   the store: ids, texts, metadata, vectors, info; SQLite in WAL mode
    cache/                         search structures derived from it (the bm25s index); safe to delete

**One commit point.** Every write, delete, update, `set_info` and `compact` is one SQLite
transaction, so a crash at any instant leaves the store at its last committed operation and the
store always opens. Vectors live in SQLite as one blob per write (raw float32 dense rows and the
CSR arrays of the sparse rows). Measured against immutable, uniquely named segment files listed by
the transaction (5,000 rows of 384-d dense + 150-term sparse vectors, 256-row writes, WAL with
synchronous=FULL, 2 busy cores): per-write blobs 10,300-13,700 rows/s to write and 31-42 ms to
reopen; segment files 12,500-14,200 rows/s and 89-102 ms; one blob per row 8,800-10,700 rows/s
and 78-276 ms. Writing is on par (the fsyncs dominate), reopening is 2-3x faster from SQLite, and
blobs need no orphan clean-up, which for files cannot be told apart from another process's write
in progress: the vectors live in SQLite.

**Many processes, one directory.** Any number of processes (or store objects) may read and write
one directory. SQLite serialises writers (`BEGIN IMMEDIATE`, 60 s busy timeout); each operation
starts by reading the store's counters in its read transaction and brings this object's caches up
to that snapshot: rows are append-only between compactions, so new rows are appended to the
in-memory matrices and deaths read from an index on `dead_gen`; BM25 (immutable in bm25s) is
rebuilt when the live set changed, keyed by the content generation, and shared through ``cache/``.
No state is ever written back from memory, so no process can overwrite another's writes.
A search or count first reads the store's generation (one autocommit statement; it advances with
every document change in any process): if it is the one this object's caches were built at, the
search runs on them without a transaction and fetches its result rows in one statement that reads
the generation again (a change in between, such as a compaction renumbering rows, redoes the
search in a read transaction). So a warm search costs two statements, as cheap as before the
store had one commit point, and still sees another process's commit at the next search.

**Filters** run in SQL over the JSON metadata (:func:`lens_rag.filters.filters_to_sql`), never in
a Python loop. The matching rows are kept in a small LRU per filter (its SQL) and brought forward
across later writes and deletes (only the new rows are filtered again; a metadata update refilters).
A filter that keeps at most 5 % of the rows scores only those rows (a gather of dense rows, a CSR
row slice), so a selective filtered search costs far less than an unfiltered one. Expression
indexes do not help: the filter SQL binds JSON paths as parameters, which SQLite cannot match to an
index, and the LRU already avoids the scan on repeated filters.

**Caches.** The dense matrix (L2-normalised rows) and the sparse CSR/CSC blocks live in memory
only: reopening reads the blobs in a few large reads (50,000 rows: 1.1-1.4 s for the first sparse
and dense search after reopening, vs 1.5-2.7 s for format 1, loaded 2-core machine). The bm25s
index is slow to build, so it is also kept in ``cache/`` (see ``embedded_cache``). A store from
format 1 (``manifest.json``) is refused with a message to re-index.

**Texts** must be valid Unicode: a document whose id, content or metadata holds a lone surrogate
is refused by id (:func:`~lens_rag.documents.validate_document`) and the rest of its batch is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from lens_rag.documents import Document, ScoredDocument, SourceHit, validate_document
from lens_rag.errors import BulkWriteError, ConfigurationError, StoreCorruptedError, StoreError
from lens_rag.expansion import EXPANSION_KEY, bm25_text
from lens_rag.filters import Filters, filters_to_sql, parse_filters
from lens_rag.sparse import SPARSE_INDEX_LIMIT, SparseVector
from lens_rag.stores import embedded_db as db
from lens_rag.stores.base import WriteResult
from lens_rag.stores.embedded_cache import (
    VectorCache,
    bm25_cache_name,
    load_bm25,
    lock_for,
    save_bm25,
)
from lens_rag.stores.embedded_cache import matvec as _matvec
from lens_rag.stores.embedded_cache import sparse_scores as _sparse_scores
from lens_rag.stores.lexical import BM25Index
from lens_rag.validation import check_dense_query, check_sparse_query, check_top_k

__all__ = ["EmbeddedStore"]

logger = logging.getLogger(__name__)

CONFIG_TYPE = "embedded_store"
_CHUNK = 500  # SQL parameters per IN (...) list
_MASK_CACHE = 32
_SELECTIVE = 0.05  # a filter keeping at most this share of the rows scores only those rows
_T = TypeVar("_T")
_GENERATION_SQL = "SELECT value FROM store_meta WHERE key = 'generation'"
_OWN_NAMES = {db.DB_NAME, f"{db.DB_NAME}-wal", f"{db.DB_NAME}-shm", f"{db.DB_NAME}-journal", "cache"}

# kept importable from here: tests and benchmarks use the kernels directly
_ = (_sparse_scores, _matvec)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_DECODER = json.JSONDecoder()


def _meta(text: str) -> Any:
    """Stored metadata (our own `json.dumps`, no surrounding whitespace), decoded ~2x faster than `json.loads`.

    Result rows are decoded on every search; `raw_decode` skips `loads`' whitespace and BOM checks.
    """
    try:
        value, end = _DECODER.raw_decode(text)
    except ValueError:
        end = -1
    return value if end == len(text) else json.loads(text)


class _SQL(Protocol):
    """What the cache and search helpers need of a connection (a real one, or the fast path's stand-in)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> sqlite3.Cursor: ...


class _Stale(Exception):
    """The fast path cannot answer from this object's caches: redo the operation in a read transaction."""


class _CachedReader:
    """The connection as a search's fast path sees it: no SQL at all, except the final row fetch.

    The fast path runs a search on the caches of the last snapshot this object read, without a
    read transaction. Any SQL a cold cache would need raises :class:`_Stale` instead (the search
    is redone in a transaction); the fetch of the result rows reads the store's generation in the
    same statement (one autocommit read, so one consistent state) and raises :class:`_Stale` unless
    it is still the snapshot's, so the rows returned are exactly the ones that snapshot holds.
    """

    __slots__ = ("conn", "generation")

    def __init__(self, conn: sqlite3.Connection, generation: int) -> None:
        self.conn = conn
        self.generation = generation

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        raise _Stale(sql)


class EmbeddedStore:
    """A persistent (or in-memory) store with BM25, sparse and dense search.

    :param path: directory to keep the store in; created on first write. `None` keeps everything
        in memory (nothing touches the disk).
    :param bm25_k1: BM25 term-frequency saturation (1.2: Lucene's and Elasticsearch's default, so
        both backends rank alike; on SciFact 1.2/0.75 gives 0.679 nDCG@10, Pyserini's 0.9/0.4 0.676).
    :param bm25_b: BM25 length normalisation (0.75, as Lucene).
    :param language: stemmer and stopword language for BM25 (`"english"`, or `None` for neither).
    :param progress: show progress bars for long work (BM25 indexing).

    Every public method has an `_async` twin that runs it in a worker thread.

    Usage::

        store = EmbeddedStore("my-index")
        store.write_documents([Document(id="1", content="Aspirin lowers fever.")])
        store.search_bm25("fever", top_k=5)
        store.close()
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        language: str | None = "english",
        progress: bool = True,
    ) -> None:
        for name, value in (("bm25_k1", bm25_k1), ("bm25_b", bm25_b)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
        if bm25_k1 < 0 or not 0 <= bm25_b <= 1:
            raise ConfigurationError(f"bm25_k1 must be >= 0 and bm25_b in [0, 1], got k1={bm25_k1}, b={bm25_b}")
        if language is not None and not isinstance(language, str):
            raise ConfigurationError(
                f"language must be a Snowball language name such as 'english' or None, got {language!r}"
            )
        self.path = Path(path) if path is not None else None
        self.bm25_k1 = float(bm25_k1)
        self.bm25_b = float(bm25_b)
        self.language = language
        self.progress = progress
        self._where = str(self.path) if self.path is not None else ":memory:"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._snap: db.Snapshot | None = None  # the last snapshot read; the fast path checks it is still current
        self._pid = os.getpid()
        self._vectors = VectorCache()
        self._alive = np.zeros(0, dtype=bool)
        self._alive_state: tuple[str, int, int] | None = None  # (uuid, epoch, generation)
        self._bm25: BM25Index | None = None
        self._bm25_name: str | None = None
        self._bm25_key: tuple[Any, ...] | None = None  # what `_bm25_name` was computed from
        self._masks: OrderedDict[Any, tuple[tuple[int, int, int], npt.NDArray[np.int64]]] = OrderedDict()
        self._live = 0  # live rows in `_alive`
        self._base_masks: dict[str, npt.NDArray[np.bool_]] = {}  # live rows with a vector of a kind

    # ------------------------------------------------------------------ serialisation
    def to_config(self) -> dict[str, Any]:
        """JSON-only settings that :meth:`from_config` turns back into an equivalent store."""
        return {
            "type": CONFIG_TYPE,
            "path": str(self.path) if self.path is not None else None,
            "bm25_k1": self.bm25_k1,
            "bm25_b": self.bm25_b,
            "language": self.language,
            "progress": self.progress,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EmbeddedStore:
        """The store :meth:`to_config` describes. :raises ConfigurationError: on another type or unknown keys."""
        settings = dict(config)
        kind = settings.pop("type", CONFIG_TYPE)
        if kind != CONFIG_TYPE:
            raise ConfigurationError(f"config type {kind!r} is not {CONFIG_TYPE!r}; use lens_rag.config.from_config")
        unknown = set(settings) - {"path", "bm25_k1", "bm25_b", "language", "progress"}
        if unknown:
            raise ConfigurationError(f"unknown {CONFIG_TYPE} config keys {sorted(unknown)}")
        path = settings.pop("path", None)
        return cls(path, **settings)

    # ------------------------------------------------------------------ connection and transactions
    def _connection(self, create: bool) -> sqlite3.Connection | None:
        """The open connection; `None` while no store exists at the path and `create` is false."""
        if self._conn is not None:
            if self._pid == os.getpid() or self.path is None:
                return self._conn
            self._conn = None  # inherited through fork(): SQLite connections must not cross it; open our own
        if self.path is None:
            conn = db.connect(None)
            db.create_schema(conn)
            self._conn = conn
            return conn
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"store path {str(path)!r} is a file; pass a directory for the store")
        if (path / "manifest.json").exists():
            raise StoreCorruptedError(
                f"the store at {str(path)!r} cannot be read: it has a manifest.json, so it was written by an "
                "older lens-rag (store format 1) or damaged. Nothing was changed; re-index into a new directory "
                "with `lens-rag index SOURCE --store NEW_DIR`."
            )
        file = path / db.DB_NAME
        if not file.exists():
            foreign = [p.name for p in path.iterdir() if p.name not in _OWN_NAMES] if path.exists() else []
            if foreign:
                raise StoreCorruptedError(
                    f"{str(path)!r} is not empty and has no {db.DB_NAME}, so it is not a lens-rag store "
                    f"(it holds {', '.join(sorted(foreign)[:3])}). Nothing was changed; pass an empty or new directory."
                )
            if not create:
                return None
            path.mkdir(parents=True, exist_ok=True)
        conn = db.connect(file)
        try:
            if not db.has_schema(conn):
                if conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                    raise StoreCorruptedError(
                        f"{str(file)!r} is an SQLite database of something else, not a lens-rag store. Nothing was "
                        "changed; pass an empty or new directory."
                    )
                if not create:
                    conn.close()
                    return None  # created but not yet committed by another process: still empty
                conn.execute("BEGIN IMMEDIATE")
                db.create_schema(conn)
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[tuple[sqlite3.Connection | None, db.Snapshot]]:
        """One read transaction: a consistent snapshot for the whole operation."""
        with self._lock, db.db_errors(self._where):
            conn = self._connection(create=False)
            if conn is None:
                yield None, db.EMPTY_SNAPSHOT
                return
            conn.execute("BEGIN")
            try:
                snap = db.read_snapshot(conn, self._where)
                self._snap = snap
                yield conn, snap
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextlib.contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, db.Snapshot]]:
        """One write transaction (other writers wait); commits on success, rolls back on error."""
        with self._lock, db.db_errors(self._where):
            conn = self._connection(create=True)
            assert conn is not None
            self._snap = None  # about to change: the next read re-reads the snapshot
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn, db.read_snapshot(conn, self._where)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _unchanged(self) -> tuple[sqlite3.Connection, db.Snapshot] | None:
        """The connection and the last snapshot read, if no document changed since (call under `_lock`).

        One autocommit statement, no transaction: the store's `generation` advances with every change
        of a document (write, delete, metadata update, compaction, delete-all), in any process.
        """
        snap, conn = self._snap, self._conn
        if snap is None or conn is None or (self._pid != os.getpid() and self.path is not None):
            return None
        row = conn.execute(_GENERATION_SQL).fetchone()
        if row is None or int(row[0]) != snap.generation:
            self._snap = None
            return None
        return conn, snap

    def _search(self, run: Callable[[_SQL, db.Snapshot], _T], empty: _T) -> _T:
        """Run a read-only operation from the caches if nothing changed, else in a read transaction.

        The fast path costs two autocommit statements (the generation check, and the row fetch that
        checks it again) instead of four (BEGIN, snapshot, fetch, COMMIT), and no cache is re-examined.
        An operation that finds a cold cache, or a store that changed in between, is redone in a
        read transaction, so it returns what a transaction at that instant would; another process's
        commit is seen by the next operation, as before. (`PRAGMA data_version` would not see this
        object's own commits; the generation sees every commit.)

        :param run: the operation, on a connection (or its fast-path stand-in) and a snapshot.
        :param empty: the result while no store exists at the path.
        :returns: what `run` returns.
        """
        with self._lock, db.db_errors(self._where):
            current = self._unchanged()
            if current is not None:
                conn, snap = current
                reader = _CachedReader(conn, snap.generation)
                try:
                    return run(reader, snap)  # with no hit to fetch, the check above was the read
                except _Stale:
                    self._snap = None
            with self._read() as (txn, snap):
                return empty if txn is None else run(txn, snap)

    # ------------------------------------------------------------------ caches
    def _sync_alive(self, conn: _SQL, snap: db.Snapshot) -> None:
        """Bring the live-row mask (and the cache keys) to `snap`."""
        if self._vectors.key != (snap.uuid, snap.epoch):
            self._vectors.reset((snap.uuid, snap.epoch))
            self._alive_state = None
            self._bm25, self._bm25_name, self._bm25_key = None, None, None
            self._masks.clear()
        state = self._alive_state
        if state is not None and state[2] == snap.generation and self._alive.size == snap.n_rows:
            return
        if state is None:
            alive = np.ones(snap.n_rows, dtype=bool)
            dead = conn.execute("SELECT row FROM docs WHERE dead_gen IS NOT NULL").fetchall()
        else:
            # Rows are append-only in an epoch and a death is final: new rows plus newer deaths.
            alive = np.concatenate([self._alive, np.ones(snap.n_rows - self._alive.size, dtype=bool)])
            dead = conn.execute("SELECT row FROM docs WHERE dead_gen > ?", (state[2],)).fetchall()
        if dead:
            alive[np.fromiter((r for (r,) in dead), dtype=np.int64, count=len(dead))] = False
        self._alive = alive
        self._alive_state = (snap.uuid, snap.epoch, snap.generation)
        self._live = int(alive.sum())
        self._base_masks.clear()

    def _sync_vectors(self, conn: _SQL, snap: db.Snapshot) -> VectorCache:
        self._sync_alive(conn, snap)
        cache = self._vectors
        if cache.n_rows < snap.n_rows:
            rows = conn.execute(
                f"SELECT {db.VECTOR_COLUMNS} FROM vectors WHERE first_row >= ? ORDER BY first_row", (cache.n_rows,)
            )
            self._base_masks.clear()
            try:
                cache.extend((db.decode_batch(r) for r in rows), snap.n_rows)
            except ValueError as e:
                cache.reset(("", -1))
                raise StoreCorruptedError(
                    f"the store at {self._where!r} cannot be read: a vector blob is damaged ({e}). Nothing was "
                    "changed; rebuild it with `lens-rag index SOURCE --store NEW_DIR`."
                ) from e
        return cache

    def _bm25_index(self, conn: _SQL, snap: db.Snapshot) -> BM25Index:
        key = (snap.uuid, snap.epoch, snap.content_generation, self.bm25_k1, self.bm25_b, self.language)
        if self._bm25 is not None and self._bm25_key == key:
            return self._bm25  # the common case, without hashing the cache name on every search
        name = bm25_cache_name(snap, k1=self.bm25_k1, b=self.bm25_b, language=self.language)
        if self._bm25 is not None and self._bm25_name == name:
            self._bm25_key = key
            return self._bm25
        rows = np.flatnonzero(self._alive).astype(np.int64)
        cache_dir = self.path / "cache" if self.path is not None else None
        index = load_bm25(cache_dir, name, rows) if cache_dir is not None else None
        if index is None and cache_dir is not None:
            try:
                lock = lock_for(cache_dir)
                with lock:
                    index = load_bm25(cache_dir, name, rows)  # built by another process meanwhile?
                    if index is None:
                        index = self._build_bm25(conn, rows)
                        try:
                            save_bm25(cache_dir, name, index)
                        except OSError as e:
                            logger.warning("could not save the BM25 index to %s (%s); it stays in memory", cache_dir, e)
            except OSError as e:  # no lock possible (read-only directory, lock timeout): build for ourselves
                logger.warning("BM25 cache at %s is not usable (%s); building in memory", cache_dir, e)
        if index is None:
            index = self._build_bm25(conn, rows)
        self._bm25, self._bm25_name, self._bm25_key = index, name, key
        return index

    def _build_bm25(self, conn: _SQL, rows: npt.NDArray[np.int64]) -> BM25Index:
        # expansion (lens_rag.expansion): BM25 also indexes meta["bm25_expansion"], content stays as shown
        q = "SELECT content, json_extract(meta, '$.bm25_expansion') FROM docs WHERE dead_gen IS NULL ORDER BY row"
        contents = [bm25_text(c, {EXPANSION_KEY: x}) for c, x in conn.execute(q)]
        if len(contents) != rows.size:
            raise StoreError(f"the store at {self._where!r} changed during a read; retry")
        return BM25Index.build(
            contents, rows, k1=self.bm25_k1, b=self.bm25_b, language=self.language, progress=self.progress
        )

    # ------------------------------------------------------------------ filters
    @staticmethod
    def _parse(filters: Any) -> Any:
        return parse_filters(filters) if filters else None

    def _filter_rows(self, conn: _SQL, snap: db.Snapshot, node: Any) -> npt.NDArray[np.int64]:
        """Live rows matching a parsed filter (ascending), computed in SQL and kept in a small LRU.

        Call after :meth:`_sync_alive`. When only writes and deletes happened since a cached result
        (no metadata update), the result is brought forward: its rows that died are dropped and only
        the new rows are filtered in SQL, so a steady stream of writes does not rescan the store.
        """
        where, params = filters_to_sql(node)
        try:  # keyed by the SQL, not the parsed filter: {"x": True} == {"x": 1} in Python, not in the filter language
            key: Any = (snap.uuid, snap.epoch, where, tuple((type(p), p) for p in params))
            hash(key)
        except TypeError:
            key = None
        cached = self._masks.get(key) if key is not None else None
        if cached is not None:
            self._masks.move_to_end(key)
            (gen, content_gen, n_rows), rows = cached
            if gen == snap.generation:
                return rows
            if snap.generation - gen == snap.content_generation - content_gen:  # no metadata update since
                found = conn.execute(
                    f"SELECT row FROM docs WHERE dead_gen IS NULL AND row >= ? AND {where} ORDER BY row",
                    [n_rows, *params],
                ).fetchall()
                new = np.fromiter((r for (r,) in found), dtype=np.int64, count=len(found))
                rows = np.concatenate([rows[self._alive[rows]], new])
                self._masks[key] = ((snap.generation, snap.content_generation, snap.n_rows), rows)
                return rows
        found = conn.execute(f"SELECT row FROM docs WHERE dead_gen IS NULL AND {where} ORDER BY row", params).fetchall()
        rows = np.fromiter((r for (r,) in found), dtype=np.int64, count=len(found))
        if key is not None:
            self._masks[key] = ((snap.generation, snap.content_generation, snap.n_rows), rows)
            while len(self._masks) > _MASK_CACHE:
                self._masks.popitem(last=False)
        return rows

    def _base_mask(self, kind: str) -> npt.NDArray[np.bool_]:
        """Live rows (`kind` "all") or live rows with a `"sparse"`/`"dense"` vector; cached until the next change."""
        mask = self._base_masks.get(kind)
        if mask is None:
            if kind == "all":
                mask = self._alive
            else:
                has = self._vectors.has_sparse if kind == "sparse" else self._vectors.has_dense
                mask = self._alive & has[: self._alive.size]
            self._base_masks[kind] = mask
        return mask

    def _selective_rows(self, conn: _SQL, snap: db.Snapshot, node: Any, kind: str) -> npt.NDArray[np.int64] | None:
        """The rows to score when a filter keeps few of them (ascending), else `None` (score all, then mask)."""
        if node is None:
            return None
        rows = self._filter_rows(conn, snap, node)
        if rows.size > _SELECTIVE * max(snap.n_rows, 1):
            return None
        return rows[self._base_mask(kind)[rows]]

    def _mask(self, conn: _SQL, snap: db.Snapshot, node: Any, kind: str = "all") -> npt.NDArray[np.bool_]:
        """Rows a search may return (read-only: callers must not modify it)."""
        mask = self._base_mask(kind)
        if node is not None:
            keep = np.zeros(mask.size, dtype=bool)
            keep[self._filter_rows(conn, snap, node)] = True
            mask = mask & keep
        return mask

    # ------------------------------------------------------------------ writes
    def write_documents(self, documents: Sequence[Document]) -> WriteResult:
        """Add or replace documents by id, in one transaction. Valid documents are written even when others fail.

        :param documents: documents, optionally with `embedding` and `sparse_embedding`.
        :returns: the ids written.
        :raises BulkWriteError: listing every rejected document id and why, after writing the rest.
        """
        if isinstance(documents, Document | str | bytes):
            raise ConfigurationError("write_documents takes a list of Documents; wrap a single one in [doc]")
        documents = list(documents)
        failed: dict[str, str] = {}
        batch: dict[str, tuple[Document, str]] = {}
        if not documents:
            return WriteResult(written=0, ids=[])
        with self._write() as (conn, snap):
            dense_dim = snap.dense_dim
            for doc in documents:
                reason = validate_document(doc, dense_dim)
                meta_json = ""
                if reason is None:
                    reason, meta_json = self._storable(doc)
                if reason is not None:
                    failed[str(getattr(doc, "id", "?"))] = reason
                    continue
                if doc.embedding is not None and dense_dim is None:
                    dense_dim = len(doc.embedding)
                batch.pop(doc.id, None)
                batch[doc.id] = (doc, meta_json)  # a later duplicate in the same batch wins, as a later write would
            if batch:
                self._append(conn, snap, list(batch.values()), dense_dim)
        if failed:
            raise BulkWriteError(failed, written=len(batch))
        return WriteResult(written=len(batch), ids=list(batch))

    @staticmethod
    def _storable(doc: Document) -> tuple[str | None, str]:
        """What SQLite and the int32 matrices need beyond `validate_document` (defence in depth)."""
        try:
            meta_json = json.dumps(doc.meta, ensure_ascii=False, allow_nan=False)
            meta_json.encode("utf-8")
            doc.id.encode("utf-8")
            doc.content.encode("utf-8")
        except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
            return f"not storable as UTF-8 JSON text ({e}); remove lone surrogates and NaN/inf values", ""
        if not isinstance(doc.meta, dict):
            return f"meta must be a dict, got {type(doc.meta).__name__}", ""
        vec = doc.sparse_embedding
        if vec is not None and vec.indices.size and int(vec.indices.max()) >= SPARSE_INDEX_LIMIT:
            return f"sparse_embedding index {int(vec.indices.max())} is >= {SPARSE_INDEX_LIMIT} (2**31 - 1)", ""
        return None, meta_json

    def _append(
        self, conn: sqlite3.Connection, snap: db.Snapshot, docs: list[tuple[Document, str]], dense_dim: int | None
    ) -> None:
        gen = db.bump(conn, snap)
        self._kill(conn, [d.id for d, _ in docs], gen)
        first = snap.n_rows
        conn.executemany(
            "INSERT INTO docs (row, id, content, meta) VALUES (?, ?, ?, ?)",
            [(first + i, d.id, d.content, meta) for i, (d, meta) in enumerate(docs)],
        )
        dense_pos = [i for i, (d, _) in enumerate(docs) if d.embedding is not None]
        sparse_pos = [i for i, (d, _) in enumerate(docs) if d.sparse_embedding is not None]
        sparse = [v for _, (d, _) in enumerate(docs) if (v := d.sparse_embedding) is not None]
        lengths = [len(v.indices) for v in sparse]
        indptr = np.zeros(len(sparse) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        batch = db.VectorBatch(
            first_row=first,
            n_rows=len(docs),
            dense_rows=np.asarray(dense_pos, dtype=np.int64),
            dense=np.asarray([docs[i][0].embedding for i in dense_pos], dtype=np.float32) if dense_pos else None,
            sparse_rows=np.asarray(sparse_pos, dtype=np.int64),
            sparse_indptr=indptr,
            sparse_indices=np.concatenate([v.indices for v in sparse]).astype(np.int32)
            if indptr[-1]
            else np.zeros(0, np.int32),
            sparse_values=np.concatenate([v.values for v in sparse]).astype(np.float32)
            if indptr[-1]
            else np.zeros(0, np.float32),
        )
        row = db.encode_batch(batch)
        if row is not None:
            conn.execute(f"INSERT INTO vectors ({db.VECTOR_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)
        if dense_dim is not None and dense_dim != snap.dense_dim:
            db.set_meta(conn, "dense_dim", str(dense_dim))

    @staticmethod
    def _kill(conn: sqlite3.Connection, ids: Sequence[str], gen: int) -> int:
        killed = 0
        for chunk in _chunks(ids):
            cur = conn.execute(
                f"UPDATE docs SET dead_gen = ? WHERE dead_gen IS NULL AND id IN ({', '.join('?' * len(chunk))})",
                [gen, *chunk],
            )
            killed += cur.rowcount
        return killed

    @staticmethod
    def _check_ids(ids: Sequence[str], what: str) -> list[str]:
        if isinstance(ids, str | bytes):
            raise ConfigurationError(f"{what} takes a list of ids, got the single string {ids!r}; pass [{ids!r}]")
        out = list(ids)
        bad = [i for i in out if not isinstance(i, str)]
        if bad:
            raise ConfigurationError(f"{what}: ids must be str, got {bad[0]!r} ({type(bad[0]).__name__})")
        return out

    def delete_documents(self, ids: Sequence[str]) -> int:
        """Delete documents by id; unknown ids are ignored. :returns: how many were deleted."""
        wanted = self._check_ids(ids, "delete_documents")
        if not wanted or (self._conn is None and self._connection_missing()):
            return 0
        with self._write() as (conn, snap):
            killed = self._kill(conn, wanted, snap.generation + 1)
            if killed:
                db.bump(conn, snap)
            return killed

    def _connection_missing(self) -> bool:
        """True when nothing exists at the path yet (reads and no-op deletes must not create it)."""
        with self._lock, db.db_errors(self._where):
            return self._connection(create=False) is None

    def delete_by_filter(self, filters: Filters) -> int:
        """Delete every live document matching `filters`. :returns: how many were deleted.

        :raises ConfigurationError: on an empty filter (use :meth:`delete_all_documents`).
        """
        node = self._parse(filters)
        if node is None:
            raise ConfigurationError(
                "delete_by_filter needs a non-empty filter; use delete_all_documents() to empty the store"
            )
        if self._conn is None and self._connection_missing():
            return 0
        with self._write() as (conn, snap):
            where, params = filters_to_sql(node)
            cur = conn.execute(
                f"UPDATE docs SET dead_gen = ? WHERE dead_gen IS NULL AND {where}", [snap.generation + 1, *params]
            )
            if cur.rowcount:
                db.bump(conn, snap)
            return int(cur.rowcount)

    def delete_all_documents(self) -> int:
        """Delete every document (the store's info is kept). :returns: how many were deleted."""
        if self._conn is None and self._connection_missing():
            return 0
        with self._write() as (conn, snap):
            (count,) = conn.execute("SELECT COUNT(*) FROM docs WHERE dead_gen IS NULL").fetchone()
            if snap.n_rows:
                conn.execute("DELETE FROM docs")
                conn.execute("DELETE FROM vectors")
                db.set_meta(conn, "dense_dim", None)
                db.bump(conn, snap, epoch=True)
            return int(count)

    def update_by_filter(self, filters: Filters | None, meta: dict[str, Any]) -> int:
        """Merge `meta` into the metadata of every live document matching `filters` (`None`: all).

        Top-level keys of `meta` replace the document's keys of the same name; others are kept.
        Texts and vectors are unchanged. :returns: how many documents were updated.
        """
        if not isinstance(meta, Mapping):
            raise ConfigurationError(f"update_by_filter: meta must be a dict, got {type(meta).__name__}")
        patch = dict(meta)
        try:
            json.dumps(patch, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise ConfigurationError(f"update_by_filter: meta is not JSON-serialisable UTF-8 text ({e})") from e
        node = self._parse(filters)
        if not patch or (self._conn is None and self._connection_missing()):
            return 0
        with self._write() as (conn, snap):
            where, params = filters_to_sql(node) if node is not None else ("1", [])
            found = conn.execute(f"SELECT row, meta FROM docs WHERE dead_gen IS NULL AND {where}", params).fetchall()
            updates = [(json.dumps({**json.loads(m), **patch}, ensure_ascii=False), r) for r, m in found]
            conn.executemany("UPDATE docs SET meta = ? WHERE row = ?", updates)
            if updates:
                db.bump(conn, snap, content=EXPANSION_KEY in patch)  # BM25 indexes the expansion too
            return len(updates)

    # ------------------------------------------------------------------ metadata about the store
    @property
    def info(self) -> dict[str, Any]:
        """Free-form JSON metadata kept in the store (the encoders that made its vectors, ...)."""
        with self._read() as (_, snap):
            return dict(snap.info)

    def set_info(self, info: Mapping[str, Any]) -> None:
        """Replace the store's info (JSON), in its own transaction; creates the store if needed."""
        if not isinstance(info, Mapping):
            raise ConfigurationError(f"set_info takes a dict, got {type(info).__name__}")
        try:
            text = json.dumps(dict(info), ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")
        except (TypeError, ValueError) as e:
            raise ConfigurationError(f"store info must be JSON-serialisable UTF-8 text ({e})") from e
        with self._write() as (conn, _):
            db.set_meta(conn, "info", text)

    def update_info(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge top-level keys into the info atomically (no lost update between processes). :returns: the new info."""
        with self._write() as (conn, snap):
            merged = {**snap.info, **dict(changes)}
            try:
                db.set_meta(conn, "info", json.dumps(merged, ensure_ascii=False, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise ConfigurationError(f"store info must be JSON-serialisable ({e})") from e
            return merged

    def edit_info(self, edit: Callable[[dict[str, Any]], Mapping[str, Any] | None]) -> dict[str, Any]:
        """Read-modify-write the info atomically: `edit` gets the current info and returns the new one.

        It runs inside the write transaction, so no other process changes the info in between
        (check-and-record, e.g. of the encoders that made the vectors); if `edit` raises, nothing
        changes. Returning `None` keeps the info as it is. :returns: the info now stored.
        """
        with self._write() as (conn, snap):
            current = snap.info
            new = edit(dict(current))
            if new is None:
                return current
            try:
                text = json.dumps(dict(new), ensure_ascii=False, allow_nan=False)
                text.encode("utf-8")
            except (TypeError, ValueError) as e:
                raise ConfigurationError(f"store info must be JSON-serialisable UTF-8 text ({e})") from e
            db.set_meta(conn, "info", text)
            return dict(new)

    @property
    def dense_dimension(self) -> int | None:
        """The dimension of the stored dense vectors, `None` while there are none."""
        with self._read() as (_, snap):
            return snap.dense_dim

    # ------------------------------------------------------------------ reads
    def count_documents(self, filters: Filters | None = None) -> int:
        """How many live documents (matching `filters`) the store holds."""
        node = self._parse(filters)

        def run(conn: _SQL, snap: db.Snapshot) -> int:
            self._sync_alive(conn, snap)  # O(1) while nothing changed; a filter's rows come from the search LRU
            return self._live if node is None else int(self._filter_rows(conn, snap, node).size)

        return self._search(run, 0)

    def get_documents(self, ids: Sequence[str]) -> list[Document]:
        """The live documents with these ids, in the order asked (unknown ids are left out)."""
        wanted = self._check_ids(ids, "get_documents")
        with self._read() as (conn, _):
            if conn is None or not wanted:
                return []
            found: dict[str, Document] = {}
            for chunk in _chunks(wanted):
                marks = ", ".join("?" * len(chunk))
                q = f"SELECT id, content, meta FROM docs WHERE dead_gen IS NULL AND id IN ({marks})"
                for doc_id, content, meta in conn.execute(q, list(chunk)):
                    found[doc_id] = Document(id=doc_id, content=content, meta=_meta(meta))
        seen: set[str] = set()
        out = []
        for doc_id in wanted:
            if doc_id in found and doc_id not in seen:
                seen.add(doc_id)
                out.append(found[doc_id])
        return out

    def filter_documents(
        self, filters: Filters | None = None, *, limit: int | None = None, include_embeddings: bool = False
    ) -> list[Document]:
        """Live documents matching `filters`, in write order (at most `limit`)."""
        if limit is not None:
            limit = check_top_k(limit, "limit")
        out: list[Document] = []
        if limit == 0:
            return out
        page = 1000 if limit is None else min(limit, 1000)
        for doc in self.iter_documents(filters, batch_size=page, include_embeddings=include_embeddings):
            out.append(doc)
            if limit is not None and len(out) >= limit:
                break
        return out

    def iter_documents(
        self, filters: Filters | None = None, *, batch_size: int = 1000, include_embeddings: bool = False
    ) -> Iterator[Document]:
        """Stream live documents matching `filters` in write order, `batch_size` at a time (constant memory).

        Each page is read in its own short transaction, so writers are not held up; documents
        written during the iteration may or may not be seen. Dense embeddings come back as written.

        :raises StoreError: if the store is compacted or emptied during the iteration (rows renumbered).
        """
        size = check_top_k(batch_size, "batch_size")
        if size == 0:
            raise ConfigurationError("batch_size must be >= 1")
        node = self._parse(filters)
        where, params = filters_to_sql(node) if node is not None else ("1", [])
        after, epoch = -1, None
        while True:
            with self._read() as (conn, snap):
                if conn is None:
                    return
                if epoch is not None and snap.epoch != epoch:
                    raise StoreError(
                        f"the store at {self._where!r} was compacted or emptied during iter_documents; start again"
                    )
                epoch = snap.epoch
                page = conn.execute(
                    f"SELECT row, id, content, meta FROM docs WHERE dead_gen IS NULL AND row > ? AND {where} "
                    "ORDER BY row LIMIT ?",
                    [after, *params, size],
                ).fetchall()
                docs = [Document(id=i, content=c, meta=_meta(m)) for _, i, c, m in page]
                if include_embeddings and page:
                    self._attach_embeddings(conn, [r for r, *_ in page], docs)
            yield from docs
            if len(page) < size:
                return
            after = page[-1][0]

    def _attach_embeddings(self, conn: sqlite3.Connection, rows: list[int], docs: list[Document]) -> None:
        lo, hi = rows[0], rows[-1]
        batches = [
            db.decode_batch(r)
            for r in conn.execute(
                f"SELECT {db.VECTOR_COLUMNS} FROM vectors WHERE first_row <= ? AND first_row + n_rows > ? "
                "ORDER BY first_row",
                (hi, lo),
            )
        ]
        starts = [b.first_row for b in batches]
        for row, doc in zip(rows, docs):
            i = int(np.searchsorted(starts, row, side="right")) - 1
            if i < 0 or row >= batches[i].first_row + batches[i].n_rows:
                continue
            b, pos = batches[i], row - batches[i].first_row
            j = int(np.searchsorted(b.dense_rows, pos))
            if b.dense is not None and j < b.dense_rows.size and b.dense_rows[j] == pos:
                doc.embedding = b.dense[j].tolist()
            k = int(np.searchsorted(b.sparse_rows, pos))
            if k < b.sparse_rows.size and b.sparse_rows[k] == pos:
                lo_, hi_ = int(b.sparse_indptr[k]), int(b.sparse_indptr[k + 1])
                doc.sparse_embedding = SparseVector(
                    b.sparse_indices[lo_:hi_].astype(np.int64), b.sparse_values[lo_:hi_].copy()
                )

    def _fetch(self, conn: _SQL, rows: Sequence[int]) -> list[Document]:
        """The documents at `rows`, in that order, read in one statement.

        On the fast path (`conn` is a :class:`_CachedReader`) the same statement reads the store's
        generation, and :class:`_Stale` is raised unless it is still the searched snapshot's: rows
        are renumbered by a compaction, so rows read from another state could be other documents.
        """
        wanted = [int(r) for r in rows]
        if not wanted:
            return []
        if len(wanted) <= _CHUNK:
            sql = f"SELECT row, id, content, meta FROM docs WHERE row IN ({', '.join('?' * len(wanted))})"
            params: list[Any] = wanted
        else:  # one statement for any number of rows: the row list as one JSON parameter
            sql = "SELECT d.row, d.id, d.content, d.meta FROM json_each(?) AS j CROSS JOIN docs AS d ON d.row = j.value"
            params = [json.dumps(wanted)]
        if isinstance(conn, _CachedReader):
            found = conn.conn.execute(
                f"{sql} UNION ALL SELECT -1, value, '', '' FROM store_meta WHERE key = 'generation'", params
            ).fetchall()
            if not any(row == -1 and int(value) == conn.generation for row, value, _, _ in found):
                raise _Stale("the store changed since the generation check")
        else:
            found = conn.execute(sql, params).fetchall()
        by_row = {row: (doc_id, content, meta) for row, doc_id, content, meta in found if row >= 0}
        return [
            Document(id=hit[0], content=hit[1], meta=_meta(hit[2]))
            for hit in (by_row.get(r) for r in wanted)
            if hit is not None
        ]

    def _top(
        self,
        conn: _SQL,
        scores: npt.NDArray[np.floating[Any]],
        mask: npt.NDArray[np.bool_],
        top_k: int,
        source: str,
        positive_only: bool,
    ) -> list[ScoredDocument]:
        keep = mask & (scores > 0) if positive_only else mask
        candidates = np.flatnonzero(keep)
        return self._ranked(conn, candidates, scores[candidates], top_k, source)

    def _ranked(
        self,
        conn: _SQL,
        candidates: npt.NDArray[np.int64],
        cand_scores: npt.NDArray[np.floating[Any]],
        top_k: int,
        source: str,
    ) -> list[ScoredDocument]:
        """The `top_k` best of `candidates` (store rows) by `cand_scores`, as scored documents."""
        if top_k == 0 or candidates.size == 0:
            return []
        if candidates.size > top_k:
            part = np.argpartition(-cand_scores, top_k - 1)[:top_k]
            candidates, cand_scores = candidates[part], cand_scores[part]
        order = np.lexsort((candidates, -cand_scores))  # ties: earlier row first, deterministic
        rows, top_scores = candidates[order], cand_scores[order]
        docs = self._fetch(conn, rows.tolist())
        return [
            ScoredDocument(document=d, score=float(s), rank=i + 1, sources={source: SourceHit(float(s), i + 1)})
            for i, (d, s) in enumerate(zip(docs, top_scores))
        ]

    def _missing_vectors(self, kind: str, live: int) -> ConfigurationError:
        flag = "--no-sparse" if kind == "sparse" else "--no-dense"
        other = "BM25 or dense" if kind == "sparse" else "BM25 or sparse"
        return ConfigurationError(
            f"the store at {self._where!r} holds {live} document(s) but none has a {kind} vector: it was indexed "
            f"without a {kind} encoder. Re-index with one (`lens-rag index SOURCE --store ...` without {flag}, "
            f"or write documents with {'sparse_embedding' if kind == 'sparse' else 'embedding'} set), "
            f"or search with {other}."
        )

    def search_bm25(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        """BM25 over `content` (bm25s, Lucene variant, stemmed, stopwords removed)."""
        if not isinstance(query, str):
            raise ConfigurationError(f"query must be a str, got {type(query).__name__}")
        top_k = check_top_k(top_k)
        node = self._parse(filters)

        def run(conn: _SQL, snap: db.Snapshot) -> list[ScoredDocument]:
            if top_k == 0 or not query.strip():
                return []
            self._sync_alive(conn, snap)
            if not self._live:
                return []
            scores = self._bm25_index(conn, snap).scores(query, n_rows=snap.n_rows)
            return self._top(conn, scores, self._mask(conn, snap, node), top_k, "bm25", positive_only=True)

        return self._search(run, [])

    def search_sparse(
        self, query: SparseVector, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        """Dot product between `query` and every document's sparse embedding."""
        vector = check_sparse_query(query)
        top_k = check_top_k(top_k)
        node = self._parse(filters)

        def run(conn: _SQL, snap: db.Snapshot) -> list[ScoredDocument]:
            if top_k == 0:
                return []
            cache = self._sync_vectors(conn, snap)
            if not self._live:
                return []
            if not self._base_mask("sparse").any():
                raise self._missing_vectors("sparse", self._live)
            rows = self._selective_rows(conn, snap, node, "sparse")
            if rows is not None:
                sub = cache.sparse_scores_of(vector, rows)
                positive = sub > 0
                return self._ranked(conn, rows[positive], sub[positive], top_k, "sparse")
            scores = cache.sparse_scores(vector)
            mask = self._mask(conn, snap, node, "sparse")
            return self._top(conn, scores, mask, top_k, "sparse", positive_only=True)

        return self._search(run, [])

    def search_dense(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        """Cosine similarity between `query` and every document's dense embedding."""
        raw = check_dense_query(query, None)
        top_k = check_top_k(top_k)
        node = self._parse(filters)

        def run(conn: _SQL, snap: db.Snapshot) -> list[ScoredDocument]:
            if top_k == 0:
                return []
            cache = self._sync_vectors(conn, snap)
            if not self._live:
                return []
            matrix = cache.dense
            if matrix is None or not self._base_mask("dense").any():
                raise self._missing_vectors("dense", self._live)
            q = check_dense_query(raw, matrix.shape[1])
            norm = float(np.linalg.norm(q))
            q = q / norm if norm else q
            rows = self._selective_rows(conn, snap, node, "dense")
            if rows is not None:
                return self._ranked(conn, rows, _matvec(matrix[rows], q), top_k, "dense")
            scores = _matvec(matrix, q)
            mask = self._mask(conn, snap, node, "dense")
            return self._top(conn, scores, mask, top_k, "dense", positive_only=False)

        return self._search(run, [])

    # helpers kept for benchmarks that time the raw kernels
    def _dense_matrix(self) -> npt.NDArray[np.float32] | None:
        with self._read() as (conn, snap):
            return None if conn is None else self._sync_vectors(conn, snap).dense

    def _sparse_matrix(self) -> sp.csc_matrix | None:
        with self._read() as (conn, snap):
            if conn is None:
                return None
            merged = self._sync_vectors(conn, snap).merged_sparse()
            return None if merged is None else merged[0]

    # ------------------------------------------------------------------ lifecycle
    def compact(self) -> None:
        """Drop dead rows (one transaction, rows renumbered), `VACUUM`, and rebuild the caches.

        Readers keep working throughout: they see the store before or after, never without it.
        """
        if self._conn is None and self._connection_missing():
            return
        with self._write() as (conn, snap):
            (dead,) = conn.execute("SELECT COUNT(*) FROM docs WHERE dead_gen IS NOT NULL").fetchone()
            if dead:
                try:
                    db.rewrite_live(conn, snap)
                except ValueError as e:  # rolled back: the store is as it was
                    raise StoreCorruptedError(
                        f"the store at {self._where!r} cannot be compacted: a vector blob is damaged ({e}). Nothing "
                        "was changed; rebuild it with `lens-rag index SOURCE --store NEW_DIR`."
                    ) from e
        with self._lock:
            handle = self._connection(create=False)
            if handle is not None and self.path is not None:
                try:
                    handle.execute("VACUUM")
                    handle.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.OperationalError as e:  # another process holds the database: skip, nothing lost
                    logger.warning("VACUUM of %s skipped (%s); the store is compacted, just not shrunk", self._where, e)
        with self._read() as (reader, snap):  # rebuild the caches now rather than at the next search
            if reader is not None and snap.n_rows:
                self._sync_vectors(reader, snap)
                if self._alive.any():
                    self._bm25_index(reader, snap)

    def close(self) -> None:
        """Release the SQLite connection and in-memory caches; the store reopens on next use.

        An in-memory store (`path=None`) keeps its data until garbage-collected.
        """
        with self._lock:
            if self.path is None:
                return
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._snap = None
            self._vectors = VectorCache()
            self._alive = np.zeros(0, dtype=bool)
            self._alive_state = None
            self._bm25, self._bm25_name, self._bm25_key = None, None, None
            self._masks.clear()
            self._live = 0
            self._base_masks.clear()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedStore(path={str(self.path) if self.path else None!r})"

    # ------------------------------------------------------------------ async twins (never block the loop)
    async def write_documents_async(self, documents: Sequence[Document]) -> WriteResult:
        return await asyncio.to_thread(self.write_documents, documents)

    async def delete_documents_async(self, ids: Sequence[str]) -> int:
        return await asyncio.to_thread(self.delete_documents, ids)

    async def get_documents_async(self, ids: Sequence[str]) -> list[Document]:
        return await asyncio.to_thread(self.get_documents, ids)

    async def count_documents_async(self, filters: Filters | None = None) -> int:
        return await asyncio.to_thread(self.count_documents, filters)

    async def filter_documents_async(
        self, filters: Filters | None = None, *, limit: int | None = None, include_embeddings: bool = False
    ) -> list[Document]:
        return await asyncio.to_thread(
            self.filter_documents, filters, limit=limit, include_embeddings=include_embeddings
        )

    async def iter_documents_async(
        self, filters: Filters | None = None, *, batch_size: int = 1000, include_embeddings: bool = False
    ) -> AsyncIterator[Document]:
        iterator = self.iter_documents(filters, batch_size=batch_size, include_embeddings=include_embeddings)
        done = object()
        while True:
            doc = await asyncio.to_thread(next, iterator, done)
            if doc is done:
                return
            assert isinstance(doc, Document)
            yield doc

    async def delete_by_filter_async(self, filters: Filters) -> int:
        return await asyncio.to_thread(self.delete_by_filter, filters)

    async def delete_all_documents_async(self) -> int:
        return await asyncio.to_thread(self.delete_all_documents)

    async def update_by_filter_async(self, filters: Filters | None, meta: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.update_by_filter, filters, meta)

    async def info_async(self) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.info)

    async def set_info_async(self, info: Mapping[str, Any]) -> None:
        await asyncio.to_thread(self.set_info, info)

    async def edit_info_async(self, edit: Callable[[dict[str, Any]], Mapping[str, Any] | None]) -> dict[str, Any]:
        return await asyncio.to_thread(self.edit_info, edit)

    async def update_info_async(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.update_info, changes)

    async def search_bm25_async(
        self, query: str, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        return await asyncio.to_thread(self.search_bm25, query, top_k, filters)

    async def search_sparse_async(
        self, query: SparseVector, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        return await asyncio.to_thread(self.search_sparse, query, top_k, filters)

    async def search_dense_async(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        return await asyncio.to_thread(self.search_dense, query, top_k, filters)

    async def compact_async(self) -> None:
        await asyncio.to_thread(self.compact)

    async def close_async(self) -> None:
        await asyncio.to_thread(self.close)
