#!/usr/bin/env bash
# Set up, index the sample documents into the embedded store, and run a hybrid search —
# the main job on the default offline models, with no server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
STORE="${1:-.lens-rag/demo}"
.venv/bin/lens-rag index examples/data --store "$STORE"
.venv/bin/lens-rag search "what disease comes from a lack of vitamin C?" --store "$STORE" --method hybrid --top-k 3
