#!/usr/bin/env bash
# Start the local services the tests talk to when they are installed but down: Redis on
# 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432. Used by scripts/test.sh and .ci/run.
# Never fails: prints what is running, what it started, and what is missing and what that costs
# (the tests that need a missing service skip with the same reason; none fails for it).
set -uo pipefail

REDIS_PORT=${KEEL_REDIS_PORT:-6379}  # another port only to try this script out
PG_PORT=5432

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
pg_up() { pg_isready -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; }

wait_for() {  # wait_for CHECK SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do "$1" && return 0; sleep 0.1; done
  return 1
}

start_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "services: Redis MISSING (redis-server not installed): tests marked 'redis' are skipped;" \
      "install it with: apt-get install redis-server" >&2
    return
  fi
  if command -v redis-cli >/dev/null 2>&1 && redis_up; then
    echo "services: Redis up on 127.0.0.1:$REDIS_PORT"
    return
  fi
  echo "services: starting Redis on 127.0.0.1:$REDIS_PORT"
  local dir=/var/lib/redis log=/var/log/redis/keel-tests.log
  [ -w "$dir" ] || dir=$(mktemp -d)
  [ -w "$(dirname "$log")" ] || log="$dir/redis.log"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$dir" --logfile "$log" >/dev/null 2>&1
  if command -v redis-cli >/dev/null 2>&1 && wait_for redis_up 10; then
    echo "services: Redis started"
  else
    echo "services: Redis could NOT be started (see $log): tests marked 'redis' are skipped" >&2
  fi
}

start_postgres() {
  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "services: PostgreSQL MISSING (not installed): the Prefect schedule test uses SQLite instead;" \
      "install it with: apt-get install postgresql" >&2
    return
  fi
  if pg_up; then
    echo "services: PostgreSQL up on 127.0.0.1:$PG_PORT"
    return
  fi
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "services: PostgreSQL has no cluster in /etc/postgresql: the Prefect schedule test uses SQLite" >&2
    return
  fi
  echo "services: starting PostgreSQL $version on 127.0.0.1:$PG_PORT"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1
  if wait_for pg_up 30; then
    echo "services: PostgreSQL started"
  else
    echo "services: PostgreSQL could NOT be started: the Prefect schedule test uses SQLite instead" >&2
  fi
}

start_redis
start_postgres
exit 0
