#!/usr/bin/env bash
# THE project test command (the README's): bash testing/run-tests.sh [extra cargo test args...]
#
# 1. testing/scripts/setup.sh installs (or finds) SeaweedFS, kafka-python, the Java kafka-clients
#    jar, kcat, and writes .floe-test/env.sh;
# 2. testing/scripts/seaweedfs.sh starts one S3 server on 127.0.0.1 (stopped on exit, always);
# 3. `cargo test --workspace --locked` runs with the FLOE_* paths and the AWS_* / FLOE_TEST_BUCKET
#    variables exported. The exit status is cargo's.
#
# Arguments are passed to cargo test before the `--`, e.g. `bash testing/run-tests.sh -p floe-testing`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export FLOE_TEST_HOME="${FLOE_TEST_HOME:-$REPO_ROOT/.floe-test}"
# Upper bound for the whole cargo test run (CI allows 90 min for everything).
CARGO_TEST_TIMEOUT="${FLOE_CARGO_TEST_TIMEOUT:-60m}"

section() { printf '\n==> %s\n' "$*"; }

section "setup (testing/scripts/setup.sh)"
t0=$SECONDS
timeout 30m bash testing/scripts/setup.sh
echo "setup took $((SECONDS - t0))s"
# shellcheck disable=SC1091
source "$FLOE_TEST_HOME/env.sh"

stop_seaweedfs() {
  local rc=$?
  section "stopping SeaweedFS"
  timeout 60 bash testing/scripts/seaweedfs.sh stop || echo "WARNING: seaweedfs stop failed" >&2
  exit "$rc"
}
trap stop_seaweedfs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "starting SeaweedFS (testing/scripts/seaweedfs.sh)"
timeout 120 bash testing/scripts/seaweedfs.sh start --fresh >/dev/null
# shellcheck disable=SC1091
source "$FLOE_TEST_HOME/s3.env"
echo "S3: $AWS_ENDPOINT_URL bucket $FLOE_TEST_BUCKET (log: $FLOE_TEST_HOME/seaweedfs/weed.log)"
export FLOE_TEST_HOME FLOE_WEED FLOE_PYTHON FLOE_KAFKA_CLIENTS_JAR FLOE_SLF4J_JAR FLOE_JAVA_CLASSES FLOE_KCAT
export AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION FLOE_TEST_BUCKET

section "cargo build --locked --bin floe (the end-to-end tests run this binary)"
t0=$SECONDS
timeout 30m cargo build --locked --bin floe
echo "build took $((SECONDS - t0))s"

section "cargo test --workspace --locked $* -- --test-threads=2"
t0=$SECONDS
set +e
if [[ -t 0 ]]; then
  # Interactive: no `timeout` wrapper, which would put cargo out of reach of Ctrl-C.
  cargo test --workspace --locked "$@" -- --test-threads=2
else
  timeout --kill-after=30s "$CARGO_TEST_TIMEOUT" cargo test --workspace --locked "$@" -- --test-threads=2
fi
status=$?
set -e
echo "cargo test exited with status $status after $((SECONDS - t0))s"
[[ $status -eq 124 ]] && echo "ERROR: cargo test hit the $CARGO_TEST_TIMEOUT bound" >&2
exit "$status"
