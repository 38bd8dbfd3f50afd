# vpn-appliance: `make run` and `make test` each do all the setup they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
APT_PKGS := openvpn iperf3 iproute2 iputils-ping procps kmod tcpdump nftables \
            qemu-system-x86 qemu-utils dnsmasq-base zstd cpio busybox-static systemd dbus-daemon \
            isc-dhcp-client
RESOLVED_DIR := build/systemd-resolved
# The disk image and config volume (FAT without mounting; BIOS boot loader installer; UEFI firmware
# for the tests; virt-xml-validate for the libvirt domain XML: libvirt-clients is ~8 MB with its libs, and its xmllint).
APT_PKGS += dosfstools mtools syslinux ovmf libvirt-clients libxml2-utils
# tests/vm/test_libvirt.py boots that XML under a private libvirtd: the daemon and its QEMU driver
# (~4.6 MB installed with dmidecode and libparted2; not libvirt-daemon-system: the test needs no system
# service, libvirt-qemu user or default network; lab/libvirt.py says what it sets up instead).
APT_PKGS += libvirt-daemon libvirt-daemon-driver-qemu
APT_PKGS += squashfs-tools binutils   # image/build.py: /ro.sqfs, strip (issue 10 part 6/7)
# image/kernel.py: the VM's kernel, compiled from Debian's linux-source (downloaded by the build)
APT_PKGS += gcc make libc6-dev flex bison bc libelf-dev xz-utils
# setup.py: the data path's C modules (appliance/native/) -- gcc (above), Python's and OpenSSL's headers
APT_PKGS += python3-dev libssl-dev
APT_PKGS += liblzo2-dev   # python-lzo (pyproject.toml) builds against it: comp-lzo / compress lzo decompression
APT_PKGS += tinyproxy   # tests/interop/test_http_proxy_vs_openvpn.py: the HTTP proxy between client and server
APT_PKGS += microsocks  # tests/interop/test_socks_proxy_vs_openvpn.py: the SOCKS5 proxy between client and server
DURATION ?= 0
PYTEST_ARGS ?=

.PHONY: setup system-deps test test-unit test-engine test-interop test-vm run run-host bench bench-engine image clean fuzz capacity first-packet startup-time

# `make test` (the whole suite) and `make run` need the VM kernel, whose compile (image/kernel.py, ~8-13
# min on 2 cores) is the long pole of a fresh clone's `make test`: it starts in the background as soon
# as the system packages are in, while the venv is made (`image/build.py --kernel-only`, system
# Python, log in image/out/kernel-early.log). The image build waits for it and takes the kernel from
# the cache; if it failed, the image build compiles again and reports the error itself. Ctrl-C of
# `make test` does not stop it (a background job of make's shell ignores SIGINT): it runs to its end
# and leaves the kernel in the cache for the next run.
# `make setup KERNEL_EARLY=1` (what .ci/run does before its `make test`) starts it too.
EARLY_KERNEL := $(if $(or $(KERNEL_EARLY),$(filter test run,$(MAKECMDGOALS))),$(if $(strip $(PYTEST_ARGS)),,kernel-early))

setup: system-deps $(EARLY_KERNEL) $(VENV)/.installed $(RESOLVED_DIR)/.unpacked

.PHONY: kernel-early
kernel-early: system-deps
	@mkdir -p image/out && echo "kernel: compiling in the background (log: image/out/kernel-early.log)" && \
	  { nohup python3 image/build.py --kernel-only >> image/out/kernel-early.log 2>&1 < /dev/null & }

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The real systemd-resolved and resolvectl for tests/interop/test_host_dns.py, unpacked from Debian's
# package (the version of the installed systemd) and never installed: its postinst would rewrite
# the host's /etc/resolv.conf. The test runs it in a private namespace with a private D-Bus.
$(RESOLVED_DIR)/.unpacked:
	rm -rf $(RESOLVED_DIR) && mkdir -p $(RESOLVED_DIR)
	cd $(RESOLVED_DIR) && v=$$(dpkg-query -W -f='$${Version}' systemd) && \
	  { apt-get download -qq systemd-resolved=$$v 2>/dev/null || { apt-get update -qq && apt-get download -qq systemd-resolved=$$v; }; } && \
	  dpkg-deb -x systemd-resolved_*.deb root && rm -f systemd-resolved_*.deb
	touch $@

$(VENV)/.installed: pyproject.toml setup.py $(wildcard appliance/native/*.c appliance/native/*.h)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The suite in two runs side by side: the VM tests (tests/vm) in VM_WORKERS pytest-xdist workers
# -- they share the kernel compile and the build cache in image/out (image/build.py locks them), each
# file its own namespaces, TAPs and private libvirtd -- and everything else in PYTEST_WORKERS
# workers beside it (most of that time is waiting on namespaces and peers: 872 CPU-s in 1,535
# wall-s with two workers, 0.57 of a core; three brought that half from 23:41 to 18:31 in a
# fresh-clone CI on 2026-12-03). The VM half is the long pole: the kernel's compile, then ~700 s of
# TCG guests, one at a time until 2026-12-03 (one core idle once the other half was done), two at a
# time since. A file stays on one worker, in order, as its module-scoped labs expect; the longest
# files first (tests/conftest.py LONG_FILES, hence --no-loadscope-reorder: xdist's own order is by
# number of tests). The VM run's output is printed when both are done, each with its slowest tests
# (CI's wall time is held under 25 min). With PYTEST_ARGS (a selection) or PYTEST_WORKERS=0: one
# serial run.
PYTEST_WORKERS ?= 3
VM_WORKERS ?= 2
XDIST := --dist loadfile --no-loadscope-reorder
test: setup
	@if [ -n "$(strip $(PYTEST_ARGS))" ] || [ "$(PYTEST_WORKERS)" = 0 ]; then \
	  exec $(BIN)/pytest -q -p no:xdist $(PYTEST_ARGS); fi; \
	log=$$(mktemp /tmp/vm-tests.XXXXXX); \
	$(BIN)/pytest -q -n $(VM_WORKERS) $(XDIST) --durations=8 tests/vm > $$log 2>&1 & vm=$$!; \
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) $(XDIST) --durations=15 --ignore=tests/vm; rest=$$?; \
	wait $$vm; vmrc=$$?; echo "== the VM tests (tests/vm), run beside the above:"; cat $$log; rm -f $$log; \
	echo "== exit status: tests/vm $$vmrc, the rest $$rest"; [ $$rest = 0 ] && [ $$vmrc = 0 ]

# The pure tests: no root, namespaces, openvpn or QEMU (see the markers in pyproject.toml).
PURE := -m "not root and not netns and not openvpn and not qemu"
test-unit: setup
	$(BIN)/pytest -q $(PURE) tests/unit tests/engine $(wildcard tests/gateway) $(PYTEST_ARGS)

test-interop: setup
	$(BIN)/pytest -q tests/interop $(PYTEST_ARGS)

test-vm: setup
	$(BIN)/pytest -q tests/vm $(PYTEST_ARGS)

run: setup image-if-needed
	$(PY) -m lab.demo_vm --duration $(DURATION)

run-host: setup
	$(PY) -m lab.demo_host --duration $(DURATION)

image-if-needed:
	$(PY) image/build.py   # skips itself when the inputs are unchanged

bench: setup
	$(BIN)/vpn-appliance bench
	$(PY) -m lab.bench_tunnel
	$(PY) -m lab.bench_tunnel --only client --layout server-alone
	$(PY) -m lab.bench_tunnel --reverse
	$(PY) -m lab.bench_tunnel --proto tcp --only server
	$(PY) -m lab.bench_tunnel --proto tcp --only server --reverse
	$(PY) -m lab.bench_tunnel --dev tap --rounds 2
	$(PY) -m lab.bench_tunnel --dev tap --rounds 2 --reverse

# Server capacity, ours vs Debian's OpenVPN in the same run (lab/capacity.py): CLIENTS sessions from one
# load-generator process (lab/loadgen.py), handshake rate and CPU, RSS, first-packet time per protection.
CLIENTS ?= 1000
REPEAT ?= 1
capacity: setup
	$(PY) -m lab.capacity --clients $(CLIENTS) --repeat $(REPEAT)

# Client start to first UDP echo through the tunnel, per control-channel protection, ours vs
# OpenVPN's, interleaved (lab/first_packet.py); ROUNDS per pair.
ROUNDS ?= 5
first-packet: setup
	$(PY) -m lab.first_packet --rounds $(ROUNDS)

# exec -> ready of a server (its answer to a hard reset) and a client (its first ping through),
# ours beside Debian's OpenVPN, interleaved, with each one's CPU to that moment (lab/startup_time.py).
startup-time: setup
	$(PY) -m lab.startup_time --rounds $(ROUNDS)

# Coverage-guided fuzzing of every decoder of peer bytes and both config parsers (tests/fuzz/run.py):
# DURATION seconds in all (default 600), split across the targets, one process at a time.
fuzz: setup
	PYTHONPATH=. $(PY) -m tests.fuzz.run --duration $(if $(filter-out 0,$(DURATION)),$(DURATION),600) \
	  $(if $(FUZZ_TARGETS),--targets $(FUZZ_TARGETS),)

image: setup
	$(PY) image/build.py $(if $(CONFIG),--config $(CONFIG),)

# A config volume (FAT, label VPNCONFIG) for the disk image: `make config-disk CONFIG=appliance.toml`
# writes image/out/config.img (attach it as the VM's second disk; see README "Deploying the disk image").
.PHONY: config-disk
config-disk: setup
	$(BIN)/vpn-appliance config-disk $(CONFIG) -o $(or $(CONFIG_DISK),image/out/config.img)

clean:
	rm -rf $(VENV) image/out .pytest_cache

# Reliability runs (issue 8, lab/reliability/): network faults, floods, restart and recovery; they
# print figures. `make soak DURATION=30` churns 20 clients for DURATION minutes (30 when unset).
.PHONY: reliability soak
reliability: setup
	$(PY) -m lab.reliability.faults
	$(PY) -m lab.reliability.flood
	$(PY) -m lab.reliability.recovery --server both

soak: setup
	$(PY) -m lab.reliability.soak --minutes $(if $(filter 0,$(DURATION)),30,$(DURATION))
