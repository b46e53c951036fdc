PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo lint test bench migrate clean

$(STAMP): pyproject.toml devtools/pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e ./devtools
	@touch $(STAMP)

venv: $(STAMP)

# `make demo DAGSTER_STORAGE=postgres` keeps Dagster's runs, event log and schedules in an embedded PostgreSQL.
DAGSTER_STORAGE ?= sqlite

demo: $(STAMP)
	DAGSTER_STORAGE=$(DAGSTER_STORAGE) $(BIN)/python -m koku_devtools.demo

lint: $(STAMP)
	$(BIN)/ruff check koku_dagster tests bench devtools
	$(BIN)/ruff format --check koku_dagster tests bench devtools
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

migrate: $(STAMP)
	$(BIN)/koku-dagster migrate

clean:
	rm -rf $(VENV) .koku .tmp_dagster_home_*
