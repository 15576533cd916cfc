# tickbus: the Makefile is the single entry point; CI runs the same targets a person runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 20
DEMO_RATE ?= 2000

.PHONY: venv demo demo-regression test test-fast bench soak lint check clean install

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo --seconds $(DEMO_SECONDS) --rate $(DEMO_RATE)

demo-regression: $(STAMP)
	$(PY) -m examples.demo_regression

# killed by a signal (a libzmq assertion aborts the process), pytest cannot say which test ran: this does
test: $(STAMP)
	bash tests/ensure_system_deps.sh
	@rm -f $(VENV)/test-current
	TICKBUS_TEST_CURRENT=$(VENV)/test-current $(PY) -m pytest -q tests || { rc=$$?; if [ $$rc -gt 128 ]; then \
	  echo "make test: pytest was killed by signal $$(kill -l $$rc) while running $$(cat $(VENV)/test-current 2>/dev/null || echo 'no test yet')"; \
	  fi; exit $$rc; }

test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not slow' tests

bench: $(STAMP)
	bash bench/ensure_peers.sh
	$(PY) -m bench.run --json bench/results.json
	$(PY) -m bench._tracing_cost
	$(PY) -m bench._ask
	$(PY) -m bench._collector_overhead

# 1 hour at 10k msgs/s through four actors (not part of `make test`); SOAK_MINUTES=10 for a short run
SOAK_MINUTES ?= 60
soak: $(STAMP)
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

lint: $(STAMP)
	$(VENV)/bin/ruff check tickbus actors broker observability tests bench examples
	$(VENV)/bin/ruff format --check tickbus actors broker observability
	$(VENV)/bin/lint-imports

check: $(STAMP)
	$(VENV)/bin/mypy

# systemd units, configs and env files (deploy/README.md); PREFIX=/srv/stage stages them elsewhere
PREFIX ?= /
install: $(STAMP)
	$(VENV)/bin/tickbus deploy install --prefix $(PREFIX) --bin-dir $(abspath $(VENV))/bin

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/results.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
