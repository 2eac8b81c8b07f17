# make test-boot (issue 12): the Debian package under real init systems, booted with systemd-nspawn.
# Debian 12 and 13 roots (debootstrap minbase, cached in build/boot-roots/), each booted with sysvinit
# and with systemd as PID 1, then again with svctl removed; tests/boot/README.md says what is checked.
# Root only; installs debootstrap and systemd-container when missing; builds the .deb (make deb)
# when it is older than the sources. Logs and results.json in build/boot-logs/.
#   make test-boot BOOT_ARGS="--releases trixie --inits systemd"     one cell
#   make test-boot-clean                                            unmount leftovers, drop the cache
# Debian's python3 (stdlib only), never a venv's: the harness runs `make deb` itself.

BOOT_ENV = env -u PYTHONPATH -u VIRTUAL_ENV -u PYTHONHOME PATH=/usr/sbin:/usr/bin:/sbin:/bin
BOOT_ARGS ?=

.PHONY: test-boot test-boot-clean

test-boot:
	$(BOOT_ENV) python3 tests/boot/realboot.py $(BOOT_ARGS)

test-boot-clean:
	$(BOOT_ENV) python3 tests/boot/realboot.py --clean
