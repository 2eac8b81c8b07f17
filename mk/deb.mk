# make deb: the Debian package svctl, built from a staging copy (docs/boot.md, "Building and checking the package").
# The work tree stays clean: packaging/debian becomes debian/ in build/deb/svctl-VERSION/, and the
# .deb, .changes and .buildinfo land in build/deb/. Build dependencies are installed with apt-get
# when missing (that needs root, as in CI).

DEB_DIR := build/deb
DEB_VERSION = $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version)
DEB_SRC = $(DEB_DIR)/svctl-$(DEB_VERSION)
# Debian's python3 and tools only: with a venv or pyenv first on PATH, pybuild would run the
# tests with the wrong interpreter (docs/boot.md, "Building and checking the package").
DEB_ENV = env -u PYTHONPATH -u VIRTUAL_ENV -u PYTHONHOME PATH=/usr/sbin:/usr/bin:/sbin:/bin
APT_GET = DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y

.PHONY: deb deb-stage deb-clean

deb-stage:
	@code=$$(sed -n 's/^__version__ = "\(.*\)"/\1/p' supervisor/__init__.py); \
	if [ "$$code" != "$(DEB_VERSION)" ]; then \
		echo "packaging/debian/changelog says $(DEB_VERSION), supervisor/__init__.py says $$code: add a changelog entry" >&2; \
		exit 1; fi
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_SRC)
	tar -cf - --exclude=./build --exclude=./.git --exclude='./.venv*' --exclude='*.egg-info' \
		--exclude=__pycache__ --exclude=.hypothesis --exclude=.pytest_cache --exclude=./tests/artifacts \
		--exclude=node_modules --exclude=./.npm-prefix --exclude=./.cache --exclude=./.run --exclude=./benchmarks/results . \
		| tar -xf - -C $(DEB_SRC)
	mv $(DEB_SRC)/packaging/debian $(DEB_SRC)/debian

deb: deb-stage
	@if ! (cd $(DEB_SRC) && $(DEB_ENV) dpkg-checkbuilddeps >/dev/null 2>&1); then \
		if [ "$$(id -u)" != 0 ]; then \
			(cd $(DEB_SRC) && dpkg-checkbuilddeps) ; \
			echo "make deb: install the build dependencies above (as root: apt-get build-dep ./$(DEB_SRC))" >&2; \
			exit 1; fi; \
		$(APT_GET) update && $(APT_GET) --no-install-recommends build-dep ./$(DEB_SRC); \
	fi
	cd $(DEB_SRC) && $(DEB_ENV) dpkg-buildpackage -us -uc -b
	@ls -1 $(DEB_DIR)/*.deb

deb-clean:
	rm -rf $(DEB_DIR)
