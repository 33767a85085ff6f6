# fixup: setup, lab and test entry points.  GNU make, run as root on Debian 12.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.stamp-installed
PYTEST_ARGS ?=

# The eBPF GRE path (issue 13): compiled once here, loaded by the daemon (no compiler at run time).
BPF_OBJECT := fixup/io/pat/fixup_gre.bpf.o
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu
BENCH_ARGS ?=

# clang, llvm and libbpf-dev compile the eBPF GRE path (bpf/); libbpf1 loads it at run time.
# The interop tier needs the two lines before: a Debian kernel with PPP for virtme-ng to boot under
# qemu (TCG), real pppd/pptp-linux/pptpd, busybox-static (vng's initramfs), and FreeRADIUS.
APT_PACKAGES := python3 python3-venv python3-dev gcc make libnetfilter-queue-dev \
	libnfnetlink-dev nftables iptables iproute2 kmod netsniff-ng \
	linux-image-amd64 qemu-system-x86 ppp pptp-linux pptpd busybox-static \
	freeradius freeradius-utils clang llvm libbpf-dev libbpf1

.PHONY: help setup packages lab bench test unit netns hostile interop fuzz install uninstall clean

help:
	@echo "make lab    live demo of the gateway in network namespaces"
	@echo "make bench  benchmark: plain routing, kernel PPTP helper, fixup kernel and queue paths"
	@echo "make test   the whole test suite (all tiers)"
	@echo "make unit   unit tests only (-m unit)"
	@echo "make netns  network-namespace tests only (-m netns, root)"
	@echo "make hostile  floods and malformed input against the real daemon (-m hostile, root)"
	@echo "make fuzz   mutated input into every pure entry point (FUZZ_INPUTS=10000000 for a full run)"
	@echo "make interop  VM interop tests against pppd/pptp-linux/pptpd only (-m interop, root)"
	@echo "make setup  Debian packages (if missing) and $(VENV)"
	@echo "make install  fixup in $(PREFIX), the systemd unit (enabled), /etc/fixup/policy.yaml if absent"
	@echo "make uninstall  the reverse (the policy and /var/lib/fixup stay)"
	@echo "make clean  remove $(VENV) and caches"

setup: packages $(STAMP) $(BPF_OBJECT)

$(BPF_OBJECT): bpf/fixup_gre.bpf.c | packages
	clang $(BPF_CFLAGS) -c $< -o $@

# apt-get only when a package is missing, so a ready machine needs no network.
packages:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  [[ "$$(dpkg -s "$$pkg" 2>/dev/null)" == *"Status: install ok installed"* ]] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "make setup: missing packages:$$missing (run as root)" >&2; exit 1; fi; \
	  echo "make setup: installing$$missing"; \
	  apt-get update; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

$(VENV)/bin/python: | packages
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | packages $(VENV)/bin/python
	PIP_DISABLE_PIP_VERSION_CHECK=1 $(VENV)/bin/pip install -e '.[test]'
	touch $@

lab: setup
	$(VENV)/bin/fixup lab

# trafgen comes with netsniff-ng; py-spy (optional) profiles the queue path when it misses its target.
bench: setup
	@[ -x $(VENV)/bin/py-spy ] || PIP_DISABLE_PIP_VERSION_CHECK=1 $(VENV)/bin/pip install -q py-spy \
	  || echo "make bench: py-spy not installed, the queue-path profile will only show the CPU split"
	$(VENV)/bin/fixup bench $(BENCH_ARGS)

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

netns: setup
	$(VENV)/bin/pytest -m netns $(PYTEST_ARGS)

# Mutated input into every pure entry point; FUZZ_INPUTS=10000000 for a full run.
FUZZ_INPUTS ?= 1000000
fuzz: setup
	$(VENV)/bin/fixup fuzz --inputs $(FUZZ_INPUTS)

hostile: setup
	$(VENV)/bin/pytest -m hostile $(PYTEST_ARGS)

# One VM boot (virtme-ng, qemu TCG) runs every scenario of tests/interop; see tests/interop/conftest.py.
interop: setup
	$(VENV)/bin/pytest -m interop $(PYTEST_ARGS)

PREFIX ?= /opt/fixup
UNIT_DIR ?= /etc/systemd/system

# A venv of its own under $(PREFIX), /usr/local/bin/fixup, the unit, and a commented policy that an
# existing one is never replaced by.  systemctl may not reach a running systemd (a container, a
# chroot): enabling then falls back to the symlink systemctl would make.
install: packages $(BPF_OBJECT)
	$(PYTHON) -m venv $(PREFIX)
	PIP_DISABLE_PIP_VERSION_CHECK=1 $(PREFIX)/bin/pip install -q .
	ln -sf $(PREFIX)/bin/fixup /usr/local/bin/fixup
	install -D -m 0644 systemd/fixup.service $(UNIT_DIR)/fixup.service
	install -d -m 0755 /etc/fixup
	[ -e /etc/fixup/policy.yaml ] || install -m 0600 systemd/policy.yaml /etc/fixup/policy.yaml
	systemctl daemon-reload 2>/dev/null || true
	systemctl enable fixup.service 2>/dev/null || { mkdir -p $(UNIT_DIR)/multi-user.target.wants && \
	  ln -sf $(UNIT_DIR)/fixup.service $(UNIT_DIR)/multi-user.target.wants/fixup.service; }
	@echo "installed: edit /etc/fixup/policy.yaml, then systemctl start fixup"

uninstall:
	systemctl disable --now fixup.service 2>/dev/null || rm -f $(UNIT_DIR)/multi-user.target.wants/fixup.service
	rm -f $(UNIT_DIR)/fixup.service /usr/local/bin/fixup
	systemctl daemon-reload 2>/dev/null || true
	rm -rf $(PREFIX)
	@echo "uninstalled (kept: /etc/fixup/policy.yaml, /var/lib/fixup)"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info $(BPF_OBJECT)
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
