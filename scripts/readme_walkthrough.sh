#!/usr/bin/env bash
# Run the README's curl walkthrough against `make run`, as a new user would, and fail on any answer
# the README does not show. The walkthrough is every ```bash block in README.md whose fence follows a
# `<!-- walkthrough -->` line, run in order in one shell. A curl command whose (last) line ends in
# `# expect NNN` must answer NNN; every other curl must answer 2xx.
#
# `make run` runs in a copy of this working tree (tracked and untracked files, not ignored ones) so
# its SQLite database starts empty; it borrows this checkout's .venv. Thor listens on :8000 (fixed by
# scripts/run_embedded.sh) and the sandbox on :8100: both must be free. The walkthrough runs twice: then
# `make run` is stopped and started again on the same database, and the walkthrough runs as new users.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STARTUP_TIMEOUT="${WALKTHROUGH_STARTUP_TIMEOUT:-90}"
RUN_TIMEOUT="${WALKTHROUGH_TIMEOUT:-120}"

fail() { echo "readme_walkthrough: $*" >&2; exit 1; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ -x .venv/bin/python ] || fail "no .venv here: run 'make .venv/.installed' first"
for port in 8000 8100; do
  port_taken "$port" && fail "port $port is in use; 'make run' needs it (stop whatever listens there)"
done

tmp="$(mktemp -d)"
RUN_PID= WALK_PID=
cleanup() {
  [ -z "$WALK_PID" ] || kill "$WALK_PID" 2>/dev/null || true
  if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
    kill -TERM -- "-$RUN_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$RUN_PID" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A copy of the working tree (times kept, so make's view of .venv/.installed is the same as here).
mkdir "$tmp/thor"
git ls-files -z -co --exclude-standard | grep -zv -e '^\.venv$' -e '^db\.sqlite3' |
  rsync -a --from0 --files-from=- ./ "$tmp/thor/"
ln -s "$(cd .venv && pwd -P)" "$tmp/thor/.venv"
# `make run` would rebuild an out-of-date venv, here through the link into the borrowed one: refuse.
make -C "$tmp/thor" -q .venv/.installed || fail ".venv is not up to date with requirements.lock: run 'make .venv/.installed' first"

# The walkthrough: the marked blocks, `# expect NNN` turned into what the curl wrapper reads.
awk '
  /^<!-- walkthrough -->[[:space:]]*$/ { marked = 1; next }
  marked && /^```bash[[:space:]]*$/ { inside = 1; marked = 0; blocks++; print "# --- README block " blocks; next }
  { marked = 0 }
  inside && /^```[[:space:]]*$/ { inside = 0; next }
  inside { print }
  END { if (blocks == 0) exit 1 }
' README.md >"$tmp/blocks.sh" || fail "README.md has no <!-- walkthrough --> bash block"
# A command (its backslash-continued lines together) whose last line ends in `# expect NNN`.
awk '
  { command = (continued ? command "\n" : "") $0; continued = /\\$/ }
  continued { next }
  match($0, /#[^#]*expect[ ]+[0-9][0-9][0-9][ ]*$/) {
    code = substr($0, RSTART, RLENGTH); sub(/[ ]*$/, "", code); code = substr(code, length(code) - 2)
    if (!sub(/curl /, "WALKTHROUGH_EXPECT=" code " curl ", command)) { print "line " NR ": # expect without a curl" > "/dev/stderr"; exit 1 }
  }
  { print command }
' "$tmp/blocks.sh" >"$tmp/blocks.expect.sh" || fail "'# expect NNN' belongs at the end of a curl command"

cat >"$tmp/walkthrough.sh" <<'WRAPPER'
set -euo pipefail
# Every request must answer 2xx, or the status its README line expects; otherwise print and stop.
curl() {
  local expect="${WALKTHROUGH_EXPECT:-}" headers body rc=0 status
  headers="$(mktemp)"; body="$(mktemp)"
  if [ -z "$expect" ]; then
    command curl --fail-with-body -sS -D "$headers" "$@" >"$body" || rc=$?
  else
    command curl -sS -D "$headers" "$@" >"$body" || rc=$?
  fi
  status="$(awk '/^HTTP\// { s = $2 } END { print s }' "$headers")"
  cat "$body"
  local method=GET url= previous= arg
  for arg in "$@"; do
    case "$previous" in -X | --request) method="$arg" ;; -d | --data*) [ "$method" = GET ] && method=POST ;; esac
    case "$arg" in http://* | https://*) url="${arg%%\?*}" ;; esac
    previous="$arg"
  done
  if [ -n "$expect" ] && [ "$status" = "$expect" ] && { [ "$rc" = 0 ] || [ "$rc" = 22 ]; }; then
    echo "  $status (as expected) $method $url" >&2
  elif [ -z "$expect" ] && [ "$rc" = 0 ] && [[ "$status" == 2?? ]]; then
    echo "  $status $method $url" >&2
  else
    {
      echo "FAILED: curl $*"
      echo "  status ${status:-none} (expected ${expect:-2xx}), curl exit $rc; answer:"
      sed 's/^/    /' "$body"; echo
    } >&2
    rm -f "$headers" "$body"
    exit 1
  fi
  rm -f "$headers" "$body"
}
WRAPPER
cat "$tmp/blocks.expect.sh" >>"$tmp/walkthrough.sh"

# A second pass as someone who runs `make run` again on the database the first left behind (issue 23):
# new users (the same addresses with ".again"), a restarted sandbox that must not repeat the ids and
# subjects the database already holds.
sed -E 's/\b([a-z]+)@example\.com\b/\1.again@example.com/g' "$tmp/walkthrough.sh" >"$tmp/walkthrough.again.sh"

# `make run` itself, in its own process group so the trap stops all of it.
start_thor() {
  echo "readme_walkthrough: make run in $tmp/thor (log: $tmp/run.log)"
  start=$SECONDS
  (cd "$tmp/thor" && exec setsid make run) >>"$tmp/run.log" 2>&1 &
  RUN_PID=$!
  local ready=
  for _ in $(seq $((STARTUP_TIMEOUT * 2))); do
    kill -0 "$RUN_PID" 2>/dev/null || break
    if command curl -fsS -o /dev/null http://127.0.0.1:8000/api/health/ 2>/dev/null && port_taken 8100; then
      ready=1
      break
    fi
    sleep 0.5
  done
  if [ -z "$ready" ]; then
    cat "$tmp/run.log" >&2
    fail "make run did not answer /api/health/ (and the sandbox :8100) within ${STARTUP_TIMEOUT}s"
  fi
  echo "readme_walkthrough: up after $((SECONDS - start))s; running $(grep -c '^# --- README block' "$tmp/blocks.sh") README blocks"
}

# Ctrl+C at the terminal: TERM to the whole of `make run`, which must be gone (ports free) within its bound.
stop_thor() {
  kill -TERM -- "-$RUN_PID" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$RUN_PID" 2>/dev/null && fail "make run did not stop within 15 s of a TERM"
  RUN_PID=
  for port in 8000 8100; do
    for _ in $(seq 50); do port_taken "$port" || break; sleep 0.1; done
    port_taken "$port" && fail "port $port still answers after make run stopped"
  done
  return 0
}

walk() {
  local name="$1" script="$2" rc=0
  # In the background and waited for, so a Ctrl+C or TERM stops it at once.
  (cd "$tmp" && exec timeout "$RUN_TIMEOUT" bash "$script") >"$tmp/out.log" &
  WALK_PID=$!
  wait "$WALK_PID" || rc=$?
  WALK_PID=
  if [ "$rc" != 0 ]; then
    echo "--- walkthrough output (stdout) ---" >&2; cat "$tmp/out.log" >&2; echo >&2
    echo "--- make run log ---" >&2; tail -n 60 "$tmp/run.log" >&2
    [ "$rc" = 124 ] && fail "the walkthrough ($name) took longer than ${RUN_TIMEOUT}s"
    fail "the README walkthrough failed ($name, exit $rc)"
  fi
  echo "readme_walkthrough: $name passed in $((SECONDS - start))s"
}

# What both runs logged must hold no secret (issue 23): no JWT, and no secret query parameter whose value
# is not `[redacted]` (thor/logging.py), though the walkthrough sent tokens, tickets and OAuth codes.
scan_log_for_secrets() {
  local names='token|ticket|code|state|session|api_secret|client_secret|request_token|access_token|id_token|refresh|refresh_token|password'
  local found
  found="$(grep -nE -e 'eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}' \
    -e "([?&;]|%3[Ff]|%26)($names)(=|%3[Dd])[^[&;[:space:]\"'\\%]" "$tmp/run.log" || true)"
  if [ -n "$found" ]; then
    echo "$found" | cut -c1-300 >&2
    fail "the make run log holds a token or a secret query parameter (lines above)"
  fi
  echo "readme_walkthrough: no token or secret query parameter in the make run log ($(wc -l <"$tmp/run.log") lines)"
}

start_thor
walk "first run" walkthrough.sh
stop_thor
start_thor
walk "make run again, same database" walkthrough.again.sh
stop_thor
scan_log_for_secrets
