# make run-hub (what `make run` does): JupyterHub on https://[::1]:9443, supervised in the foreground.
# No root needed: everything lives under .run/ (config, state, cert, PID file, logs), the proxy under
# .npm-prefix/. Ctrl-C stops the supervisor, which stops the hub, which stops its proxy.

RUN_PREFIX ?= .run
NPM_PREFIX ?= .npm-prefix
HUB_PORT ?= 9443
CHP = $(NPM_PREFIX)/node_modules/.bin/configurable-http-proxy
SVCTL_RUN = $(PY) -m supervisor --config-dir $(RUN_PREFIX)/etc/svctl --run-dir $(RUN_PREFIX)/run/svctl

.PHONY: jupyterhub-deps run-hub

jupyterhub-deps: venv
	@if $(PY) -c 'import jupyterhub, jupyter_server' 2>/dev/null; then \
		echo "jupyterhub: $$($(PY) -c 'import jupyterhub; print(jupyterhub.__version__)') already in $(VENV)"; \
	else \
		echo "installing jupyterhub and jupyter_server into $(VENV) (about a minute)..."; \
		$(PIP) install --progress-bar on 'jupyterhub>=5.3' 'jupyter_server>=2' || exit 1; \
	fi
	@if [ -x $(CHP) ]; then \
		echo "configurable-http-proxy: already in $(NPM_PREFIX)"; \
	else \
		command -v npm >/dev/null || { echo "npm is missing: apt-get install nodejs npm" >&2; exit 1; }; \
		echo "installing configurable-http-proxy into $(NPM_PREFIX) with npm..."; \
		npm install --no-fund --no-audit --prefix $(NPM_PREFIX) configurable-http-proxy || exit 1; \
	fi

run-hub: jupyterhub-deps
	@$(PY) -m supervisor init jupyterhub --prefix $(RUN_PREFIX) --ip ::1 --port $(HUB_PORT) --auth dummy --no-hints
	@echo "supervising JupyterHub on https://[::1]:$(HUB_PORT) (self-signed certificate; Ctrl-C stops it)"
	$(SVCTL_RUN) run jupyterhub
