#!/usr/bin/env bash
# Starts or stops the throwaway PostgreSQL cluster and Redis server used by the demo and the tests.
# Both listen on 127.0.0.1 only and keep their data under .data/ in the project.
# When DATABASE_URL or REDIS_URL is already set, that server is used and nothing is started for it.
# Usage: scripts/services.sh start|stop|env
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${DIALER_DATA_DIR:-$ROOT/.data}"
PG_PORT="${DIALER_PG_PORT:-54329}"
REDIS_PORT="${DIALER_REDIS_PORT:-63799}"
PG_USER=dialer
PG_DIR="$DATA/pg"
REDIS_DIR="$DATA/redis"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# PostgreSQL refuses to run as root: as root we run it as an unprivileged system user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

start_pg() {
  [ -n "${DATABASE_URL:-}" ] && return 0
  local bin; bin="$(pg_bin)"
  mkdir -p "$DATA"
  if [ "$(id -u)" -eq 0 ]; then
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    mkdir -p "$PG_DIR"; chown "$PG_USER" "$PG_DIR"; chmod 700 "$PG_DIR"
  fi
  if [ ! -f "$PG_DIR/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_pg "$bin/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories='$PG_DIR' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
  fi
  for _ in $(seq 1 60); do
    if "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q; then break; fi
    sleep 0.5
  done
  "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q || { echo "services: PostgreSQL did not become ready" >&2; cat "$PG_DIR/server.log" >&2; return 1; }
  if ! "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "select 1 from pg_database where datname='dialer'" | grep -q 1; then
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "create database dialer" >/dev/null
  fi
}

stop_pg() {
  [ -n "${DATABASE_URL:-}" ] && return 0
  [ -f "$PG_DIR/PG_VERSION" ] || return 0
  as_pg "$(pg_bin)/pg_ctl" -D "$PG_DIR" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

start_redis() {
  [ -n "${REDIS_URL:-}" ] && return 0
  mkdir -p "$REDIS_DIR"
  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --daemonize yes \
      --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --save "" --appendonly no >/dev/null
  fi
  for _ in $(seq 1 60); do
    if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.25
  done
  echo "services: Redis did not become ready" >&2; cat "$REDIS_DIR/redis.log" >&2; return 1
}

stop_redis() {
  [ -n "${REDIS_URL:-}" ] && return 0
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

print_env() {
  echo "export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/dialer}"
  echo "export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
}

case "${1:-}" in
  start) start_pg; start_redis; print_env ;;
  stop) stop_redis; stop_pg ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
