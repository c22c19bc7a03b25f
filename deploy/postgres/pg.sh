#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, from Debian's packages.
#   deploy/postgres/pg.sh start|stop|status|url|crash-restart [--port P] [--dir D]
# crash-restart: an immediate-mode restart (no checkpoint, like a crash), for fault-injection tests.
# start: installs postgresql with apt-get when missing, initialises a cluster in D (trust auth, loopback
#        only) owned by the `postgres` user (Postgres refuses to run as root), starts it and prints its URL.
set -euo pipefail

cmd="${1:-}"; shift || true
port="${PG_PORT:-25432}"  # below the ephemeral port range (32768+)
dir="${PG_DIR:-/var/tmp/smits-pg}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

log() { echo "pg.sh: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  if [ -n "$(bindir)" ] && [ -x "$(bindir)/initdb" ]; then return; fi
  if [ "$(id -u)" != 0 ]; then log "PostgreSQL is not installed; run: sudo apt-get install postgresql"; exit 1; fi
  log "installing PostgreSQL from Debian's packages"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

url() { echo "postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"; }

running() { [ -n "$(bindir)" ] && as_owner "$(bindir)/pg_ctl" -D "$dir" status >/dev/null 2>&1; }

start() {
  install
  local bin; bin="$(bindir)"
  if running; then url; return; fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    chmod 700 "$dir"
    as_owner "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  # Test cluster: durability across an OS crash is not needed (fsync off); a process crash is still safe.
  as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300" >/dev/null
  log "postgres up on 127.0.0.1:$port, data in $dir"
  url
}

stop() {
  if running; then as_owner "$(bindir)/pg_ctl" -D "$dir" -m fast -w stop >/dev/null; log "stopped"; else log "not running"; fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  crash-restart) as_owner "$(bindir)/pg_ctl" -D "$dir" -m immediate -w restart -o \
      "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300" \
      >/dev/null; log "restarted (immediate)" ;;
  status) if running; then echo "running $(url)"; else echo "stopped"; exit 3; fi ;;
  url) url ;;
  *) echo "usage: $0 start|stop|status|url|crash-restart [--port P] [--dir D]" >&2; exit 2 ;;
esac
