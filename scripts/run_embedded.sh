#!/usr/bin/env bash
# `make run`: the broker sandbox beside the API, both stopped together.
set -eu
PY=.venv/bin/python
SANDBOX_PORT="${THOR_SANDBOX_PORT:-8100}"
# Thor's Kite client (quotes and ticks among its calls) and its login page point at this sandbox.
export THOR_KITE_API_ROOT="${THOR_KITE_API_ROOT:-http://127.0.0.1:$SANDBOX_PORT}"
export THOR_KITE_LOGIN_URL="${THOR_KITE_LOGIN_URL:-$THOR_KITE_API_ROOT/connect/login}"
# Social login's Google- and Discord-like providers live in the same sandbox.
export THOR_SANDBOX_URL="${THOR_SANDBOX_URL:-http://127.0.0.1:$SANDBOX_PORT}"
# The demo user's static IP: the sandbox's Kite takes orders only from 127.0.0.2, where it also runs the
# proxy a user's orders leave through (set it with PUT /api/brokers/connections/{id}/egress; README).
EGRESS_ADDRESS="${THOR_DEMO_EGRESS_ADDRESS:-127.0.0.2}"
EGRESS_PORT="${THOR_DEMO_EGRESS_PORT:-8101}"
export THOR_ORDER_EGRESS_PRIVATE_HOSTS="${THOR_ORDER_EGRESS_PRIVATE_HOSTS:-$EGRESS_ADDRESS}"

$PY manage.py migrate --noinput -v0
$PY manage.py run_broker_sandbox --port "$SANDBOX_PORT" \
  --kite-ip-whitelist "$EGRESS_ADDRESS" --egress-proxy "$EGRESS_ADDRESS:$EGRESS_PORT" &
SANDBOX_PID=$!
trap 'kill $SANDBOX_PID 2>/dev/null || true' EXIT INT TERM
# The instrument master from the sandbox's dump (every contract paper trading and the checks know); a
# restart rewrites only what changed. The daily beat task reloads it while the server runs.
$PY manage.py load_instruments --wait 60
# Once the sandbox answers: the demo tenant, its apps, and its market-data connection (a session at the sandbox's
# Kite, which paper prices, chains and ticks go through, as a tenant's go through its own Kite app in production).
$PY manage.py seed_demo

echo "Thor on http://127.0.0.1:8000  (Swagger UI: http://127.0.0.1:8000/api/docs/)"
# thor.serve starts uvicorn trusting forwarded headers only from THOR_FORWARDED_ALLOW_IPS (none by default).
$PY -m thor.serve --host 127.0.0.1 --port 8000 --log-level warning
