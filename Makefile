# Developer and CI entry points. Everything runs from the project's own .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.datastream-installed
EXTRAS := test,mongodb,influxdb,http
BENCH_MACHINE ?= $(shell hostname)
INFLUXD ?= influxd

BENCH_BASE ?= main
BENCH_HEAD ?= HEAD
BENCH_FILTER ?=
ASV_VENV := asv.virtualenv.conf.json

.PHONY: venv install warmup demo influxd chromium lint test docs bench bench-compare compare clean distclean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The distribution was called "datastream" before it became "datastream-columnar" (the import
# name is still datastream): an old editable install of that name would shadow the new one, so
# it is removed first. In a fresh venv there is nothing to remove and the step does nothing.
DROP_OLD_DIST = $(BIN)/python -m pip show --quiet datastream >/dev/null 2>&1 \
	&& $(BIN)/python -m pip uninstall --yes --quiet datastream || true

# Reinstalls only when pyproject.toml changed since the last install (editable: code edits
# need no reinstall).
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(DROP_OLD_DIST)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: | $(BIN)/python
	$(DROP_OLD_DIST)
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $(INSTALLED)
	$(BIN)/datastream warmup

# Compiles every numba kernel into the per-user cache (seconds when it is already warm).
warmup: $(INSTALLED)
	$(BIN)/datastream warmup

demo: warmup
	$(BIN)/python -m datastream demo

# The InfluxDB backend tests start their own influxd; it comes from the Debian package.
influxd:
	@command -v $(INFLUXD) >/dev/null 2>&1 || { \
	  echo "$(INFLUXD) not on PATH: installing the Debian package influxdb"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb) \
	  || echo "WARNING: could not install the Debian package influxdb;" \
	          "the InfluxDB backend tests will fail."; }

# The chart page's browser test (tests/http/test_page.py) drives Debian's headless Chromium.
chromium:
	@{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || { \
	  echo "chromium or chromedriver missing: installing the Debian packages"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	     apt-get install -y -qq chromium chromium-driver) \
	  || echo "WARNING: could not install chromium and chromium-driver;" \
	          "the chart page test will fail."; }

lint: $(INSTALLED)
	$(BIN)/ruff check datastream tests bench

# The suite in TEST_WORKERS processes (pytest-xdist; each starts its own servers when it needs
# them). TEST_WORKERS=0 runs it in this process, one test after another.
TEST_WORKERS ?= 2
test: $(INSTALLED) influxd chromium
	$(BIN)/ruff check datastream tests bench
	$(BIN)/pytest -q -n $(TEST_WORKERS)

# The documentation site (mkdocs.yml, pages under docs/) into site/; any warning fails.
docs: $(INSTALLED)
	$(BIN)/mkdocs build --strict --site-dir site

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

# Two commits compared (default: main and HEAD), each built and installed by asv into its own
# virtualenv under bench/env with the dependencies from the package index; fails when a
# benchmark got slower by more than 10%. BENCH_FILTER=coldstart runs only matching benchmarks.
bench-compare: $(INSTALLED)
	$(BIN)/asv machine --config $(ASV_VENV) --yes --machine $(BENCH_MACHINE)
	$(BIN)/asv continuous --config $(ASV_VENV) --machine $(BENCH_MACHINE) --factor 1.1 \
	  $(if $(BENCH_FILTER),--bench $(BENCH_FILTER)) $(BENCH_BASE) $(BENCH_HEAD)

clean:
	rm -rf build site *.egg-info .pytest_cache .hypothesis .ruff_cache bench/results bench/html bench/env
	rm -f demo.duckdb demo.duckdb.wal compare.json
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
