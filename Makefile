# greenflow: `make demo` sets up and runs the demo; `make test` sets up and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint typecheck postgres redis system-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	# --compile-bytecode: machines that set PYTHONDONTWRITEBYTECODE would otherwise recompile Airflow,
	# Prefect and SQLAlchemy from source in every process (seconds per `greenflow` call, per test worker).
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[all]'
	@touch $(STAMP)

install: $(STAMP)

# The ledger tests run on a real PostgreSQL (127.0.0.1:5432, trust auth, database `test`).
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
		echo "starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n 1) main start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
		pg_isready -h 127.0.0.1 -p 5432; }

# The multi-worker test's Celery broker (127.0.0.1:6379; it keeps nothing on disk).
redis:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { \
		echo "starting Redis"; \
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
			--dir /var/lib/redis --logfile /var/log/redis/ci.log; \
		for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done; \
		redis-cli -h 127.0.0.1 -p 6379 ping; }

# Debian tools the tests drive: Compose validates docker-compose.yml (no Docker engine runs here);
# Chromium renders the Airflow UI pages in the browser test.
SYSTEM_TOOLS := docker-compose chromium
system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi

lint: install
	$(BIN)/ruff check greenflow tests benchmarks

typecheck: install
	$(BIN)/mypy greenflow

demo: install
	$(BIN)/greenflow demo

test: install system-deps postgres redis lint typecheck
	$(BIN)/pytest -n 2 --dist loadgroup

# Inner loop: no end-to-end tests that start real servers.
test-fast: install system-deps postgres redis
	$(BIN)/pytest -n 2 --dist loadgroup -m "not slow"

bench: install postgres
	$(BIN)/python benchmarks/ledger.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
