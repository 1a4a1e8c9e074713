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

# The main job. Until the server lands: end-to-end power-quality and meter-reading demos.
run: $(VENV)/.installed-run
	@mkdir -p $(DEMO)
	$(BIN)/gridlens pf --paper
	$(BIN)/gridlens synth $(DEMO)/distorted-59.7hz.csv --f 59.7 --seconds 2 \
		--v 1:220,3:150,5:100 --i 1:100@60,3:50@30,5:30@30 --noise-v 1 --noise-i 0.5 --dc-v 2
	$(BIN)/gridlens pf $(DEMO)/distorted-59.7hz.csv --target-pf 0.95 --steps-kvar 5,10,20,20 \
		--plot $(DEMO)/distorted-59.7hz.png
	$(BIN)/gridlens meter synth $(DEMO)/meter --reading 4829.97 --seed 3
	$(BIN)/gridlens read $(DEMO)/meter/meter.jpg --roi $(DEMO)/meter/roi.json

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
