#!/usr/bin/env bash
# `make run`: local Kafka, SQLite migrated, `smits serve all` on 127.0.0.1:8000, the example triggers sent.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run

export SMITS_AUTH_DISABLED="${SMITS_AUTH_DISABLED:-false}"  # people sign in (local accounts, created below)
export SMITS_WEBHOOK_ALLOW_CIDRS="${SMITS_WEBHOOK_ALLOW_CIDRS:-127.0.0.0/8}"  # the demo subscriber is local
export SMITS_KAFKA_BOOTSTRAP
SMITS_KAFKA_BOOTSTRAP="$(deploy/kafka/kafka.sh start --port "${KAFKA_PORT:-9092}" --dir .run/kafka)"
echo "kafka: $SMITS_KAFKA_BOOTSTRAP"

.venv/bin/smits migrate
.venv/bin/smits topics create
examples/people.sh > .run/people.txt
# The demo's own service account: sends the example triggers and subscribes its local webhook receiver.
SMITS_DEMO_KEY="$(.venv/bin/smits keys create --name "make run demo" --scope triggers:write --scope subscriptions:admin \
  --scope reviews:read 2>/dev/null)"
export SMITS_DEMO_KEY
.venv/bin/smits serve all --host 127.0.0.1 --port 8000 > .run/smits.log 2>&1 &
smits_pid=$!
stop() {
  trap - EXIT INT TERM
  echo; echo "stopping smits and the local broker ..."
  kill -TERM "$smits_pid" 2>/dev/null && wait "$smits_pid" || true
  deploy/kafka/kafka.sh stop --dir .run/kafka
}
trap stop EXIT INT TERM
echo "smits serve all (pid $smits_pid) on http://127.0.0.1:8000, logs in .run/smits.log"
[ "$SMITS_AUTH_DISABLED" = true ] && echo "WARNING: API authentication is DISABLED for this local demo (SMITS_AUTH_DISABLED=true)"
cat .run/people.txt
echo "console: http://127.0.0.1:8000/  (sign in as one of the people above)   API docs: http://127.0.0.1:8000/docs"
.venv/bin/python examples/demo.py
