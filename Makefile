# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Reinstall when the project's or the test plugins' metadata changes.
INSTALL_STAMP := $(VENV)/.deployflow-installed
TEST_PLUGINS := tests/plugins/deployflow-test-plugins
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(INSTALL_STAMP): pyproject.toml $(wildcard $(TEST_PLUGINS)/pyproject.toml) | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	@if [ -f $(TEST_PLUGINS)/pyproject.toml ]; then $(PIP) install --quiet -e $(TEST_PLUGINS); fi
	@touch $@

install: $(INSTALL_STAMP)

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_import.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
