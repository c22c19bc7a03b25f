#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) from Maven Central jars, no Docker.
#   deploy/kafka/kafka.sh start|stop|status [--port P] [--dir D] [--advertise-port A]
# The broker uses P and P+1 (controller); keep both below 32768, outside Linux's ephemeral port range.
# start: resolves the jars once (mvn, cached in ./lib and ~/.m2), formats storage on first use,
#        starts the broker on 127.0.0.1:P, waits until it answers and prints the bootstrap address.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"; shift || true
port="${KAFKA_PORT:-9092}"
dir="${KAFKA_DIR:-$here/run}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --advertise-port) advertise_port="$2"; shift 2 ;;  # clients are told to connect here (e.g. a test proxy)
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
controller_port=$((port + 1))
advertise_port="${advertise_port:-$port}"
pidfile="$dir/kafka.pid"
lib="$here/lib"

log() { echo "kafka.sh: $*" >&2; }

resolve_jars() {
  if [ -f "$lib/.complete" ]; then return; fi
  log "resolving Apache Kafka jars from Maven Central (first run only)"
  rm -rf "$lib"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  touch "$lib/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

java_cmd() {
  exec java -Xms128m -Xmx${KAFKA_HEAP:-512m} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$lib/*" "$@"
}

start() {
  if running; then log "already running (pid $(cat "$pidfile"))"; echo "127.0.0.1:$advertise_port"; return; fi
  for p in "$port" "$controller_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      log "port $p on 127.0.0.1 is already in use (another broker from another --dir?); choose --port"; exit 1
    fi
  done
  resolve_jars
  mkdir -p "$dir/logs" "$dir/data"
  sed -e "s|@ADVERTISED_PORT@|$advertise_port|g" -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" -e "s|@DATA_DIR@|$dir/data|g" \
    "$here/server.properties" > "$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    cluster_id="$( (java_cmd kafka.tools.StorageTool random-uuid) | tail -n 1)"
    (java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" --ignore-formatted) >&2
  fi
  : > "$dir/logs/server.log"
  (java_cmd kafka.Kafka "$dir/server.properties") < /dev/null > "$dir/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if ! running; then log "broker exited during start; last lines of $dir/logs:"; tail -n 30 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 || true; exit 1; fi
    if answers && grep -q "Kafka Server started" "$dir/logs/server.log" 2>/dev/null; then
      log "broker up (pid $(cat "$pidfile")), data in $dir"
      echo "127.0.0.1:$advertise_port"; return
    fi
    sleep 0.5
  done
  log "broker did not answer within 60 s"; exit 1
}

stop() {
  if ! running; then log "not running"; rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; log "stopped"; return; }; sleep 0.5; done
  log "broker ignored SIGTERM for 30 s; killing"; kill -KILL "$pid" || true; rm -f "$pidfile"
}

status() {
  if running && answers; then echo "running 127.0.0.1:$port (pid $(cat "$pidfile"))"; else echo "stopped"; exit 3; fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [--port P] [--dir D]" >&2; exit 2 ;;
esac
