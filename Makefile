# Postel - two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
INSTANCE ?= .postel

.PHONY: run test lint venv peers bench faults clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test,fast]'
	$(PY) -m compileall -q src
	touch $(STAMP)

venv: $(STAMP)

# Runs a real instance in the foreground: config and queue under ./.postel,
# SMTP on 127.0.0.1:2525, local mail to Maildir, logs on stdout.
run: $(STAMP)
	@test -f $(INSTANCE)/main.cf || $(VENV)/bin/postel init $(INSTANCE)
	$(VENV)/bin/postel -c $(INSTANCE) start-fg

# Installs the real peers when we are root (Debian packages), then the suite.
peers:
	@if [ "$$(id -u)" = 0 ]; then bash tests/peers/install.sh; \
	else echo "make: not root; skipping peer installation (tests needing peers will skip)"; fi

test: $(STAMP) peers
	@$(PY) -m compileall -q src >/dev/null  # each daemon start reads bytecode, not source
	$(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP) peers
	$(PY) bench/run.py $(if $(QUICK),--quick,)

# The crash/fault harness alone, full size: 20 kill -9 trials of 2000 messages
# (the default test run has 3 of 500).  FAULT_SEED=N repeats a run.
FAULT_TRIALS   ?= 20
FAULT_MESSAGES ?= 2000
faults: $(STAMP) peers
	POSTEL_FAULT_TRIALS=$(FAULT_TRIALS) POSTEL_FAULT_MESSAGES=$(FAULT_MESSAGES) \
	POSTEL_FAULT_SEED=$(FAULT_SEED) $(PY) -m pytest -q tests/e2e -m faults

clean:
	rm -rf $(VENV) build *.egg-info
