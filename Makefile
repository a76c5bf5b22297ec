# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
# `make install` installs the core alone (remote targets and the CLI, no extras).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet --quiet --disable-pip-version-check
TEST_PLUGINS := tests/plugins/deployflow-test-plugins
# Reinstall when the project's or the test plugins' metadata changes. A stamp per install: the core
# alone (`pip install deployflow`), the demo's extras, the tests' extras; a bigger install touches the
# stamps of the smaller ones it contains.
CORE_STAMP := $(VENV)/.deployflow-core
DEMO_STAMP := $(VENV)/.deployflow-demo
TEST_STAMP := $(VENV)/.deployflow-test
PYTEST := $(PY) -m pytest
PYTEST_ARGS ?= --durations=15
# The core suite runs in this many pytest-xdist workers, each test file whole in one worker (its module
# fixtures, such as the model zoo, are built once). Its tests mostly wait on server processes.
CORE_WORKERS ?= 2

.PHONY: install install-demo install-test demo test test-core test-prefect test-airflow bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(CORE_STAMP): pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

# The demo (and the benchmarks) serve a model with the local target and score a file in batch.
$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PIP) install -e '.[local,batch]'
	@touch $@ $(CORE_STAMP)

# The tests need every extra (Airflow and Prefect share this environment: pip picks a Prefect 3 release
# that Airflow 3 accepts) plus the test plugin package that registers entry-point targets.
$(TEST_STAMP): pyproject.toml $(TEST_PLUGINS)/pyproject.toml | $(PY)
	$(PIP) install -e '.[dev,all,local,batch]' -e $(TEST_PLUGINS)
	@touch $@ $(DEMO_STAMP) $(CORE_STAMP)

install: $(CORE_STAMP)

install-demo: $(DEMO_STAMP)

install-test: $(TEST_STAMP)

demo: install-demo
	$(PY) examples/demo.py

# The side venvs of the real peers some tests compare with (tests/support/peers.py: MLflow, MLServer,
# tritonclient) build in the background while the core suite starts; a test that needs one waits for
# that build (a file lock) instead of starting its own, so a fresh clone does not pay for them in a test.
# Airflow and Prefect each configure process-wide state (logging, a metadata database, a test server),
# so each integration runs in its own pytest process, without xdist. Those two run side by side (both
# mostly wait on servers and subprocesses, whose ports the OS picks); Prefect's report is printed after
# Airflow's.
test: install-test
	@mkdir -p .venv-peers
	@$(PY) tests/support/peers.py >.venv-peers/prebuild.log 2>&1 & peers=$$!; \
	trap 'kill $$peers 2>/dev/null' INT TERM; \
	$(PYTEST) tests --ignore=tests/airflow --ignore=tests/prefect -n $(CORE_WORKERS) --dist loadfile $(PYTEST_ARGS); status=$$?; \
	wait $$peers; exit $$status
	@$(PYTEST) tests/prefect $(PYTEST_ARGS) > $(VENV)/prefect-tests.log 2>&1 & prefect=$$!; \
	$(PYTEST) tests/airflow $(PYTEST_ARGS); airflow=$$?; \
	wait $$prefect; prefect_status=$$?; \
	echo "----- tests/prefect (ran beside tests/airflow) -----"; cat $(VENV)/prefect-tests.log; \
	test $$airflow -eq 0 && test $$prefect_status -eq 0

bench: install-demo
	$(PY) benchmarks/bench_import.py
	$(PY) benchmarks/bench_batch.py --no-memory

clean:
	rm -rf $(VENV) .venv-peers build *.egg-info .pytest_cache demo-output
