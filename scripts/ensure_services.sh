#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 before the tests run; start them where
# this machine can, otherwise stop with a message that says how.
set -u
PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null || python3 - <<'PY' 2>/dev/null
import socket; socket.create_connection(("127.0.0.1", 5432), 1)
PY
}
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "PostgreSQL is not answering on $PG_HOST:$PG_PORT; trying to start it..." >&2
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
  fi
fi
if ! redis_up; then
  echo "Redis is not answering on 127.0.0.1:$REDIS_PORT; trying to start it..." >&2
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null || true
    for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  fi
fi

failed=0
pg_up || { echo "ERROR: PostgreSQL is not running on $PG_HOST:$PG_PORT. Start it (e.g. 'pg_ctlcluster <version> main start' or 'docker compose up -d postgres') and run again." >&2; failed=1; }
redis_up || { echo "ERROR: Redis is not running on 127.0.0.1:$REDIS_PORT. Start it (e.g. 'redis-server --daemonize yes' or 'docker compose up -d redis') and run again." >&2; failed=1; }
exit $failed
