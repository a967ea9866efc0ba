"""The embedded store's SQLite layer: schema, connections, transactions and vector blobs.

Everything that must survive lives in one SQLite database (``store.sqlite``, WAL mode) and
changes in one transaction per operation, so a crash at any instant leaves the store at its last
committed write. Search structures are caches derived from it (see ``embedded_cache``).

Tables::

    store_meta(key, value)   format, version, uuid, counters, dense dimension, info (JSON)
    docs(row, id, content, meta, dead_gen)
                             one row per written document; a replaced or deleted document keeps its
                             row with `dead_gen` = the generation that killed it (rows are append-only
                             between compactions, so caches can be extended instead of rebuilt)
    vectors(first_row, n_rows, ...)
                             the vectors of one write, as blobs: raw float32 dense rows and the CSR
                             arrays of the sparse rows (positions say which rows of the write have them)

Counters in ``store_meta``: `generation` (every document change), `content_generation` (changes
of the live set or of texts: what BM25 depends on), `epoch` (rows were renumbered: compact,
delete-all). Caches are keyed by them.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lens_rag.errors import StoreCorruptedError, StoreError

__all__ = [
    "BUSY_TIMEOUT_S",
    "CACHE_KIB",
    "DB_NAME",
    "EMPTY_SNAPSHOT",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "VECTOR_COLUMNS",
    "Snapshot",
    "VectorBatch",
    "bump",
    "connect",
    "create_schema",
    "db_errors",
    "decode_batch",
    "encode_batch",
    "has_schema",
    "read_snapshot",
    "rewrite_live",
    "set_meta",
]

FORMAT_NAME = "lens-rag-embedded"
FORMAT_VERSION = 2
DB_NAME = "store.sqlite"
BUSY_TIMEOUT_S = 60.0
CACHE_KIB = 32 * 1024  # SQLite page cache per connection (the default is 2 MiB)

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS docs (row INTEGER PRIMARY KEY, id TEXT NOT NULL, content TEXT NOT NULL,"
    " meta TEXT NOT NULL, dead_gen INTEGER)",
    "CREATE UNIQUE INDEX IF NOT EXISTS docs_live_id ON docs(id) WHERE dead_gen IS NULL",
    "CREATE INDEX IF NOT EXISTS docs_dead ON docs(dead_gen) WHERE dead_gen IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS vectors (first_row INTEGER PRIMARY KEY, n_rows INTEGER NOT NULL,"
    " dense_dim INTEGER, dense_rows BLOB, dense BLOB, sparse_rows BLOB, sparse_indptr BLOB,"
    " sparse_indices BLOB, sparse_values BLOB)",
]
_COUNTERS = ("generation", "content_generation", "epoch")


def connect(path: Path | None) -> sqlite3.Connection:
    """Open the database (`None`: in memory) in autocommit mode; transactions are explicit."""
    target = ":memory:" if path is None else str(path)
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    if path is not None:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode for {target!r} (got {mode!r}); use a local file system")
        conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk before write_documents returns
        # Result rows are fetched by row number at random: with SQLite's default 2 MiB page cache most
        # fetches of a mid-sized store miss and go to the OS (SciFact, 5,183 passages, 29 MB: bm25 top-101
        # p50 -14 % with 32 MiB, interleaved). The cache fills only as pages are read and is dropped when
        # another connection commits. (mmap_size gained a few % more, but a file truncated under a mapping
        # is a SIGBUS, not an error.)
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    return conn


def has_schema(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_meta'").fetchone()
    return row is not None


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and the format/counter rows (idempotent; run inside a write transaction)."""
    for statement in _SCHEMA:
        conn.execute(statement)
    defaults = {
        "format": FORMAT_NAME,
        "version": str(FORMAT_VERSION),
        "uuid": uuid.uuid4().hex,
        "info": "{}",
        **{c: "0" for c in _COUNTERS},
    }
    conn.executemany("INSERT OR IGNORE INTO store_meta (key, value) VALUES (?, ?)", list(defaults.items()))


@dataclass(frozen=True)
class Snapshot:
    """The store's state as one read transaction sees it."""

    uuid: str
    generation: int
    content_generation: int
    epoch: int
    dense_dim: int | None
    info_json: str
    n_rows: int  # max(row) + 1: rows [0, n_rows) exist (live or dead)

    @property
    def info(self) -> dict[str, Any]:
        return dict(json.loads(self.info_json))


EMPTY_SNAPSHOT = Snapshot("", 0, 0, 0, None, "{}", 0)
_SNAPSHOT_SQL = "SELECT key, value FROM store_meta UNION ALL SELECT '~n_rows', IFNULL(MAX(row) + 1, 0) FROM docs"


def read_snapshot(conn: sqlite3.Connection, where: str) -> Snapshot:
    """Read the counters (one statement); call inside a transaction.

    :raises StoreCorruptedError: on a foreign format or version.
    """
    values = dict(conn.execute(_SNAPSHOT_SQL).fetchall())
    if values.get("format") != FORMAT_NAME:
        raise StoreCorruptedError(
            f"the store at {where!r} cannot be read: its database has format {values.get('format')!r}, "
            f"not {FORMAT_NAME!r}. Nothing was changed; pass the directory of a lens-rag store or a new one."
        )
    if values.get("version") != str(FORMAT_VERSION):
        raise StoreCorruptedError(
            f"the store at {where!r} cannot be read: it has format version {values.get('version')}, this lens-rag "
            f"reads version {FORMAT_VERSION}. Nothing was changed; re-index into a new directory "
            "(`lens-rag index SOURCE --store NEW_DIR`) or use the lens-rag version that wrote it."
        )
    dim = values.get("dense_dim")
    return Snapshot(
        uuid=values["uuid"],
        generation=int(values["generation"]),
        content_generation=int(values["content_generation"]),
        epoch=int(values["epoch"]),
        dense_dim=int(dim) if dim else None,
        info_json=values.get("info", "{}"),
        n_rows=int(values["~n_rows"]),
    )


def bump(conn: sqlite3.Connection, snap: Snapshot, *, content: bool = True, epoch: bool = False) -> int:
    """Advance the counters inside the current write transaction; :returns: the new generation."""
    gen = snap.generation + 1
    updates = [("generation", str(gen))]
    if content:
        updates.append(("content_generation", str(snap.content_generation + 1)))
    if epoch:
        updates.append(("epoch", str(snap.epoch + 1)))
    conn.executemany("UPDATE store_meta SET value = ? WHERE key = ?", [(v, k) for k, v in updates])
    return gen


def set_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM store_meta WHERE key = ?", (key,))
    else:
        conn.execute("INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)", (key, value))


@contextlib.contextmanager
def db_errors(where: str) -> Iterator[None]:
    """Turn SQLite failures into lens-rag errors that say what happened and what to do."""
    try:
        yield
    except sqlite3.OperationalError as e:
        text = str(e)
        if "locked" in text or "busy" in text:
            raise StoreError(
                f"the store at {where!r} stayed locked by another process for {BUSY_TIMEOUT_S:.0f}s ({text}); "
                "retry when its write or compaction has finished"
            ) from e
        if "malformed" in text or "not a database" in text or "no such table" in text:
            raise _corrupted(where, e) from e
        raise StoreError(f"the store at {where!r} could not be accessed ({text})") from e
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise
    except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed", ...
        raise _corrupted(where, e) from e


def _corrupted(where: str, e: Exception) -> StoreCorruptedError:
    return StoreCorruptedError(
        f"the store at {where!r} cannot be read: its SQLite database is damaged ({e}). Nothing was changed; "
        "restore it from a backup or rebuild it with `lens-rag index SOURCE --store NEW_DIR`."
    )


# ---------------------------------------------------------------------------------------- vector blobs
@dataclass
class VectorBatch:
    """The vectors of one write: rows [first_row, first_row + n_rows).

    `dense` holds the raw (as written) float32 rows of the positions in `dense_rows`; the sparse
    part is a CSR over the positions in `sparse_rows` (indices int32, checked < 2**31 - 1).
    """

    first_row: int
    n_rows: int
    dense_rows: npt.NDArray[np.int64]
    dense: npt.NDArray[np.float32] | None
    sparse_rows: npt.NDArray[np.int64]
    sparse_indptr: npt.NDArray[np.int64]
    sparse_indices: npt.NDArray[np.int32]
    sparse_values: npt.NDArray[np.float32]

    @property
    def sparse_dim(self) -> int:
        return int(self.sparse_indices.max()) + 1 if self.sparse_indices.size else 1


def _positions_blob(positions: npt.NDArray[np.int64], n_rows: int) -> bytes | None:
    """`None` means every row of the write (the common case costs nothing)."""
    return None if positions.size == n_rows else positions.astype(np.int32).tobytes()


def _positions(blob: bytes | None, n_rows: int, present: bool) -> npt.NDArray[np.int64]:
    if not present:
        return np.zeros(0, dtype=np.int64)
    if blob is None:
        return np.arange(n_rows, dtype=np.int64)
    return np.frombuffer(blob, dtype=np.int32).astype(np.int64)


def encode_batch(batch: VectorBatch) -> tuple[Any, ...] | None:
    """The `vectors` table row for a batch, or `None` when it holds no vectors at all."""
    has_dense = batch.dense is not None and batch.dense_rows.size > 0
    has_sparse = batch.sparse_rows.size > 0
    if not has_dense and not has_sparse:
        return None
    dense = batch.dense if has_dense else None
    return (
        batch.first_row,
        batch.n_rows,
        None if dense is None else int(dense.shape[1]),
        _positions_blob(batch.dense_rows, batch.n_rows) if has_dense else None,
        None if dense is None else np.ascontiguousarray(dense, dtype=np.float32).tobytes(),
        _positions_blob(batch.sparse_rows, batch.n_rows) if has_sparse else None,
        batch.sparse_indptr.astype(np.int64).tobytes() if has_sparse else None,
        batch.sparse_indices.astype(np.int32).tobytes() if has_sparse else None,
        batch.sparse_values.astype(np.float32).tobytes() if has_sparse else None,
    )


VECTOR_COLUMNS = (
    "first_row, n_rows, dense_dim, dense_rows, dense, sparse_rows, sparse_indptr, sparse_indices, sparse_values"
)


def decode_batch(row: tuple[Any, ...]) -> VectorBatch:
    first, n, dim, dense_rows, dense, sparse_rows, indptr, indices, values = row
    has_dense, has_sparse = dense is not None, indptr is not None
    d_rows = _positions(dense_rows, n, has_dense)
    s_rows = _positions(sparse_rows, n, has_sparse)
    dense_arr = np.frombuffer(dense, dtype=np.float32).reshape(d_rows.size, int(dim)) if has_dense else None
    ptr = np.frombuffer(indptr, dtype=np.int64) if has_sparse else np.zeros(1, dtype=np.int64)
    if has_dense and dense_arr is not None and dense_arr.shape[0] != d_rows.size:
        raise ValueError("dense blob does not match its row list")
    if ptr.size != s_rows.size + 1:
        raise ValueError("sparse blob does not match its row list")
    idx = np.frombuffer(indices, dtype=np.int32) if has_sparse else np.zeros(0, dtype=np.int32)
    val = np.frombuffer(values, dtype=np.float32) if has_sparse else np.zeros(0, dtype=np.float32)
    if int(ptr[0]) != 0 or int(ptr[-1]) != idx.size or idx.size != val.size or np.any(np.diff(ptr) < 0):
        raise ValueError("sparse blob arrays do not agree")
    if (d_rows.size and int(d_rows.max()) >= n) or (s_rows.size and int(s_rows.max()) >= n):
        raise ValueError("vector row list points outside its write")
    return VectorBatch(
        first_row=int(first),
        n_rows=int(n),
        dense_rows=d_rows,
        dense=dense_arr,
        sparse_rows=s_rows,
        sparse_indptr=ptr,
        sparse_indices=idx,
        sparse_values=val,
    )


def rewrite_live(conn: sqlite3.Connection, snap: Snapshot) -> None:
    """Compaction inside a write transaction: copy the live rows, renumbered from 0, and their vectors."""
    dead = conn.execute("SELECT row FROM docs WHERE dead_gen IS NOT NULL").fetchall()
    alive = np.ones(snap.n_rows, dtype=bool)
    alive[[r for (r,) in dead]] = False
    new_row = np.cumsum(alive) - 1  # old row -> new row for live rows
    conn.execute("DROP TABLE IF EXISTS docs_new")
    conn.execute(
        "CREATE TABLE docs_new (row INTEGER PRIMARY KEY, id TEXT NOT NULL, content TEXT NOT NULL,"
        " meta TEXT NOT NULL, dead_gen INTEGER)"
    )
    conn.execute(
        "INSERT INTO docs_new (row, id, content, meta) SELECT ROW_NUMBER() OVER (ORDER BY row) - 1, id, content,"
        " meta FROM docs WHERE dead_gen IS NULL ORDER BY row"
    )
    conn.execute("DROP TABLE IF EXISTS vectors_new")
    conn.execute(
        "CREATE TABLE vectors_new (first_row INTEGER PRIMARY KEY, n_rows INTEGER NOT NULL, dense_dim INTEGER,"
        " dense_rows BLOB, dense BLOB, sparse_rows BLOB, sparse_indptr BLOB, sparse_indices BLOB,"
        " sparse_values BLOB)"
    )
    old = conn.execute(f"SELECT {VECTOR_COLUMNS} FROM vectors ORDER BY first_row").fetchall()
    for raw in old:
        b = decode_batch(raw)
        live = alive[b.first_row : b.first_row + b.n_rows]
        if not live.any():
            continue
        remap = np.cumsum(live) - 1  # position in the batch -> position among its live rows
        d_keep = live[b.dense_rows] if b.dense_rows.size else np.zeros(0, dtype=bool)
        s_keep = live[b.sparse_rows] if b.sparse_rows.size else np.zeros(0, dtype=bool)
        lengths = np.diff(b.sparse_indptr)[s_keep]
        take = np.repeat(s_keep, np.diff(b.sparse_indptr))
        indptr = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        fresh = VectorBatch(
            first_row=int(new_row[b.first_row + int(np.argmax(live))]),
            n_rows=int(live.sum()),
            dense_rows=remap[b.dense_rows[d_keep]],
            dense=None if b.dense is None else b.dense[d_keep],
            sparse_rows=remap[b.sparse_rows[s_keep]],
            sparse_indptr=indptr,
            sparse_indices=b.sparse_indices[take],
            sparse_values=b.sparse_values[take],
        )
        row = encode_batch(fresh)
        if row is not None:
            conn.execute(f"INSERT INTO vectors_new ({VECTOR_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)
    conn.execute("DROP TABLE docs")
    conn.execute("ALTER TABLE docs_new RENAME TO docs")
    conn.execute("DROP TABLE vectors")
    conn.execute("ALTER TABLE vectors_new RENAME TO vectors")
    create_schema(conn)  # the indexes of the new tables
    bump(conn, snap, epoch=True)
