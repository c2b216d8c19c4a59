# Sotto: build, unit tests, and integration tests against the DNS lab (Lab/).
#
#   make demo      install the missing build libraries, build, run `sotto demo` (offline, no root)
#   make lab-demo  the NSD-lab walkthrough: traced lookups, serve + dig, state show (root)
#   make test      install missing tools, lint, build, unit tests, integration tests
#   make lint      swift format lint --strict (.swift-format); make format rewrites the tree
#   make build     swift build (debug)
#   make dot-test  only the opportunistic-DoT integration tests (captures with tcpdump)
#   make doq-test  only the opportunistic-DoQ integration tests (lab DoQ servers: aioquic + dnspython)
#   make tui-test  only the dashboard (tmux) and control socket (sotto ctl) integration tests
#   make fuzz      libFuzzer on the parsers (Fuzz/), FUZZ_SECONDS per target (default 60); fails on a crash
#   make test-sanitize  unit tests under ASan and TSan, integration tests against ASan- and TSan-built sotto
#   make release   the release binary, .build/release/sotto, with the Swift runtime linked in statically
#   make bench     benchmarks (release build) next to Unbound and PowerDNS Recursor (Benchmarks/bench.py)
#   make bench-smoke  one quick round of the cached and start-up benchmarks (not in make test or CI)
#   make screenshots  run the dashboard in tmux against the lab and render screenshots/*.png
#   make lab-up    start the NSD lab (root; 127.53.x.y:53 and ::1:53, DoT on some 127.53.x.y:853)
#   make lab-down  stop exactly the NSD processes the lab started
#   make clean     stop the lab, remove build products and Lab/run
#
# Plain recipes, each line run with bash -e -o pipefail.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := test

SWIFT     ?= swift
PYTHON    ?= python3
SOTTO_BIN ?= $(CURDIR)/.build/debug/sotto
BUILD_PKGS := libssl-dev libncurses-dev libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev
APT_PKGS  := nsd unbound bind9 dnsutils iproute2 procps python3 python3-pip python3-pytest tcpdump openssl libssl-dev libncurses-dev tmux \
             libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev
# PyPI packages for the lab's DoQ servers (Lab/doq_server.py); Debian 12 has no aioquic.
PIP_PKGS  := aioquic dnspython
SHOT_PKGS := python3-pyte python3-pil fonts-dejavu-core
CI        ?=
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.NOTPARALLEL:
.PHONY: release fuzz test-sanitize test-asan test-tsan integration-test-asan integration-test-tsan bench bench-smoke demo demo-deps lab-demo test deps pip-deps build build-tests unit-test integration-test dot-test doq-test tui-test screenshots lab-up lab-down lab-status clean lint format

test: deps lint build-tests unit-test integration-test

# True (in a recipe's loop over $$p) when package $$p is installed: "ii" in dpkg. A package removed
# with its configuration left counts as missing (`dpkg -s` succeeds for it). Recursive (=), so
# that the $$ survive to the recipe.
PKG_INSTALLED = dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null | grep -q '^ii'

# Install only what is missing; stop the distribution services that a
# fresh install starts, because they would take port 53 on 127.0.0.1 / ::1.
deps:
	@missing=""; \
	for p in $(APT_PKGS); do $(PKG_INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  for pkg_svc in nsd:nsd unbound:unbound bind9:named; do \
	    pkg=$${pkg_svc%%:*}; svc=$${pkg_svc##*:}; \
	    case " $$missing " in *" $$pkg "*) \
	      if command -v systemctl >/dev/null && systemctl is-active --quiet "$$svc" 2>/dev/null; then \
	        echo "stopping the $$svc service started by its package"; \
	        $(SUDO) systemctl stop "$$svc"; $(SUDO) systemctl disable "$$svc" || true; \
	      elif pidof "$$svc" >/dev/null && [ -x "/etc/init.d/$$svc" ]; then \
	        echo "stopping the $$svc service its package started without systemd"; \
	        $(SUDO) "/etc/init.d/$$svc" stop || true; \
	      fi;; \
	    esac; \
	  done; \
	fi
	@$(PYTHON) -c 'import pytest' 2>/dev/null || $(PYTHON) -m pip install pytest
	@$(PYTHON) -c 'import pytest; print("pytest", pytest.__version__, "for", __import__("sys").executable)'
	@$(MAKE) --no-print-directory pip-deps

# aioquic + dnspython for the python3 on PATH, only if missing.  A Debian system python is
# "externally managed" (PEP 668): then pip needs --break-system-packages (user site is not
# used by root's tests).  Outside CI a failed install only warns: the lab then runs without
# DoQ servers and the DoQ tests skip (under CI=true they fail).
pip-deps:
	@if $(PYTHON) -c 'import aioquic, dns.query, dns.zone' 2>/dev/null; then 	  $(PYTHON) -c 'import aioquic, dns.version; print("aioquic", aioquic.__version__, "dnspython", dns.version.version)'; 	else 	  echo "installing with pip for $$($(PYTHON) -c 'import sys; print(sys.executable)'): $(PIP_PKGS)"; 	  $(PYTHON) -m pip install $(PIP_PKGS) 	    || $(PYTHON) -m pip install --break-system-packages $(PIP_PKGS) 	    || { case "$(CI)" in 1|true|yes) echo "pip install $(PIP_PKGS) failed (CI)"; exit 1;; 	         *) echo "warning: pip install $(PIP_PKGS) failed: no DoQ servers in the lab, DoQ tests skip";; esac; }; 	fi

build:
	$(SWIFT) build

# The offline demo: only the build libraries are needed (no NSD, no root beyond installing them).
demo: demo-deps build
	$(SOTTO_BIN) demo

demo-deps:
	@missing=""; \
	for p in $(BUILD_PKGS); do $(PKG_INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The NSD-lab walkthrough (root, NSD): traced lookups, serve + dig, state show.
lab-demo: deps build
	SOTTO_BIN="$(SOTTO_BIN)" Lab/demo.sh

# swift format style (.swift-format: the defaults with 120-column lines); `make format` fixes.
lint:
	$(SWIFT) format lint --strict --recursive --parallel Sources Tests Fuzz Package.swift

format:
	$(SWIFT) format format --in-place --recursive --parallel Sources Tests Fuzz Package.swift

build-tests:
	$(SWIFT) build --build-tests

unit-test: build-tests
	$(SWIFT) test --skip-build

integration-test:
	SOTTO_BIN="$(SOTTO_BIN)" $(PYTHON) -m pytest -v --durations=25 Tests/Integration

dot-test:
	SOTTO_BIN="$(SOTTO_BIN)" $(PYTHON) -m pytest -v Tests/Integration/test_lab_dot.py Tests/Integration/test_dot.py

doq-test:
	SOTTO_BIN="$(SOTTO_BIN)" $(PYTHON) -m pytest -v Tests/Integration/test_lab_doq.py Tests/Integration/test_doq.py

tui-test:
	SOTTO_BIN="$(SOTTO_BIN)" $(PYTHON) -m pytest -v Tests/Integration/test_tui.py Tests/Integration/test_ctl.py

# Screenshots need pyte and Pillow (Debian packages, else pip) and DejaVu Sans Mono.
screenshots: demo-deps build
	@missing=""; \
	for p in $(SHOT_PKGS); do $(PKG_INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing || true; \
	fi
	@# Debian's python3-pyte/-pil serve only Debian's python3; another $(PYTHON) gets them from pip.
	@$(PYTHON) -c 'import pyte, PIL' 2>/dev/null || $(PYTHON) -m pip install pyte pillow
	SOTTO_BIN="$(SOTTO_BIN)" $(PYTHON) scripts/screenshots.py screenshots

# Builds one libFuzzer binary from the parser sources (plain swiftc, .build-fuzz/) and runs each
# target for FUZZ_SECONDS against the seeds in Fuzz/corpus/.
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
fuzz:
	FUZZ_SECONDS="$(FUZZ_SECONDS)" FUZZ_JOBS="$(FUZZ_JOBS)" Fuzz/fuzz.sh

# Unit tests under AddressSanitizer (with LeakSanitizer) and ThreadSanitizer, each in its own
# scratch path, then the integration suite against the ASan-built and the TSan-built sotto. Not
# part of `make test`; CI runs all of it after `make test` (.ci/run). LAB_LOCK prefixes the lab run (on a shared machine:
# LAB_LOCK="flock /tmp/sotto-lab.lock"). Tests/Sanitizers/ holds the suppressions, each explained
# (third-party code only). SAN_TIMEOUT bounds each test run: a test process killed by a sanitizer
# can leave helper servers (nsd, openssl s_server) holding swift-test's output pipe.
# The ASan integration run checks that SOTTO_BIN really is instrumented (__asan_init) and writes
# every sotto process's ASan/LSan report to .build-asan/reports/ (log_path): a report from a
# `sotto serve` that a test only stopped with SIGTERM would otherwise go unseen; any report fails it.
# The TSan integration run does the same with __tsan_init and .build-tsan/reports/. It uses
# halt_on_error=0: a race is reported and the process goes on, so one (long) run collects every
# race instead of the first, and the test that met it is not turned into a crash elsewhere; the
# reports in log_path fail the target all the same. exitcode=0: TSan would otherwise end every
# process that reported a race with status 66, and the tests would fail on that exit status
# (e.g. `sotto lookup` exits 0/2) instead of on what they check; the reports still fail the target.
# ASAN_/TSAN_TIME_SCALE and _MEMORY_SCALE become the tests' SOTTO_TIME_SCALE / SOTTO_MEMORY_SCALE
# (Tests/Integration/harness.py): waiting budgets and VmHWM bounds grow in sanitizer runs only.
SAN_DIR     := $(CURDIR)/Tests/Sanitizers
SAN_TIMEOUT ?= 1800
ASAN_OPTS   := detect_leaks=1
ASAN_ENV    := ASAN_OPTIONS=$(ASAN_OPTS) LSAN_OPTIONS=suppressions=$(SAN_DIR)/lsan.supp:print_suppressions=0
TSAN_ENV    := TSAN_OPTIONS=halt_on_error=1:suppressions=$(SAN_DIR)/tsan.supp
ASAN_BIN    := $(CURDIR)/.build-asan/debug/sotto
ASAN_REPORTS := $(CURDIR)/.build-asan/reports
LAB_LOCK    ?=
ASAN_PYTEST_ARGS ?=
TSAN_BIN    := $(CURDIR)/.build-tsan/debug/sotto
TSAN_REPORTS := $(CURDIR)/.build-tsan/reports
TSAN_PYTEST_ARGS ?=
ASAN_TIME_SCALE ?= 3
ASAN_MEMORY_SCALE ?= 3
TSAN_TIME_SCALE ?= 6
TSAN_MEMORY_SCALE ?= 8
test-sanitize: deps test-asan test-tsan integration-test-asan integration-test-tsan

test-asan:
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	$(ASAN_ENV) timeout -k 30 $(SAN_TIMEOUT) $(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan

test-tsan:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	$(TSAN_ENV) timeout -k 30 $(SAN_TIMEOUT) $(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan

integration-test-asan:
	$(SWIFT) build --sanitize=address --scratch-path .build-asan --product sotto
	@nm "$(ASAN_BIN)" | grep ' T __asan_init$$' >/dev/null \
	  || { echo "$(ASAN_BIN) is not built with AddressSanitizer"; exit 1; }
	rm -rf "$(ASAN_REPORTS)" && mkdir -p "$(ASAN_REPORTS)"
	rc=0; $(LAB_LOCK) env ASAN_OPTIONS=$(ASAN_OPTS):log_path=$(ASAN_REPORTS)/asan LSAN_OPTIONS=suppressions=$(SAN_DIR)/lsan.supp:print_suppressions=0 \
	  SOTTO_TIME_SCALE=$(ASAN_TIME_SCALE) SOTTO_MEMORY_SCALE=$(ASAN_MEMORY_SCALE) SOTTO_BIN="$(ASAN_BIN)" timeout -k 30 $(SAN_TIMEOUT) $(PYTHON) -m pytest -v --durations=25 $(ASAN_PYTEST_ARGS) Tests/Integration || rc=$$?; \
	if compgen -G "$(ASAN_REPORTS)/asan.*" >/dev/null; then \
	  for f in "$(ASAN_REPORTS)"/asan.*; do echo "=== $$f"; cat "$$f"; done; \
	  echo "AddressSanitizer/LeakSanitizer reports from sotto: see above"; exit 1; \
	else echo "no ASan/LSan report from any sotto process"; fi; \
	exit $$rc

integration-test-tsan:
	$(SWIFT) build --sanitize=thread --scratch-path .build-tsan --product sotto
	@nm "$(TSAN_BIN)" | grep ' T __tsan_init$$' >/dev/null \
	  || { echo "$(TSAN_BIN) is not built with ThreadSanitizer"; exit 1; }
	rm -rf "$(TSAN_REPORTS)" && mkdir -p "$(TSAN_REPORTS)"
	rc=0; $(LAB_LOCK) env TSAN_OPTIONS=halt_on_error=0:exitcode=0:log_path=$(TSAN_REPORTS)/tsan:suppressions=$(SAN_DIR)/tsan.supp \
	  SOTTO_TIME_SCALE=$(TSAN_TIME_SCALE) SOTTO_MEMORY_SCALE=$(TSAN_MEMORY_SCALE) SOTTO_BIN="$(TSAN_BIN)" \
	  timeout -k 30 $(SAN_TIMEOUT) $(PYTHON) -m pytest -v --durations=25 $(TSAN_PYTEST_ARGS) Tests/Integration || rc=$$?; \
	if compgen -G "$(TSAN_REPORTS)/tsan.*" >/dev/null; then \
	  for f in "$(TSAN_REPORTS)"/tsan.*; do echo "=== $$f"; cat "$$f"; done; \
	  echo "ThreadSanitizer reports from sotto: see above"; exit 1; \
	else echo "no ThreadSanitizer report from any sotto process"; fi; \
	exit $$rc

# Not part of `make test`. BENCH_ROUNDS / BENCH_SECONDS / BENCH_QPS override the defaults (3 / 20 / 1000).
# Benchmarks next to Unbound and PowerDNS Recursor (Benchmarks/bench.py; BENCH_QUICK=1 for a smoke
# run, BENCH_ONLY=cached,cold,memory,encryption,startup,dashboard,dot,rtt,tcp,deadzone for a subset).
BENCH_PKGS := dnsperf pdns-recursor

# The Swift runtime, Foundation and Dispatch linked in statically: the binary needs only Debian's
# libraries (not the toolchain's lib directory), and starts faster, because the dynamic loader no
# longer resolves ~16,000 symbols across 20 Swift libraries (start-up 39.8-42.1 ms -> 28.0-28.7 ms).
release: demo-deps
	$(SWIFT) build -c release --static-swift-stdlib

bench: deps
	@missing=""; for p in $(BENCH_PKGS); do $(PKG_INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  if command -v systemctl >/dev/null && systemctl is-active --quiet pdns-recursor 2>/dev/null; then \
	    $(SUDO) systemctl stop pdns-recursor; $(SUDO) systemctl disable pdns-recursor || true; fi; \
	fi
	$(MAKE) release
	SOTTO_BIN="$(CURDIR)/.build/release/sotto" $(PYTHON) Benchmarks/bench.py

bench-smoke:
	BENCH_QUICK=1 BENCH_ONLY=cached,startup $(MAKE) bench

lab-up:
	$(PYTHON) Lab/lab.py up

lab-down:
	$(PYTHON) Lab/lab.py down

lab-status:
	$(PYTHON) Lab/lab.py status

clean:
	-$(PYTHON) Lab/lab.py down
	rm -rf .build Lab/run Tests/Integration/.pytest_cache
