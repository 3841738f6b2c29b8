# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed

.PHONY: run test install bench clean

run: $(DEPS)
	$(PY) -m launcher

test: $(DEPS)
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(DEPS)

# The virtualenv; Debian ships venv separately, so install it when missing (we run as root there).
$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv missing; installing it with apt-get"; \
	  rm -rf $(VENV); apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip

# Reinstall only when the pinned requirements change.
$(DEPS): requirements.txt requirements-dev.txt | $(PY)
	@echo "installing pinned requirements into $(VENV) (first time takes a few minutes)"
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $(DEPS)

bench: $(DEPS)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) instance .pytest_cache
