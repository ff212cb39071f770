PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Tests always use the real PostgreSQL and Redis on this machine (never SQLite). Their sessions commit without
# waiting for the WAL's flush to disk (synchronous_commit off: a crash of the machine may lose the last commits
# of a test database, which nothing keeps): the suite commits thousands of times, each an fsync otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/thor?options=-c%20synchronous_commit%3Doff
TEST_REDIS_URL ?= redis://127.0.0.1:6379/8
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test test-browser soak-orders lint typecheck format lock bench-positions bench-upstream bench-greeks bench-moneyness bench-ws bench-ticks bench-schwab-refresh bench-placement clean

# The venv installs the lock files (every package pinned, with hashes), never the .txt inputs: `make lock`.
$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	touch $@

# requirements.txt and requirements-dev.txt are the edited inputs (direct pins); this resolves them into the
# lock files, the dev one constrained by the runtime one so that the packages both hold have the same pins.
# pip-tools runs from a throwaway venv, never the project's. Pins already in a lock file stay unless an input
# changed them; `make lock LOCK_ARGS=--upgrade` moves every transitive pin to the newest release.
PIP_TOOLS_VERSION ?= 7.7.0
LOCK_ARGS ?=
PIP_COMPILE_ARGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock:
	tools="$$(mktemp -d)" && trap 'rm -rf "$$tools"' EXIT && \
	$(PYTHON) -m venv "$$tools" && "$$tools/bin/pip" install -q pip-tools==$(PIP_TOOLS_VERSION) && \
	export CUSTOM_COMPILE_COMMAND="make lock" && \
	"$$tools/bin/pip-compile" $(PIP_COMPILE_ARGS) $(LOCK_ARGS) --output-file=requirements.lock requirements.txt && \
	"$$tools/bin/pip-compile" $(PIP_COMPILE_ARGS) $(LOCK_ARGS) --constraint=requirements.lock \
		--output-file=requirements-dev.lock requirements-dev.txt

run: $(VENV)/.installed
	./scripts/run_embedded.sh

# In parallel (pytest-xdist): three workers on two cores, as much of the suite's time is spent waiting (on
# servers, sockets, PostgreSQL), not computing; a fourth finished no sooner and cost more CPU. Each worker has
# its own PostgreSQL database (pytest-django names it test_<db>_gw0, _gw1, ...) and its own Redis DB:
# TEST_REDIS_URL's DB plus the worker's number, 8 to 10 (thor/settings.py), never 7 (the browser suite) nor 13
# (CI's Celery); the benchmarks use 8 to 11, so not at the same time. `--dist load` hands out tests a few
# at a time in pytest-django's order, so the slow modules spread over the workers and each worker still runs
# its database tests before its transactional ones (whose flush empties the tables, the migrations' default
# tenant with them); worksteal breaks that order when it steals. The property tests run the smaller example
# budget of conftest.py's "make-test" profile. PYTEST_ARGS="-n 0" runs the suite in one process.
TEST_WORKERS ?= 3
# Bytecode is written (PYTHONDONTWRITEBYTECODE emptied, where the environment sets it) and Thor's modules are
# compiled once before the workers start: each worker, and each server a test starts, would otherwise compile
# them again, and pytest would rewrite every test module's asserts again on every run.
SOURCE_DIRS := accounts analytics brokers identity market thor browser bench scripts conftest.py manage.py
test: $(VENV)/.installed-dev
	./scripts/ensure_services.sh
	PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q -j 0 $(SOURCE_DIRS) > /dev/null
	PYTHONDONTWRITEBYTECODE= DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL= \
		$(PY) -m pytest -n $(TEST_WORKERS) --dist load --hypothesis-profile=make-test $(PYTEST_ARGS)

# The order lifecycle's model-based fault test for ten minutes (SOAK_SECONDS), printing what it survived (the
# suite's 60 s stack dump, for a test that hangs, moved past the soak's own length).
SOAK_SECONDS ?= 600
soak-orders: $(VENV)/.installed-dev
	./scripts/ensure_services.sh
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL= THOR_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(PY) -m pytest -q -s -p no:cacheprovider -o timeout=$$(( $(SOAK_SECONDS) + 300 )) \
		-o faulthandler_timeout=$$(( $(SOAK_SECONDS) + 300 )) accounts/tests/test_order_lifecycle_model.py

# The seed frontends' flows in headless Chromium (browser/): Thor and the sandbox as `make run` starts them, on
# free ports, with their own PostgreSQL database thor_browser and Redis DB 7; the pages on http://localhost:5173.
# Apart from `make test`: it waits out a one-minute access token, and needs chromium and chromium-driver.
test-browser: $(VENV)/.installed-dev
	./scripts/ensure_services.sh
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL= \
		$(PY) -m pytest -m browser browser $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy with the django-stubs and DRF plugins over thor/, identity/ and brokers/ (settings in pyproject.toml).
typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks (not tests): each sets up its own world in PostgreSQL thor_bench and Redis DB 9; see bench/README.md.
# bench-positions measures gunicorn too (requirements-dev.txt) and loads with wrk, which it installs when missing.
bench-positions: $(VENV)/.installed-dev
	./scripts/ensure_services.sh
	$(PY) bench/api_positions.py $(BENCH_ARGS)

bench-upstream: $(VENV)/.installed
	./scripts/ensure_services.sh
	$(PY) bench/upstream_calls.py $(BENCH_ARGS)

# GET /api/fo/moneyness-series over 30 days of generated one-minute snapshots (its own database thor_bench_moneyness).
bench-moneyness: $(VENV)/.installed
	./scripts/ensure_services.sh
	$(PY) bench/moneyness_series.py $(BENCH_ARGS)

# Its own world: PostgreSQL thor_bench_ws and Redis DB 11.
bench-ws: $(VENV)/.installed
	./scripts/ensure_services.sh
	$(PY) bench/ws_fanout.py $(BENCH_ARGS)

# Tick to socket (issue 21): the sandbox's ticks to the sockets' P&L beside one KiteTicker straight from the sandbox.
# Its own world: PostgreSQL thor_bench_ticks and Redis DB 11 (as bench-ws: not at the same time).
bench-ticks: $(VENV)/.installed
	./scripts/ensure_services.sh
	$(PY) bench/tick_pnl.py $(BENCH_ARGS)

# Its own world: PostgreSQL thor_bench_schwab, Redis DB 8 (cache and Celery broker), 2 Celery workers and beat.
bench-schwab-refresh: $(VENV)/.installed
	./scripts/ensure_services.sh
	$(PY) bench/schwab_refresh.py $(BENCH_ARGS)

# Live placements straight at the sandbox and through Thor (Kite and Schwab), in one run: what Thor adds.
# Its own world: PostgreSQL thor_bench_placement and Redis DB 7.
bench-placement: $(VENV)/.installed
	./scripts/ensure_services.sh
	$(PY) bench/placement.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3

# analytics.greeks: IV + five Greeks for 100,000 options on one core, beside vollib and numpy's Black-76 price
# (no database). OPENBLAS_CORETYPE/L2_SIZE are unset for this command only (see bench/README.md).
bench-greeks: $(VENV)/.installed-dev
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PY) bench/greeks.py $(BENCH_ARGS)
