# make demo  - the project's main job: the whole STIC pipeline on a tiny model, on CPU (creates .venv if missing)
# make test  - the whole test suite (creates .venv if missing)
# make test-fast - the tests not marked slow (pyproject.toml says what is): the inner loop
# make lint  - ruff's formatter check and linter, as CI runs them
PYTHON ?= python3
VENV := .venv
# Test processes: each test runs on one thread (tests/conftest.py), so one process per core
TEST_WORKERS ?= 2
PYTEST := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/install_vllm.sh
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev,eval]"
	bash scripts/install_vllm.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/stic-cli demo output_dir=demo_output

test: $(STAMP)
	bash scripts/ensure_browser.sh
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
