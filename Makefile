# gridlens: the two commands are `make run` and `make test`; both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= $(or $(GRIDLENS_PORT),8000)
DEMO   := $(VENV)/demo

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# reinstall whenever pyproject.toml changes
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.installed-run

# The main job: the AMI server with its dashboard on http://127.0.0.1:$(PORT)/, on SQLite in
# .venv/demo, seeded with 48 h of photos from simulated meters that keep uploading (Ctrl-C stops).
run: $(VENV)/.installed-run
	$(BIN)/gridlens demo --dir $(DEMO) --port $(PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python benchmarks/bench_pq.py
	$(BIN)/python benchmarks/bench_grid.py
	$(BIN)/python benchmarks/bench_meter.py
	$(BIN)/python benchmarks/bench_server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
