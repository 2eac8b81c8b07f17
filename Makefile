# svctl: `make run` supervises JupyterHub on https://[::1]:9443; `make test` installs and runs the suite.
VENV ?= .venv
PY = $(VENV)/bin/python
PIP = $(VENV)/bin/pip
PYTHON3 ?= python3
PYTEST_ARGS ?=
INSSERV_ROOT ?= .cache/insserv

.PHONY: venv test test-unit test-floor lint run clean
.DEFAULT_GOAL := help

help:
	@echo "make run    supervise JupyterHub on https://[::1]:9443 (installs everything into .venv)"
	@echo "make test   install and run the whole test suite"
	@echo "make lint   static checks"
	@echo "make bench  benchmarks against supervisord and start-stop-daemon"
	@echo "make deb    build the Debian package"
	@echo "make test-boot  the package under real sysvinit and systemd boots (root; systemd-nspawn)"

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]' --config-settings editable_mode=compat  # a plain path entry: no import-hook cost at every svctl start
	touch $@

venv: $(VENV)/.installed

# The whole suite, end-to-end JupyterHub tests included (they need jupyterhub and the proxy installed).
test: venv jupyterhub-deps $(INSSERV_ROOT)/sbin/insserv
	SVCTL_INSSERV_ROOT=$(abspath $(INSSERV_ROOT)) $(PY) -m pytest -q -rs $(PYTEST_ARGS)  # -rs: CI runs as root and must show why anything skipped

# insserv, for the test that shows `requires` ordering the rc links: unpacked from Debian's package
# (apt-get download, dpkg -x) and used only inside the test's private mount namespace. Installed
# system-wide it would change how update-rc.d numbers every script on this machine.
$(INSSERV_ROOT)/sbin/insserv:
	rm -rf $(INSSERV_ROOT) && mkdir -p $(INSSERV_ROOT)/deb
	cd $(INSSERV_ROOT)/deb && apt-get -o APT::Sandbox::User=root download -q insserv >/dev/null
	dpkg -x $(INSSERV_ROOT)/deb/insserv_*.deb $(INSSERV_ROOT)

test-unit: venv
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# The suite against Debian 12's own library versions (the floors in setup.cfg).
test-floor: $(INSSERV_ROOT)/sbin/insserv
	$(PYTHON3) -m venv .venv-floor
	.venv-floor/bin/pip install -q --upgrade pip
	.venv-floor/bin/pip install -q -c constraints-floor.txt psutil python-daemon lockfile watchdog structlog \
		'pytest>=7' 'hypothesis>=6' 'cryptography>=38'
	.venv-floor/bin/pip install -q --no-deps -e . --config-settings editable_mode=compat
	SVCTL_INSSERV_ROOT=$(abspath $(INSSERV_ROOT)) .venv-floor/bin/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(PIP) install -q ruff
	$(VENV)/bin/ruff check --select E,F,W,B,UP --ignore E501,UP007 supervisor tests benchmarks
	$(PY) -m compileall -q supervisor

run: run-hub

clean:
	rm -rf build .run .venv-floor .venv-peer .npm-prefix .cache

-include mk/*.mk
