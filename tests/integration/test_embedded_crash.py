"""Crash injection: SIGKILL a writer of the embedded store at seeded random and pinned instants.

A writer process (``_embedded_crash_writer.py``) runs a deterministic job that writes, replaces,
deletes and compacts a few hundred documents and prints ``ACK k`` after each operation the store
returned from. It is killed with SIGKILL at >= 20 seeded random instants and at instants pinned
inside the commit (before the SQLite ``COMMIT``, right after it, before/after file renames). After
every kill the store must open, hold exactly the acknowledged state (or that state plus the one
operation in flight, nothing in between), count it right, and find every live document by its own
sparse and dense vectors (with the scores of *its current* vectors) and by BM25; the job then goes
on from there. At the end the whole job is run again from the start on the same store, in a fresh
process, and must complete with the expected final state.

`LENS_RAG_CRASH_SEED` changes the seed of the kill instants (default 20261122).
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _embedded_crash_writer as job_mod
import pytest

from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

WRITER = Path(job_mod.__file__)
RANDOM_KILLS = 24
#: pinned instants, each tried at the start of a write, a delete and a compact operation
PINS = ["commit:1", "postcommit:1", "stmt:1", "postcommit-file:1", "fsop:1", "fsop-after:1"]
#: every design has a COMMIT per write and per delete: killing just before and just after it must land
MUST_LAND = ("commit:1", "postcommit:1")
RUN_TIMEOUT_S = 30


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing in the writer needs threads; a fork server must not start BLAS thread pools before forking.
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


class ForkServer:
    """The writer's `serve` mode: one process that imports once and forks one writer per run."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line.strip()))
        self.lines.put((time.perf_counter(), "EOF"))

    def next_line(self, deadline: float) -> str:
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.perf_counter()))[1]
        except queue.Empty:
            raise TimeoutError("the crash writer did not answer in time") from None

    def start(self, path: Path, start: int, stop: int, spec: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {path} {start} {stop} {spec}\n")
        self.proc.stdin.flush()
        line = self.next_line(time.perf_counter() + RUN_TIMEOUT_S)
        assert line.startswith("PID "), line
        return int(line.split()[1])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_once(
    server: ForkServer, path: Path, start: int, spec: str, kill_after_acks: int | None, delay_s: float
) -> dict[str, Any]:
    """One writer run from op `start`; killed from outside after `kill_after_acks` acks + `delay_s`
    (random instants), or by itself at the pinned `spec`. Returns acks, whether it was killed, and so on."""
    pid = server.start(path, start, -1, spec)
    acks: list[int] = []
    times: list[float] = []
    out: dict[str, Any] = {"killed": False, "error": None, "pin_missed": False, "done": False}
    deadline = time.perf_counter() + RUN_TIMEOUT_S
    kill_at: float | None = time.perf_counter() + delay_s if kill_after_acks == 0 else None
    while True:
        now = time.perf_counter()
        if kill_at is not None and now >= kill_at:
            try:
                os.kill(pid, 9)  # our own child, by its id
            except ProcessLookupError:
                pass
            kill_at = None
        try:
            wait_until = min(deadline, kill_at) if kill_at is not None else deadline
            line = server.next_line(wait_until)
        except TimeoutError:
            if time.perf_counter() >= deadline:
                os.kill(pid, 9)
                raise AssertionError(
                    f"the writer (run from op {start}, pin {spec}) hung for {RUN_TIMEOUT_S}s"
                ) from None
            continue
        if line.startswith("ACK "):
            acks.append(int(line.split()[1]))
            times.append(time.perf_counter())
            if kill_after_acks is not None and len(acks) == kill_after_acks:
                kill_at = time.perf_counter() + delay_s
        elif line == "PIN-MISSED":
            out["pin_missed"] = True
        elif line == "DONE":
            out["done"] = True
        elif line.startswith("ERROR "):
            out["error"] = line[6:]
        elif line.startswith("EXIT "):
            status = int(line.split()[2])
            out["killed"] = os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
            break
        elif line == "EOF":
            raise AssertionError("the crash writer's fork server exited")
    out["acks"] = acks
    gaps = [b - a for a, b in itertools.pairwise(times)]
    out["op_s"] = sorted(gaps)[len(gaps) // 2] if gaps else None  # median time from one ack to the next
    return out


def check_store(path: Path, candidates: dict[int, dict[str, int]]) -> tuple[int | None, list[str]]:
    """Open the store and compare it with the allowed states (op index -> id -> version).

    :returns: the index of the state it holds (None if none) and every problem found.
    """
    problems: list[str] = []
    try:
        store = EmbeddedStore(path, progress=False)
        count = store.count_documents()
    except Exception as e:  # the store must always open
        return None, [f"the store does not open: {type(e).__name__}: {e}"]
    try:
        docs = store.get_documents(job_mod.POOL)
        actual = {d.id: job_mod.version_of(d.content) for d in docs}
        matched = next((k for k, state in sorted(candidates.items()) if state == actual), None)
        if matched is None:
            expected = {k: len(s) for k, s in candidates.items()}
            problems.append(f"holds {len(actual)} documents, none of the allowed states {expected}")
        if count != len(actual):
            problems.append(f"count_documents() = {count} but {len(actual)} documents are stored")
        for d in docs:
            version = actual[d.id]
            idx, val = job_mod.sparse_arrays(d.id, version)
            hits = store.search_sparse(SparseVector(idx, val), top_k=1)
            want = job_mod.self_sparse_score(d.id, version)
            if not hits or hits[0].document.id != d.id or abs(hits[0].score - want) > 1e-3 * want:
                got = (hits[0].document.id, round(hits[0].score, 4)) if hits else None
                problems.append(f"{d.id} v{version}: own sparse vector gives {got}, expected ({d.id}, {want:.4f})")
            hits = store.search_dense(job_mod.dense_vector(d.id, version).tolist(), top_k=1)
            if not hits or hits[0].document.id != d.id or hits[0].score < 0.9999:
                got = (hits[0].document.id, round(hits[0].score, 4)) if hits else None
                problems.append(f"{d.id} v{version}: own dense vector gives {got}, expected ({d.id}, 1.0)")
        for d in docs[:: max(1, len(docs) // 15)]:  # a sample through BM25 (its index is a derived cache too)
            hits = store.search_bm25(f"tok{d.id}v{actual[d.id]}", top_k=1)
            if not hits or hits[0].document.id != d.id:
                problems.append(f"{d.id}: BM25 on its unique token gives {[h.document.id for h in hits]}")
    except Exception as e:
        problems.append(f"reading the store failed: {type(e).__name__}: {e}")
        matched = None
    finally:
        store.close()
    return matched, problems[:20]


def test_sigkill_at_random_and_pinned_instants_leaves_a_consistent_store(tmp_path: Path) -> None:
    seed = int(os.environ.get("LENS_RAG_CRASH_SEED", "20261122"))
    rng = random.Random(seed)
    job = job_mod.make_job()
    expected = job_mod.states(job)
    path = tmp_path / "store"
    kinds = {kind: [k for k, (kd, _) in enumerate(job) if kd == kind] for kind in ("write", "delete", "compact")}
    pending_pins = [(kind, pin) for pin in PINS for kind in kinds]  # each pin at a write, delete and compact op
    log: list[str] = []
    inconsistencies: list[str] = []
    kills = random_kills = pinned_kills = 0
    check_s, started = 0.0, time.perf_counter()
    missed_pins: list[str] = []
    landed_pins: set[str] = set()
    position = 0  # the store holds expected[position]
    op_s = 0.02
    server = ForkServer()
    try:
        while position < len(job):
            kind = job[position][0]
            # Pins from op 1 on: at op 0 the first COMMIT would be the store's creation, not the operation's.
            # The kills just before and just after the COMMIT go first, so each lands at every kind of op.
            mine = [p for p in pending_pins if p[0] == kind] if position else []
            pin = next((p for p in mine if p[1] in MUST_LAND), mine[0] if mine else None)
            if pin is not None and (random_kills >= RANDOM_KILLS or pin[1] in MUST_LAND or rng.random() < 0.5):
                pending_pins.remove(pin)
                spec, after, delay = pin[1], None, 0.0
            elif random_kills < RANDOM_KILLS:
                spec, after, delay = "-", rng.randint(0, 1), rng.uniform(0, 1.2 * op_s)
            else:
                spec, after, delay = "-", None, 0.0  # enough kills: let the job run to its end
            res = run_once(server, path, position, spec, after, delay)
            if res["op_s"]:
                op_s = 0.7 * op_s + 0.3 * res["op_s"]
            if res["error"]:
                inconsistencies.append(f"run from op {position} ({spec}): the writer raised {res['error']}")
                break
            acked = position + len(res["acks"])
            if res["acks"] != list(range(position, acked)):
                inconsistencies.append(f"run from op {position}: acks out of order {res['acks']}")
                break
            if res["killed"]:
                kills += 1
                if spec == "-":
                    random_kills += 1
                else:
                    pinned_kills += 1
                    landed_pins.add(f"{spec}@{kind}")
            elif spec != "-" and res["pin_missed"]:
                missed_pins.append(f"{spec}@{kind}")
            allowed = {acked: expected[acked]}
            if res["killed"] and acked < len(job):
                allowed[acked + 1] = expected[acked + 1]  # the operation in flight: committed or not, not half
            t0 = time.perf_counter()
            matched, problems = check_store(path, allowed)
            check_s += time.perf_counter() - t0
            log.append(
                f"run from op {position} [{kind}] pin={spec} killed={res['killed']} acked={len(res['acks'])} "
                f"-> state {matched} ({len(problems)} problems)"
            )
            if problems:
                inconsistencies.extend(f"after {log[-1]}: {p}" for p in problems)
            if matched is None:
                break  # the state is unknown: the job cannot go on from it
            position = matched
    finally:
        server.close()

    # Re-running the whole job from the start, in a fresh process, completes and ends at the final state.
    rerun_ok = False
    if not inconsistencies:
        done = subprocess.run(
            [sys.executable, str(WRITER), "run", str(path), "0", "-1"],
            capture_output=True, text=True, env=_env(), timeout=120,
        )  # fmt: skip
        rerun_ok = done.returncode == 0 and done.stdout.strip().endswith("DONE")
        if not rerun_ok:
            inconsistencies.append(f"re-running the job failed (exit {done.returncode}): {done.stderr[-1500:]}")
        matched, problems = check_store(path, {len(job): expected[-1]})
        inconsistencies.extend(f"after the re-run: {p}" for p in problems)

    summary = (
        f"crash injection (seed {seed}): {kills} kills ({random_kills} random, {pinned_kills} pinned), "
        f"{len(inconsistencies)} inconsistencies, pins not reached: {missed_pins or 'none'}, "
        f"job re-run completed: {rerun_ok}; {time.perf_counter() - started:.1f}s ({check_s:.1f}s checking)"
    )
    print(summary)
    print("\n".join(log))
    assert not inconsistencies, summary + "\n" + "\n".join(inconsistencies[:40]) + "\n--- log\n" + "\n".join(log)
    assert random_kills >= 20, summary + "\n" + "\n".join(log)
    must_land = {f"{pin}@{kind}" for pin in MUST_LAND for kind in ("write", "delete")}
    assert must_land <= landed_pins, f"pinned kills that never landed: {sorted(must_land - landed_pins)}; {summary}"
