#!/usr/bin/env bash
# `make test`: the whole suite on real PostgreSQL, Kafka, an OpenID Connect provider and headless Chromium (on
# pytest-xdist workers), and next to it the unit tier under every other supported Python.
#   KEEP_INFRA=1 keeps the Postgres cluster, the broker and the OIDC provider this run started (for a faster next run);
#   whatever was already running before the run is left running either way.
#   PYTEST_ARGS: extra pytest arguments (e.g. "-x -k notifier").
#   TEST_WORKERS: pytest-xdist workers (default 4: most of the time goes on waiting for Kafka and subprocesses).
set -euo pipefail
cd "$(dirname "$0")/.."

kafka_port="${TEST_KAFKA_PORT:-29092}"
kafka_dir="${TEST_KAFKA_DIR:-.run/kafka-test}"
oidc_port="${TEST_OIDC_PORT:-28080}"
oidc_dir="${TEST_OIDC_DIR:-.run/oidc-test}"
# Every test makes its own topics: a whole run holds a few thousand partitions (the faults' broker inherits it).
export KAFKA_HEAP="${KAFKA_HEAP:-1g}"
started=()

stop_what_we_started() {
  local status=$?
  if [ -n "${others_pid:-}" ]; then  # leaving early: stop the unit tier running in the background
    pkill -TERM -P "$others_pid" 2>/dev/null || true
    kill "$others_pid" 2>/dev/null || true
  fi
  rm -f "${others_log:-}"
  if [ "${KEEP_INFRA:-0}" = 1 ]; then
    [ ${#started[@]} -gt 0 ] && echo "KEEP_INFRA=1: leaving ${started[*]} running (make stop stops them)"
  else
    for what in "${started[@]}"; do
      case "$what" in
        postgres) deploy/postgres/pg.sh stop || true ;;
        kafka) deploy/kafka/kafka.sh stop --port "$kafka_port" --dir "$kafka_dir" || true ;;
        oidc) deploy/oidc/oidc.sh stop --port "$oidc_port" --dir "$oidc_dir" || true ;;
      esac
    done
  fi
  exit "$status"
}
trap stop_what_we_started EXIT

deploy/postgres/pg.sh status >/dev/null 2>&1 || started+=(postgres)
pg_url="$(deploy/postgres/pg.sh start)"
# Each test drops its database; an interrupted run cannot, so what older runs left on a kept cluster goes now.
.venv/bin/python -m tests.support.infra sweep "$pg_url"
if ! deploy/kafka/kafka.sh status --port "$kafka_port" --dir "$kafka_dir" >/dev/null 2>&1; then
  started+=(kafka)
  # A throwaway test broker: what earlier runs left (thousands of per-test topics) would only slow its start.
  rm -rf "$kafka_dir/data"
fi
kafka="$(deploy/kafka/kafka.sh start --port "$kafka_port" --dir "$kafka_dir")"
deploy/oidc/oidc.sh status --port "$oidc_port" --dir "$oidc_dir" >/dev/null 2>&1 || started+=(oidc)
oidc="$(deploy/oidc/oidc.sh start --port "$oidc_port" --dir "$oidc_dir")"
# The console's browser tests: Debian's chromium and chromium-driver, installed when missing (no server to start).
chromium="$(deploy/chromium.sh ensure)"
echo "postgres: $pg_url  kafka: $kafka  oidc: $oidc"
echo "browser: $chromium"

# The unit tier (no infrastructure) under each other supported interpreter on this machine, one after another in
# the background next to the main run (it mostly waits on Kafka and subprocesses); shown after it, and any failure
# fails the run.
other_versions() {
  local main_version version interpreter venv
  main_version="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  for version in 3.11 3.12 3.13; do
    [ "$version" = "$main_version" ] && continue
    interpreter="$(deploy/find-python.sh "$version" || true)"
    if [ -z "$interpreter" ]; then echo "python$version: not on this machine, unit tier not run under it"; continue; fi
    venv=".venv-$version"
    if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
      echo "python$version: installing into $venv"
      "$interpreter" -m venv "$venv"
      # pip writes smits.egg-info/ and build/ into the checkout; test_deploy's wheel build takes the same lock.
      mkdir -p .run
      flock .run/wheel-build.lock "$venv/bin/pip" install -q -e '.[dev]'
      touch "$venv/.installed"
    fi
    echo "python$version: unit tier"
    "$venv/bin/pytest" -q -p no:cacheprovider tests/unit || return 1
  done
}
others_log="$(mktemp)"
other_versions >"$others_log" 2>&1 &
others_pid=$!

# The main run on TEST_WORKERS pytest-xdist workers, a test file per worker at a time (pyproject.toml).
main_status=0
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
SMITS_TEST_PG_URL="$pg_url" SMITS_TEST_KAFKA="$kafka" SMITS_TEST_OIDC="$oidc" .venv/bin/pytest -n "${TEST_WORKERS:-4}" ${PYTEST_ARGS:-} \
  || main_status=$?

others_status=0
wait "$others_pid" || others_status=$?
others_pid=""
cat "$others_log"
if [ "$others_status" != 0 ]; then
  echo "the unit tier under another Python failed (above)"
  [ "$main_status" != 0 ] || main_status=1
fi
exit "$main_status"
