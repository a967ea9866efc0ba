"""The job the embedded-store crash test kills: writes, replaces, deletes and compacts a few hundred documents.

Everything is deterministic: the job (list of operations) comes from a seed, and every document's
content, dense and sparse vectors come from its id and version (the index of the operation that
wrote it), so the test can tell exactly which state the store must be in after any prefix of the
job. The writer prints ``ACK <op>`` (one unbuffered write) after each operation the store returned
from, i.e. after each acknowledged commit.

Run modes::

    python _embedded_crash_writer.py run STORE_DIR START STOP   # ops START..STOP-1, one process
    python _embedded_crash_writer.py serve                      # fork server, see below

`serve` imports everything once, then reads ``run STORE_DIR START STOP SPEC`` lines on stdin and
forks one child per line (a fresh process without the import cost: the crash test needs dozens),
printing ``PID <pid>`` and, when the child ends, ``EXIT <pid> <status>``. `SPEC` pins the kill to an
instant inside the first operation of the run (the child SIGKILLs itself there), counted from that
operation's start; ``-`` for none (the test kills the child from outside at a random instant):

- ``stmt:N``: before the N-th SQL statement that writes (INSERT, UPDATE, DELETE, REPLACE);
- ``commit:N``: before the N-th ``COMMIT`` runs (everything of the write is staged, nothing committed);
- ``postcommit:N``: right after the N-th ``COMMIT`` returned, before the next SQL statement, file
  operation or acknowledgement;
- ``postcommit-file:N``: after the N-th ``COMMIT``, before the next file rename/unlink (a cache or
  segment file written after the commit) or the acknowledgement;
- ``fsop:N`` / ``fsop-after:N``: right before / after the N-th rename, replace, unlink or rmdir.

A pinned instant that the first operation never reaches prints ``PIN-MISSED`` and the child stops
after that operation.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
from typing import Any

import numpy as np

POOL = [f"d{i:03d}" for i in range(240)]
DIM = 16
SIGNATURE_BASE = 1000  # sparse dimension 1000 + id number is the document's own, weight 5
SIGNATURE_WEIGHT = 5.0

Op = tuple[str, list[Any]]  # ("write", [(id, version), ...]) | ("delete", [id, ...]) | ("compact", [])


def make_job(seed: int = 7, n_ops: int = 72) -> list[Op]:
    """A job that writes most of the pool, replaces and deletes some of it, and compacts now and then."""
    rng = random.Random(seed)
    job: list[Op] = []
    live: set[str] = set()
    for k in range(n_ops):
        if k % 8 == 7:
            job.append(("compact", []))
        elif k % 8 in (3, 6) and len(live) > 20:
            ids = [*rng.sample(sorted(live), rng.randint(3, 12)), rng.choice(POOL)]  # may name a missing id
            job.append(("delete", ids))
            live -= set(ids)
        else:
            fresh = [i for i in POOL if i not in live]
            ids = rng.sample(fresh, min(len(fresh), rng.randint(8, 20)))
            if live:
                ids += rng.sample(sorted(live), min(len(live), rng.randint(0, 8)))  # replacements
            job.append(("write", [(i, k) for i in ids]))
            live |= set(ids)
    return job


def states(job: list[Op]) -> list[dict[str, int]]:
    """`states(job)[k]` is the store's content (id -> version) after the first `k` operations."""
    out = [{}]
    for kind, args in job:
        state = dict(out[-1])
        if kind == "write":
            state.update(dict(args))
        elif kind == "delete":
            for i in args:
                state.pop(i, None)
        out.append(state)
    return out


def content(doc_id: str, version: int) -> str:
    return f"document {doc_id} version {version} tok{doc_id}v{version} shared words for every passage"


def version_of(text: str) -> int:
    return int(text.split()[3])


def dense_vector(doc_id: str, version: int) -> np.ndarray:
    rng = np.random.default_rng([int(doc_id[1:]), version])
    return rng.standard_normal(DIM).astype(np.float32)


def sparse_arrays(doc_id: str, version: int) -> tuple[np.ndarray, np.ndarray]:
    """Six random dimensions below 1000 (weights < 1) plus the id's own dimension (weight 5):
    a document's own vector scores >= 25 against itself and < 7 against any other, so it is the top hit."""
    rng = np.random.default_rng([int(doc_id[1:]), version, 1])
    idx = rng.choice(SIGNATURE_BASE, size=6, replace=False)
    val = rng.uniform(0.1, 1.0, size=6)
    indices = np.append(np.sort(idx), SIGNATURE_BASE + int(doc_id[1:])).astype(np.int64)
    return indices, np.append(val, SIGNATURE_WEIGHT).astype(np.float32)


def self_sparse_score(doc_id: str, version: int) -> float:
    return float(np.sum(sparse_arrays(doc_id, version)[1].astype(np.float64) ** 2))


def document(doc_id: str, version: int) -> Any:
    from lens_rag.documents import Document
    from lens_rag.sparse import SparseVector

    idx, val = sparse_arrays(doc_id, version)
    return Document(
        id=doc_id,
        content=content(doc_id, version),
        meta={"version": version, "group": int(doc_id[1:]) % 5},
        embedding=dense_vector(doc_id, version).tolist(),
        sparse_embedding=SparseVector(idx, val),
    )


# ------------------------------------------------------------------------------------------ kill hooks
class _Pin:
    """Counts SQL statements and file operations from the current operation's start; kills at the pinned one."""

    def __init__(self, spec: str) -> None:
        self.kind, _, n = spec.partition(":")
        self.n = int(n) if n else 0
        self.active = bool(self.n)
        self.reset()

    def reset(self) -> None:
        self.stmts = self.commits = self.fsops = 0
        self.after_commit = False

    @staticmethod
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def statement(self, sql: str) -> None:
        if not self.active:
            return
        if self.after_commit and self.kind == "postcommit":
            self.die()
        head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if head in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            self.stmts += 1
            if self.kind == "stmt" and self.stmts == self.n:
                self.die()
        elif head in ("COMMIT", "END"):
            self.commits += 1
            if self.kind == "commit" and self.commits == self.n:
                self.die()
            if self.commits == self.n:
                self.after_commit = True  # the COMMIT runs after this callback returns

    def fsop(self, before: bool) -> None:
        if not self.active:
            return
        if before and self.after_commit and self.kind in ("postcommit", "postcommit-file"):
            self.die()
        if before:
            self.fsops += 1
            if self.kind == "fsop" and self.fsops == self.n:
                self.die()
        elif self.kind == "fsop-after" and self.fsops == self.n:
            self.die()

    def acknowledging(self) -> None:
        if self.active and self.after_commit and self.kind in ("postcommit", "postcommit-file"):
            self.die()


def _install(pin: _Pin) -> None:
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(pin.statement)
        return conn

    sqlite3.connect = traced_connect  # type: ignore[assignment]
    for name in ("replace", "rename", "unlink", "remove", "rmdir"):
        original = getattr(os, name)

        def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            pin.fsop(before=True)
            result = _original(*args, **kwargs)
            pin.fsop(before=False)
            return result

        setattr(os, name, wrapped)


# ------------------------------------------------------------------------------------------ the job
def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one unbuffered write: nothing is lost to a SIGKILL after it


def run_job(path: str, start: int, stop: int, spec: str = "-") -> None:
    pin = _Pin("" if spec == "-" else spec)
    if pin.active:
        _install(pin)
    from lens_rag.stores.embedded import EmbeddedStore

    job = make_job()
    stop = len(job) if stop < 0 else stop
    store = EmbeddedStore(path, progress=False)
    for k in range(start, stop):
        pin.reset()
        kind, args = job[k]
        if kind == "write":
            store.write_documents([document(i, v) for i, v in args])
        elif kind == "delete":
            store.delete_documents(args)
        else:
            store.compact()
        pin.acknowledging()
        _say(f"ACK {k}")
        if pin.active:
            _say("PIN-MISSED")
            break
    store.close()
    _say("DONE")


def serve() -> None:
    import lens_rag.stores.embedded  # noqa: F401  (imported once, before forking)

    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] != "run":
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run_job(parts[1], int(parts[2]), int(parts[3]), parts[4])
            except BaseException as e:  # reported to the test, which counts it as a failed run
                _say(f"ERROR {type(e).__name__}: {e}".replace("\n", " "))
                code = 1
            finally:
                os._exit(code)
        _say(f"PID {pid}")
        _, status = os.waitpid(pid, 0)
        _say(f"EXIT {pid} {status}")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        run_job(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
