"""Two writer processes and one reader process on one embedded-store directory.

The writers (``_embedded_concurrency_worker.py``) start together on a directory that does not exist
yet and write 150 documents each in small batches (some batches twice: replacements). A reader
process keeps one store open all along and checks, in a loop, that the count never goes down and
that live documents are found by their own vectors and BM25 token. At the end every document of
both writers must be present, with its vectors, and the reader must have seen the count grow to
the total through its long-lived handle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import _embedded_concurrency_worker as worker
import pytest

from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

WORKER = Path(worker.__file__)
N_PER_WRITER = 150
BATCH = 5
TIMEOUT_S = 90


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "READY", f"worker did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, list[str], str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child
        out, err = proc.communicate()
        return -9, out.splitlines(), "timed out\n" + err
    return proc.returncode, out.splitlines(), err


def test_two_writers_and_a_reader_share_one_directory(tmp_path: Path) -> None:
    path = tmp_path / "store"  # does not exist yet: the writers race to create it
    go, stop, ids_file = tmp_path / "go", tmp_path / "stop", tmp_path / "ids"
    ids = [f"{p}{i:03d}" for p in "ab" for i in range(N_PER_WRITER)]
    ids_file.write_text("\n".join(ids))
    procs = {
        "writer a": _start("writer", str(path), "a", str(N_PER_WRITER), str(BATCH), str(go)),
        "writer b": _start("writer", str(path), "b", str(N_PER_WRITER), str(BATCH), str(go)),
        "reader": _start("reader", str(path), str(go), str(stop), str(ids_file)),
    }
    try:
        for proc in procs.values():
            _wait_ready(proc)
        go.touch()
        started = time.monotonic()
        results = {name: _finish(procs[name], TIMEOUT_S) for name in ("writer a", "writer b")}
        writers_s = time.monotonic() - started
        stop.touch()
        results["reader"] = _finish(procs["reader"], TIMEOUT_S)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for name in ("writer a", "writer b"):
        code, out, err = results[name]
        assert code == 0 and out[-1:] == ["DONE"], f"{name} failed (exit {code}):\n{err[-3000:]}"
    code, out, err = results["reader"]
    errors = [line for line in out if line.startswith("ERROR")]
    counts = [int(line.split()[1]) for line in out if line.startswith("COUNT ")]
    loops = next((line for line in out if line.startswith("LOOPS")), "LOOPS ?")
    print(
        f"writers took {writers_s:.1f}s; reader: {loops}, saw {len(counts)} distinct counts {counts[:5]}..{counts[-3:]}"
    )
    assert not errors and code == 0, f"reader failed (exit {code}): {errors[:10]}\n{err[-2000:]}"
    assert counts == sorted(counts), f"the reader saw the count go down: {counts}"
    assert len(counts) >= 3, f"the reader did not see the count grow: {counts}"
    assert counts[-1] == len(ids), f"the reader's open store ended at {counts[-1]} documents, not {len(ids)}"

    store = EmbeddedStore(path, progress=False)
    try:
        assert store.count_documents() == len(ids)
        docs = {d.id: d for d in store.get_documents(ids)}
        assert sorted(docs) == sorted(ids), f"missing: {sorted(set(ids) - set(docs))[:20]}"
        problems = [p for doc_id in ids for p in worker.check_document(store, doc_id)]
        problems += [f"{i}: content {d.content!r}" for i, d in docs.items() if d.content != worker.content(i)]
        assert not problems, f"{len(problems)} problems, e.g. {problems[:10]}"
    finally:
        store.close()
