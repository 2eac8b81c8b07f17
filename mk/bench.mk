# Benchmarks (issue 7): svctl against supervisord, start-stop-daemon and a Python floor.
# Included by the top-level Makefile, which defines VENV, PY and the `venv` target.
#   make bench        full suite, < 10 min on 2 cores; results in benchmarks/results/
#   make bench-quick  fewer trials and a 5 s idle window, < 2 min (CI)
# The peer (PyPI `supervisor` 4.x, import name `supervisor` like ours) lives in its own venv so it
# never shadows svctl's package. start-stop-daemon and /lib/lsb/init-functions come from the system.

PEER_VENV ?= .venv-peer
BENCH_PYTHON ?= $(or $(PYTHON3),python3)
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-deps

$(PEER_VENV)/bin/supervisord:
	$(BENCH_PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet 'supervisor>=4,<5'

bench-deps: venv $(PEER_VENV)/bin/supervisord
	@$(PY) -c 'import matplotlib' 2>/dev/null || $(VENV)/bin/pip install --quiet 'matplotlib>=3.6'

bench: bench-deps
	VENV=$(VENV) PEER_VENV=$(PEER_VENV) $(PY) benchmarks/run.py $(BENCH_ARGS)

bench-quick: bench-deps
	VENV=$(VENV) PEER_VENV=$(PEER_VENV) $(PY) benchmarks/run.py --quick $(BENCH_ARGS)
