# blksnap-rs top-level targets. `make test` is what CI runs.
#
#   make            build blksnap.ko (and the test kernel once, if needed)
#   make setup      install the toolchain and build the test kernel (cached)
#   make test       host checks, then the in-VM tests; one summary line
#   make vm         a shell in the test VM with the module loaded
#   make check      the host checks alone
#   make bench      benchmarks in the VM, printed as ratios to a baseline
#   make demo       the snapshot and change-tracking story, end to end, in
#                   the VM (scripts/demo.sh); fails if any of its checks do
#   make install    install the module, the CLI, the uAPI headers, the man
#                   page and the shell completions (cli/install.sh); honours
#                   DESTDIR and PREFIX (default /usr)
#   make uninstall  remove what make install installed
#   make deb        the Debian packages blksnap-dkms (the module's sources,
#                   built by DKMS) and blksnap (the CLI, man page,
#                   completions, uAPI headers) in build/deb (scripts/deb.sh)
#   make dkms-install    register the module with DKMS (scripts/dkms.sh), which
#                   builds and installs it for the running kernel and each
#                   kernel installed later; make dkms-uninstall undoes it
#   make clean
#
# KDIR=/path/to/kernel/build builds against another Rust-enabled kernel and
# skips the test kernel. DEBUG=1 selects the debug kernel flavor (lockdep,
# kmemleak, KFENCE, debug objects). KERNELS="6.12 debian-7.3" (the default:
# every supported kernel) picks the kernels `make setup` makes and `make
# test` tests, each in turn (6.12: the
# test kernel built here; debian-7.3: Debian's stock kernel, as
# scripts/kernels/debian-7.3.conf pins it); BLKSNAP_KERNEL=NAME builds the
# module (make, make vm) for one of them.

SHELL := /bin/bash
export KDIR DEBUG KERNELS BLKSNAP_KERNEL

.PHONY: all module setup test check vm bench clean

all: module

setup:
	@scripts/setup.sh

module: $(if $(KDIR),,setup)
	@scripts/module.sh

test: setup
	@scripts/test.sh

check: setup
	@scripts/test.sh --host-only

vm: module
	@scripts/vm.sh shell

bench: module
	@bench/run.sh

.PHONY: demo
demo: module
	@scripts/demo.sh

.PHONY: install uninstall dkms-install dkms-uninstall

install: module
	@DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' cli/install.sh install

uninstall:
	@DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' cli/install.sh uninstall

.PHONY: deb
deb:
	@scripts/deb.sh

dkms-install:
	@scripts/dkms.sh install

dkms-uninstall:
	@scripts/dkms.sh uninstall

clean:
	@source scripts/lib.sh; [ -d "$${KDIR:-$$(kernel_dir)}" ] && module_make clean >/dev/null || true
	cargo clean
