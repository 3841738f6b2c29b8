# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_DEPS := $(VENV)/.run-deps-installed
DEPS := $(VENV)/.deps-installed

.PHONY: run test test-unit smoke runtime-imports chaos install system-deps bench clean
RUNTIME_IMPORTS_CHECK := ../shared/tools/check_runtime_imports.py

run: $(RUN_DEPS)
	$(PY) -m launcher

test: $(DEPS) system-deps runtime-imports
	@url=$$(bash scripts/test-services.sh) && DATABASE_URL="$$url" $(PY) -m pytest $(PYTEST_ARGS)

# The bottom rung alone: no PostgreSQL, Redis, broker or worker, in seconds (tests/unit).
test-unit: $(DEPS)
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# make run installs requirements.txt only: runtime code must import nothing else.
runtime-imports: $(DEPS)
	@if [ -f $(RUNTIME_IMPORTS_CHECK) ]; then $(PY) $(RUNTIME_IMPORTS_CHECK); \
	elif [ -n "$$CI" ]; then echo "$(RUNTIME_IMPORTS_CHECK) is missing"; exit 1; \
	else echo "note: $(RUNTIME_IMPORTS_CHECK) not found; runtime imports not checked"; fi

# `make run` from a clean clone of the committed tree, as a new user runs it (CI runs this).
smoke:
	$(PYTHON) scripts/smoke_make_run.py

# The full chaos run (CI runs a reduced one as part of make test).
chaos: $(DEPS)
	CHAOS_ORDERS=500 CHAOS_BATCHES=50 CHAOS_DURATION_S=120 $(PY) -m pytest -s tests/e2e/chaos

# Test-only tools from Debian: Chromium for the dashboard's browser test, promtool for the alert rules.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "make test needs:$$missing (run: sudo apt-get install$$missing)"; exit 1; fi; \
	fi

install: $(DEPS)

# The virtualenv; Debian ships venv separately, so install it when missing (we run as root there).
$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv missing; installing it with apt-get"; \
	  rm -rf $(VENV); apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip

# Reinstall only when the pinned requirements change (run: the service's; test: plus the tests').
$(RUN_DEPS): requirements.txt | $(PY)
	@echo "installing pinned requirements into $(VENV) (first time takes a few minutes)"
	$(PY) -m pip install -q -r requirements.txt
	@touch $(RUN_DEPS)

$(DEPS): requirements.txt requirements-dev.txt | $(PY)
	@echo "installing pinned requirements and test tools into $(VENV) (first time takes a few minutes)"
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $(DEPS) $(RUN_DEPS)

bench: $(DEPS)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) instance .pytest_cache
