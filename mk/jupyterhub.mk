# make run-hub (what `make run` does): JupyterHub on https://[::1]:9443, supervised in the foreground.
# No root needed: everything lives under .run/ (config, state, cert, PID file, logs), the proxy under
# .npm-prefix/. Ctrl-C stops the supervisor, which stops the hub, which stops its proxy.
#
# Behind a proxy (the seed's IPv6-only host reaches the internet through http://[2001:db8::17]:3128):
# pip and npm take https_proxy / http_proxy / no_proxy from the environment, bracketed IPv6 literals
# included, so `https_proxy=http://[2001:db8::17]:3128 make run` installs through it. svctl's own
# readiness and health probes never use a proxy (they talk to loopback with http.client).

RUN_PREFIX ?= .run
NPM_PREFIX ?= .npm-prefix
HUB_PORT ?= 9443
CHP = $(NPM_PREFIX)/node_modules/.bin/configurable-http-proxy
SVCTL_RUN = $(PY) -m supervisor --config-dir $(RUN_PREFIX)/etc/svctl --run-dir $(RUN_PREFIX)/run/svctl
# notebook brings JupyterLab and ipykernel: what users land in after login (as the seed installs it).
HUB_PACKAGES = 'jupyterhub>=5.3' 'notebook>=7'

.PHONY: jupyterhub-deps run-hub

jupyterhub-deps: venv
	@if $(PY) -c 'import jupyterhub, notebook, ipykernel' 2>/dev/null; then \
		echo "jupyterhub: $$($(PY) -c 'import jupyterhub; print(jupyterhub.__version__)') and notebook already in $(VENV)"; \
	else \
		echo "installing jupyterhub and notebook (JupyterLab) into $(VENV) (about a minute)..."; \
		$(PIP) install --progress-bar on $(HUB_PACKAGES) || exit 1; \
	fi
	@if [ -x $(CHP) ]; then \
		echo "configurable-http-proxy: already in $(NPM_PREFIX)"; \
	else \
		command -v npm >/dev/null || { echo "npm is missing: apt-get install nodejs npm" >&2; exit 1; }; \
		echo "installing configurable-http-proxy into $(NPM_PREFIX) with npm..."; \
		npm install --no-fund --no-audit --prefix $(NPM_PREFIX) configurable-http-proxy || exit 1; \
	fi

# svctl runs in the background of this shell so that the shell can pass on what the terminal sends:
# Ctrl-C (INT), TERM and closing the terminal (HUP) each also become a TERM to svctl, which stops
# the hub; the shell then prints the last line. (svctl shares the terminal's process group, so it
# gets INT and HUP itself too: INT stops it anyway, HUP alone would only mean "reload"; and it sets
# its own SIGINT handler, so the background job's ignored SIGINT does not matter.) The trap is set
# before svctl starts, so no signal finds the shell without it. A background loop says when the
# hub is ready (`svctl status` shows it once /hub/health answers 200).
run-hub: jupyterhub-deps
	@if $(SVCTL_RUN) status jupyterhub >/dev/null 2>&1; then \
		echo "JupyterHub already runs under $(RUN_PREFIX) (another make run?); stop it there first" >&2; exit 1; fi
	@$(PY) -m supervisor init jupyterhub --prefix $(RUN_PREFIX) --ip ::1 --port $(HUB_PORT) --auth dummy --no-hints \
		--jupyterhub $(VENV)/bin/jupyterhub --proxy-command $(CHP) --stop-user-servers
	@echo "JupyterHub: https://[::1]:$(HUB_PORT)/ (self-signed certificate: the browser asks once)"
	@echo "logs: $(abspath $(RUN_PREFIX))/var/log/jupyterhub.log (svctl events: $(abspath $(RUN_PREFIX))/var/log/svctl/jupyterhub.json)"
	@echo "status from another shell: $(abspath $(PY)) -m supervisor --config-dir $(abspath $(RUN_PREFIX))/etc/svctl --run-dir $(abspath $(RUN_PREFIX))/run/svctl status jupyterhub"
	@echo "Ctrl-C stops the hub (its proxy and user servers stop with it)"
	@svctl=; trap '[ -n "$$svctl" ] && kill -TERM $$svctl 2>/dev/null' INT TERM HUP; \
		$(SVCTL_RUN) run jupyterhub & svctl=$$!; \
		( until $(SVCTL_RUN) status jupyterhub 2>/dev/null | grep -q 'readiness: *ready '; do \
			kill -0 $$svctl 2>/dev/null || exit 0; sleep 0.5; done; \
		  echo "JupyterHub is ready: open https://[::1]:$(HUB_PORT)/" ) & ready=$$!; \
		while :; do wait $$svctl; code=$$?; kill -0 $$svctl 2>/dev/null || break; done; \
		kill $$ready 2>/dev/null; \
		echo "JupyterHub stopped (svctl run exited $$code)"; exit $$code
