# scim-hub — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench bench-smoke soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

## make run: install, migrate the SQLite database, create a demo workspace on first start, serve.
run: $(STAMP)
	$(BIN)/scim-hub db upgrade
	$(BIN)/scim-hub init --workspace demo --idp any_scim --if-missing
	$(BIN)/scim-hub serve

## make test: lint, then the whole suite, on two worker processes (pytest-xdist); a worker done
## with its share takes tests queued on the other (worksteal), so a slow test last does not idle one.
test: $(STAMP) lint
	$(BIN)/pytest -q -n 2 --dist worksteal --durations=15

lint: $(STAMP)
	$(BIN)/ruff check hub rules plugins tests bench
	$(BIN)/ruff format --check hub rules plugins tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format hub rules plugins tests bench
	$(BIN)/ruff check --fix hub rules plugins tests bench

## make bench: hub vs peer vs floor; BENCH_ARGS="--users 10000 --concurrency 16" to change sizes.
## BENCH=scale|tenants|initial|soak runs that benchmark instead (python -m bench.$(BENCH));
## BENCH_ARGS="--postgres --workers 1,2 --servers hub" benches PostgreSQL with 1 and 2 workers.
bench: $(STAMP)
	$(BIN)/python -m bench$(if $(BENCH),.$(BENCH)) $(BENCH_ARGS)

## make soak: 10 minutes of mixed traffic; the server's RSS must stay flat (SOAK_ARGS to change).
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var/*.db var/*.db-wal var/*.db-shm
