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
# Chromium renders the Airflow UI pages in the browser test; pdftoppm (poppler-utils) renders report PDFs.
SYSTEM_TOOLS := docker-compose chromium pdftoppm
# Debian libraries WeasyPrint loads at run time (`greenflow report --format pdf`) and a font for the charts.
SYSTEM_LIBS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	missing=$$(echo "$$missing" | sed 's/ pdftoppm/ poppler-utils/'); \
	for lib in $(SYSTEM_LIBS); do dpkg -s $$lib >/dev/null 2>&1 || missing="$$missing $$lib"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi

# lint-imports: the import contracts in pyproject.toml (layers, independent adapters, no cycles).
lint: install
	$(BIN)/ruff check greenflow tests benchmarks
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy greenflow

# The whole story offline in about a minute: the example DAG (Airflow dag.test) and flow (Prefect) defer to
# the green window of a replayed real grid trace, a shared budget skips an evaluation; leaves .demo/ledger.db.
demo: install
	$(BIN)/greenflow demo

# The UIs on this machine (each runs in the foreground until Ctrl-C), reading the demo's ledger.
.PHONY: airflow-ui prefect-ui
DEMO_LEDGER_URL := sqlite:///$(CURDIR)/.demo/ledger.db
AIRFLOW_UI_HOME := $(CURDIR)/.airflow
PREFECT_UI_HOME := $(CURDIR)/.prefect

# `.demo` is marked as the demo's so a later `make demo` may rebuild it.
airflow-ui: install
	@mkdir -p .demo $(AIRFLOW_UI_HOME) && touch .demo/.greenflow-demo
	@test -f .demo/ledger.db || echo "no demo ledger yet: run 'make demo' to fill the Carbon Ledger page"
	@echo "Airflow (standalone) at http://127.0.0.1:8080 in 60-90 s; user admin, password in"
	@echo "  $(AIRFLOW_UI_HOME)/simple_auth_manager_passwords.json.generated (written at the first start)"
	@echo "Carbon Ledger page (left navigation) reads $(DEMO_LEDGER_URL); Ctrl-C stops Airflow"
	PATH="$(CURDIR)/$(BIN):$$PATH" AIRFLOW_HOME=$(AIRFLOW_UI_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
		AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 AIRFLOW__API__HOST=127.0.0.1 \
		AIRFLOW__GREENFLOW__LEDGER_URL=$(DEMO_LEDGER_URL) GREENFLOW_LEDGER_URL=$(DEMO_LEDGER_URL) \
		$(BIN)/airflow standalone

prefect-ui: install
	@mkdir -p $(PREFECT_UI_HOME)
	@echo "Prefect server at http://127.0.0.1:4200 in about 25 s; Ctrl-C stops it. Run the example flow against it:"
	@echo "  PREFECT_API_URL=http://127.0.0.1:4200/api GREENFLOW_LEDGER_URL=$(DEMO_LEDGER_URL) $(BIN)/python flows/training.py"
	PREFECT_HOME=$(PREFECT_UI_HOME) PREFECT_UI_API_URL=http://127.0.0.1:4200/api PREFECT_SERVER_ANALYTICS_ENABLED=false \
		$(BIN)/prefect server start --host 127.0.0.1 --port 4200

test: install system-deps postgres redis lint typecheck
	$(BIN)/pytest -n 2 --dist loadgroup

# Inner loop: no end-to-end tests that start real servers.
test-fast: install system-deps postgres redis
	$(BIN)/pytest -n 2 --dist loadgroup -m "not slow"

bench: install postgres
	$(BIN)/python benchmarks/ledger.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
