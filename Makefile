# Developer and CI entry points. Everything runs from the project's own .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.datastream-installed
EXTRAS := test,mongodb,influxdb
BENCH_MACHINE ?= $(shell hostname)
INFLUXD ?= influxd

.PHONY: venv install demo influxd lint test bench compare clean distclean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml changed since the last install (editable: code edits
# need no reinstall).
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: | $(BIN)/python
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/python -m datastream demo

# The InfluxDB backend tests start their own influxd; it comes from the Debian package.
influxd:
	@command -v $(INFLUXD) >/dev/null 2>&1 || { \
	  echo "$(INFLUXD) not on PATH: installing the Debian package influxdb"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb) \
	  || echo "WARNING: could not install the Debian package influxdb;" \
	          "the InfluxDB backend tests will fail."; }

lint: $(INSTALLED)
	$(BIN)/ruff check datastream tests bench

test: $(INSTALLED) influxd
	$(BIN)/ruff check datastream tests bench
	$(BIN)/pytest -q

bench: $(INSTALLED)
	$(BIN)/asv machine --yes --machine $(BENCH_MACHINE)
	$(BIN)/asv run --python=same --machine $(BENCH_MACHINE) --set-commit-hash $$(git rev-parse HEAD)
	$(BIN)/asv publish

# Every peer side by side on one data set (bench/compare.py; see bench/RESULTS.md). Roughly an
# hour at the default scale, InfluxDB taking most of it. Smoke test:
# make compare COMPARE_ARGS="--quick --targets"
COMPARE_ARGS ?= --targets --json compare.json
compare: $(INSTALLED) influxd
	PYTHONPATH=. $(BIN)/python bench/compare.py $(COMPARE_ARGS)

clean:
	rm -rf build *.egg-info .pytest_cache .hypothesis .ruff_cache bench/results bench/html bench/env
	rm -f demo.duckdb demo.duckdb.wal compare.json
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
