# streamapp: `make run` runs the whole app on embedded defaults, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-faults lint typecheck unit bench eval stack-up stack-down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip wheel setuptools
	@# torch is pinned; pip keeps an installed torch==2.13.0 and its cache, never reinstalls it needlessly
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/python -m streamapp.launcher

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -rfE --durations=25 --reruns 2 --reruns-delay 3

test-faults: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -rfE --reruns 1 tests/faults

unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not broker and not postgres and not mariadb and not e2e and not browser and not faults"

bench: install
	$(BIN)/python -m bench

eval: install
	$(BIN)/python bench/eval_anomaly.py
	$(BIN)/python bench/eval_rul.py
	$(BIN)/python bench/eval_rul_stream.py

stack-up: install
	$(BIN)/python -m streamapp.stack up

stack-down: install
	$(BIN)/python -m streamapp.stack down

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
