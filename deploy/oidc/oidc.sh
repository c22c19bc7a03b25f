#!/usr/bin/env bash
# A real OpenID Connect provider for tests: navikt's mock-oauth2-server from Maven Central jars, no Docker.
#   deploy/oidc/oidc.sh start|stop|status [--port P] [--dir D]
# start: resolves the jars once (mvn, cached in ./lib and ~/.m2), starts the provider on 127.0.0.1:P with
#        config.json (no login page: /authorize answers with a code at once; a POST of `username` and `claims`
#        (JSON) to the same URL signs in as that user), waits until the issuer's discovery document answers
#        and prints the issuer URL. Every first path segment is an issuer with its own keys: `smits` is the
#        one config.json describes; any other (e.g. `other`) issues tokens with default claims.
# Needs Java 17 or newer: OIDC_JAVA_HOME, then JAVA_HOME, then `java` on PATH, then /usr/lib/jvm/*.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"; shift || true
port="${OIDC_PORT:-28080}"
dir="${OIDC_DIR:-$here/run}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
issuer_id="smits"
issuer="http://127.0.0.1:$port/$issuer_id"
pidfile="$dir/oidc.pid"
lib="$here/lib"
min_java=17

log() { echo "oidc.sh: $*" >&2; }

resolve_jars() {
  if [ -f "$lib/.complete" ]; then return; fi
  log "resolving mock-oauth2-server jars from Maven Central (first run only)"
  rm -rf "$lib"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  touch "$lib/.complete"
}

java_major() {  # prints the feature version of the given java binary (17, 21, 25...), or nothing
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}

find_java() {
  local candidates=() candidate major
  [ -n "${OIDC_JAVA_HOME:-}" ] && candidates+=("$OIDC_JAVA_HOME/bin/java")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
  for candidate in $(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV); do candidates+=("${candidate}bin/java"); done
  for candidate in "${candidates[@]}"; do
    [ -x "$candidate" ] || continue
    major="$(java_major "$candidate")"
    if [ -n "$major" ] && [ "$major" -ge "$min_java" ]; then echo "$candidate"; return; fi
  done
  log "mock-oauth2-server needs Java $min_java or newer; none found (tried: ${candidates[*]:-nothing})."
  log "install a JDK $min_java+ or point OIDC_JAVA_HOME at one"
  exit 1
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

answers() {  # the issuer's discovery document names the issuer we print
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET /%s/.well-known/openid-configuration HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n" "$2" "$1" >&3
    cat <&3' _ "$port" "$issuer_id" 2>/dev/null | grep -q "\"issuer\" *: *\"$issuer\""
}

start() {
  if running; then log "already running (pid $(cat "$pidfile"))"; echo "$issuer"; return; fi
  if port_open; then log "port $port on 127.0.0.1 is already in use (another provider from another --dir?); choose --port"; exit 1; fi
  local java; java="$(find_java)"
  resolve_jars
  mkdir -p "$dir"
  (cd "$dir" && SERVER_HOSTNAME=127.0.0.1 SERVER_PORT="$port" JSON_CONFIG_PATH="$here/config.json" LOG_LEVEL="${OIDC_LOG_LEVEL:-INFO}" \
    exec "$java" -Xms32m -Xmx${OIDC_HEAP:-256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -cp "$lib/*" no.nav.security.mock.oauth2.StandaloneMockOAuth2ServerKt) < /dev/null > "$dir/oidc.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if ! running; then log "provider exited during start; last lines of $dir/oidc.log:"; tail -n 30 "$dir/oidc.log" >&2 || true; rm -f "$pidfile"; exit 1; fi
    if answers; then log "provider up (pid $(cat "$pidfile"), $("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.home = //p')), log in $dir/oidc.log"; echo "$issuer"; return; fi
    sleep 0.5
  done
  log "provider did not answer within 60 s; last lines of $dir/oidc.log:"; tail -n 30 "$dir/oidc.log" >&2 || true; exit 1
}

stop() {
  if ! running; then log "not running"; rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; log "stopped"; return; }; sleep 0.25; done
  log "provider ignored SIGTERM for 10 s; killing"; kill -KILL "$pid" || true; rm -f "$pidfile"
}

status() {
  if running && answers; then echo "running $issuer (pid $(cat "$pidfile"))"; else echo "stopped"; exit 3; fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [--port P] [--dir D]" >&2; exit 2 ;;
esac
