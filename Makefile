# Every target sets up what it needs: a fresh clone with only python3 is enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-warehouses lock postgres chromium test test-slow test-all test-warehouses lint sync status demo models report sandbox clean

install: $(STAMP)

# Every venv installs the versions its constraints file pins (`make lock` writes them), so a
# fresh clone next year gets the packages CI passed with, not whatever was released since.
CONSTRAINTS := constraints.txt

# Quiet on stdout (progress on stderr): `make sync ARGS="--json"` prints the JSON line only.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@echo "installing $(VENV) (pyproject.toml or $(CONSTRAINTS) changed)" >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/pip install --quiet --upgrade pip >&2
	@$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]' >&2
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check pipelines tests deploy

# The fast suite (two workers); the slow end-to-end tests (50,000-record histories, kills in
# every phase, the demo, real make/cron runs, the browser) run with test-slow. CI runs both.
# The PostgreSQL tests start a real PostgreSQL 15 server (tests/postgres.py): install it if absent.
postgres:
	@command -v initdb >/dev/null || [ -x /usr/lib/postgresql/15/bin/initdb ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; }

# The report's browser test (test-slow) drives Debian's chromium through Playwright
# (Playwright's own browser download is never used): install it if absent.
chromium:
	@[ -x /usr/bin/chromium ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: lint postgres
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not warehouses"

test-slow: install postgres chromium
	$(BIN)/python -m pytest -q -n 2 -m "slow and not warehouses"

test-all: lint postgres chromium
	$(BIN)/python -m pytest -q -n 2 -m "not warehouses"

# Snowflake and BigQuery on local emulators (fakesnow, bqemulator), plus the comparison of mart
# figures across all four destinations. Each emulator pins sqlglot and duckdb versions that
# conflict with ours, so each runs from a venv of its own, built once and kept until its
# requirements file changes; our venv gains the Snowflake and BigQuery clients (extra
# `warehouses`).
EMULATORS := tests/emulators
FAKESNOW_VENV := .venv-fakesnow
BQEMULATOR_VENV := .venv-bqemulator
WAREHOUSES_STAMP := $(VENV)/.warehouses-installed

$(WAREHOUSES_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev,warehouses]'
	touch $@

install-warehouses: $(WAREHOUSES_STAMP)

# .venv-fakesnow from tests/emulators/fakesnow.txt, .venv-bqemulator from bqemulator.txt, each
# pinned by its constraints-*.txt.
.venv-%/.installed: $(EMULATORS)/%.txt $(EMULATORS)/constraints-%.txt
	rm -rf .venv-$*
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install --quiet --upgrade pip
	.venv-$*/bin/pip install --quiet -c $(EMULATORS)/constraints-$*.txt -r $<
	touch $@

# The Airflow DAG (deploy/airflow) is tested in real Airflow: Airflow and this project in a venv
# of their own (.venv-airflow; Airflow's pins are not ours), rebuilt when either's requirements
# change. An explicit rule, so the emulators' pattern rule above does not apply.
AIRFLOW_VENV := .venv-airflow

$(AIRFLOW_VENV)/.installed: deploy/airflow/requirements.txt deploy/airflow/constraints.txt pyproject.toml
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet -c deploy/airflow/constraints.txt \
		-r deploy/airflow/requirements.txt -e .
	touch $@

# Resolves every venv's requirements afresh from the package index, in throwaway venvs, and
# pins what they installed: run after changing a requirement (pyproject.toml, the emulators',
# Airflow's), then `make test-all test-warehouses`. pip is left out (each venv upgrades it).
LOCK_DIR := /tmp/micrometrics-lock
define lock_venv
	rm -rf $(LOCK_DIR)/$(1) && $(PYTHON) -m venv $(LOCK_DIR)/$(1)
	$(LOCK_DIR)/$(1)/bin/pip install --quiet --upgrade pip
	$(LOCK_DIR)/$(1)/bin/pip install --quiet $(2)
	{ echo "# Every package of $(1)'s venv, as \`make lock\` resolved it on $$(date -u +%F)."; \
	  $(LOCK_DIR)/$(1)/bin/pip freeze --all --exclude-editable | grep -v '^pip=='; } > $(3)
endef

# (a comma would split call's arguments)
MAIN_REQUIREMENTS := -e '.[dev,warehouses]'

lock:
	$(call lock_venv,main,$(MAIN_REQUIREMENTS),$(CONSTRAINTS))
	$(call lock_venv,fakesnow,-r $(EMULATORS)/fakesnow.txt,$(EMULATORS)/constraints-fakesnow.txt)
	$(call lock_venv,bqemulator,-r $(EMULATORS)/bqemulator.txt,$(EMULATORS)/constraints-bqemulator.txt)
	$(call lock_venv,airflow,-r deploy/airflow/requirements.txt -e .,deploy/airflow/constraints.txt)
	rm -rf $(LOCK_DIR)

test-warehouses: lint postgres $(WAREHOUSES_STAMP) $(FAKESNOW_VENV)/.installed $(BQEMULATOR_VENV)/.installed $(AIRFLOW_VENV)/.installed
	$(BIN)/python -m pytest -q -n 2 -m warehouses

sync: install
	@$(BIN)/python -m pipelines.sync $(ARGS)

# Where each stream stands, the last sync's result, rows per table; ARGS="--max-age 6h" fails
# when stale (make's exit 2; python -m pipelines.status tells stale, 1, from unavailable, 3).
status: install
	@$(BIN)/python -m pipelines.status $(ARGS)

# Builds sql/ (staging views, mart tables) in the configured destination, then its data tests.
models: install
	@$(BIN)/python -m pipelines.models $(ARGS)

# One self-contained HTML page of charts over the marts (ARGS="--output x.html --destination ...").
report: install
	@$(BIN)/python -m pipelines.report $(ARGS)

demo: install
	$(BIN)/python -m pipelines.demo

sandbox: install
	$(BIN)/python -m pipelines.sandbox $(ARGS)

clean:
	rm -rf $(VENV) $(FAKESNOW_VENV) $(BQEMULATOR_VENV) $(AIRFLOW_VENV) demo.duckdb .demo .pytest_cache .ruff_cache
