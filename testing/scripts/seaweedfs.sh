#!/usr/bin/env bash
# Starts or stops the one SeaweedFS (`weed mini`) S3 server that Floe's tests use.
#
#   bash testing/scripts/seaweedfs.sh start [--fresh]   # --fresh wipes its data first
#   bash testing/scripts/seaweedfs.sh stop
#   bash testing/scripts/seaweedfs.sh status
#
# Needs testing/scripts/setup.sh to have run (it reads $FLOE_TEST_HOME/env.sh for $FLOE_WEED).
# Binds 127.0.0.1 only. S3 on $FLOE_S3_PORT (default 8333); weed mini also takes fixed ports
# (master 9333/19333, volume 9340/19340, filer 8888/18888, S3 gRPC 18333, ...), so only one
# such server can run on a machine at a time: give each test its own prefix in the one bucket.
#
# FLOE_WEED_DATA moves its data directory, e.g. to /dev/shm/floe-weed for benchmarks, so the S3
# server's writeback does not share a disk with the WAL under test (see docs/benchmarks.md).
#
# `start` prints, and writes to $FLOE_TEST_HOME/s3.env, the exports a caller needs:
#   AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION FLOE_TEST_BUCKET
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FLOE_TEST_HOME="${FLOE_TEST_HOME:-$REPO_ROOT/.floe-test}"
FLOE_S3_PORT="${FLOE_S3_PORT:-8333}"
BUCKET="floe-test"
ACCESS_KEY="floetestaccesskey"
SECRET_KEY="floetestsecretkey0123456789abcdef"
START_TIMEOUT_S=60
STOP_TIMEOUT_S=20

SW_HOME="$FLOE_TEST_HOME/seaweedfs"
DATA_DIR="${FLOE_WEED_DATA:-$SW_HOME/data}"
PID_FILE="$SW_HOME/weed.pid"
LOG_FILE="$SW_HOME/weed.log"
IDENTITIES="$SW_HOME/identities.json"
S3_ENV="$FLOE_TEST_HOME/s3.env"
ENDPOINT="http://127.0.0.1:$FLOE_S3_PORT"
# Ports weed mini binds besides the S3 one (HTTP and gRPC = HTTP + 10000; the admin server
# 23646/33646 runs even with -admin.ui=false).
FIXED_PORTS=(9333 19333 9340 19340 8888 18888 18333 23646 33646)

log() { printf '[seaweedfs] %s\n' "$*" >&2; }
die() { printf '[seaweedfs] ERROR: %s\n' "$*" >&2; exit 1; }

load_env() {
  [[ -f "$FLOE_TEST_HOME/env.sh" ]] || die "$FLOE_TEST_HOME/env.sh missing: run testing/scripts/setup.sh first"
  # shellcheck disable=SC1091
  source "$FLOE_TEST_HOME/env.sh"
  [[ -x "${FLOE_WEED:-}" ]] || die "FLOE_WEED (${FLOE_WEED:-unset}) is not executable"
  [[ -x "${FLOE_PYTHON:-}" ]] || die "FLOE_PYTHON (${FLOE_PYTHON:-unset}) is not executable"
}

# pid of our weed if it is running (pid file + the process is a weed with our data dir), else empty.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-dir=$DATA_DIR"; then
    echo "$pid"
  fi
}

# Listening TCP sockets on the given ports, one "port pid cmd" per line (via ss, else /proc).
listeners() {
  local p out=""
  for p in "$@"; do
    if command -v ss >/dev/null 2>&1; then
      out+="$(ss -Hltnp "sport = :$p" 2>/dev/null | sed "s/^/port $p: /")"$'\n'
    elif (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      out+="port $p: something answers"$'\n'
    fi
  done
  printf '%s' "$out" | sed '/^$/d'
}

write_identities() {
  mkdir -p "$SW_HOME"
  cat >"$IDENTITIES" <<EOF
{
  "identities": [
    {
      "name": "floe-test",
      "credentials": [{ "accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
}

print_exports() {
  local tmp="$S3_ENV.tmp"
  {
    echo "export AWS_ENDPOINT_URL=$ENDPOINT"
    echo "export AWS_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "export AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_DEFAULT_REGION=us-east-1"
    echo "export AWS_ALLOW_HTTP=true"
    echo "export FLOE_TEST_BUCKET=$BUCKET"
  } >"$tmp"
  mv -f "$tmp" "$S3_ENV"
  cat "$S3_ENV"
}

# A signed S3 round trip with only Python's standard library: HEAD bucket, PUT, GET, DELETE a probe.
s3_probe() {
  AWS_ENDPOINT_URL="$ENDPOINT" AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
    BUCKET="$BUCKET" timeout 15 "$FLOE_PYTHON" - <<'EOF'
import datetime, hashlib, hmac, os, sys, urllib.error, urllib.parse, urllib.request

endpoint = os.environ["AWS_ENDPOINT_URL"]; bucket = os.environ["BUCKET"]
ak = os.environ["AWS_ACCESS_KEY_ID"]; sk = os.environ["AWS_SECRET_ACCESS_KEY"]; region = "us-east-1"
host = urllib.parse.urlparse(endpoint).netloc

def request(method, path, body=b""):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, urllib.parse.quote(path), "",
                           "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={sig}"
    del headers["host"]
    req = urllib.request.Request(endpoint + path, data=body if method == "PUT" else None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

probe = f"/{bucket}/_floe-s3-probe/{os.getpid()}"
for method, path, body, want in [("HEAD", f"/{bucket}", b"", 200), ("PUT", probe, b"floe-probe", 200),
                                 ("GET", probe, b"", 200), ("DELETE", probe, b"", 204)]:
    status, data = request(method, path, body)
    if status != want:
        print(f"{method} {path} -> {status} (want {want}) {data[:300]!r}", file=sys.stderr); sys.exit(1)
    if method == "GET" and data != b"floe-probe":
        print(f"GET {path} returned {data[:100]!r}", file=sys.stderr); sys.exit(1)
EOF
}

cmd_start() {
  local fresh=0
  [[ "${1:-}" == "--fresh" ]] && fresh=1
  load_env
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    if s3_probe 2>/dev/null; then
      log "already running (pid $pid) on $ENDPOINT"
      print_exports
      return 0
    fi
    log "pid $pid is running but S3 does not answer: restarting it"
    cmd_stop
  fi
  local busy
  busy="$(listeners "$FLOE_S3_PORT" "${FIXED_PORTS[@]}")"
  [[ -z "$busy" ]] || die "ports SeaweedFS needs are taken (another weed? stop it first):"$'\n'"$busy"

  if ((fresh)); then
    log "wiping $DATA_DIR"
    rm -rf "$DATA_DIR"
  fi
  mkdir -p "$DATA_DIR"
  write_identities
  : >"$LOG_FILE"
  log "starting weed mini: S3 on $ENDPOINT, data in $DATA_DIR, log $LOG_FILE"
  (
    cd "$SW_HOME"
    exec "$FLOE_WEED" -logtostderr mini \
      -dir="$DATA_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$FLOE_S3_PORT" -s3.config="$IDENTITIES" -bucket="$BUCKET" \
      -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
      -master.telemetry=false \
      </dev/null >>"$LOG_FILE" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local deadline=$((SECONDS + START_TIMEOUT_S)) answered=0
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "weed exited during startup (log above, full log: $LOG_FILE)"
    fi
    if ((!answered)) && ! command -v curl >/dev/null 2>&1; then
      answered=1
    elif ((!answered)) && curl -s -o /dev/null --max-time 2 "$ENDPOINT/" 2>/dev/null; then
      answered=1
      log "S3 port answers HTTP after $((START_TIMEOUT_S - (deadline - SECONDS)))s; checking bucket $BUCKET"
    fi
    if ((answered)) && s3_probe 2>"$SW_HOME/probe.err"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$LOG_FILE" >&2 || true
      cat "$SW_HOME/probe.err" >&2 2>/dev/null || true
      cmd_stop || true
      die "SeaweedFS did not serve a signed S3 round trip within ${START_TIMEOUT_S}s"
    fi
    sleep 0.5
  done
  log "ready (pid $pid): HEAD bucket, PUT, GET, DELETE all work"
  print_exports
}

cmd_stop() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    log "not running"
  else
    log "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not stop in ${STOP_TIMEOUT_S}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$PID_FILE"
  # Nothing of ours may keep a SeaweedFS port.
  local deadline=$((SECONDS + 5)) busy
  while :; do
    busy="$(listeners "$FLOE_S3_PORT" "${FIXED_PORTS[@]}")"
    [[ -z "$busy" ]] && break
    if ((SECONDS >= deadline)); then
      log "WARNING: SeaweedFS ports still in use after stop:"$'\n'"$busy"
      return 1
    fi
    sleep 0.2
  done
  log "stopped; no SeaweedFS port is in use"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then echo "running (pid $pid) on $ENDPOINT"; else echo "not running"; return 1; fi
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start [--fresh] | stop | status" >&2; exit 2 ;;
esac
