# The two commands of the README: `make demo` and `make test`. Each installs what it needs on
# first use (.venv from pyproject.toml + constraints.txt, node_modules from package-lock.json).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export SOLCX_BINARY_PATH := $(CURDIR)/.solc
SOLC_VERSION := $(shell sed -n 's/.*"solc": "\(.*\)".*/\1/p' package.json)

.PHONY: demo test test-long lint mypy mutate chaos test-hardhat hardhat bench bench-updates bench-scale bench-virtual bench-tower bench-multihop build devnet setup browser capture-tool clean

demo: setup
	$(VENV)/bin/perun demo

# Without eth-ape's pytest plugin (`ape test` still loads it): it costs 3.5 s per run and turns
# tracebacks into frame-by-frame dumps of .venv internals. Two workers, each test file on one of
# them (its module's anvil and nodes start once): half the time on two cores, as much of the suite
# waits for processes and blocks.
test: setup browser capture-tool
	$(PY) -m pytest -q -p no:ape_test -n 2 --dist loadfile $(PYTEST_ARGS)

# The same suite under the long Hypothesis profile (tests/conftest.py): ten times the examples of
# every property test, 1,000 of the multistate state machine, and 1,000 of the virtual-channel
# nodes after each of their paths.
test-long: setup browser capture-tool
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q -p no:ape_test -n 2 --dist loadfile $(PYTEST_ARGS)

# Static analysis (CI runs it before `make test`): slither (every detector) on the contracts, ruff
# and mypy on the Python. `slither .` compiles Contracts.sol, which imports every deployable
# contract (slither.config.json points it at the solc shim); a finding is fixed, or triaged where
# it stands with `// slither-disable-next-line DETECTOR -- reason`, so that a new one fails. mypy
# checks src/perun, strict on perun.core, perun.wire and perun.chain (pyproject.toml's [tool.mypy]).
lint: setup
	@echo "slither ."; out=$$($(VENV)/bin/slither . 2>&1) || { echo "$$out" | grep -v "^'"; exit 1; }
	$(VENV)/bin/ruff check src benchmarks tests scripts
	$(VENV)/bin/mypy

# mypy alone, as `make lint` runs it.
mypy: setup
	$(VENV)/bin/mypy

# The contract and node suites again, on Hardhat's node instead of anvil (a second, independent
# JSON-RPC client; tests/chains.py reads PERUN_TEST_CHAIN). Hardhat installs on first use only.
test-hardhat: setup hardhat
	PERUN_TEST_CHAIN=hardhat $(PY) -m pytest -q -p no:ape_test -n 2 --dist loadfile tests/contracts tests/node $(PYTEST_ARGS)

hardhat: tools/hardhat/node_modules/.installed

# The long chaos run (README, "Chaos on anvil"): 200 randomised rounds of faults over payment,
# multistate and virtual channels, and 1, 4 and 12 s blocks. PERUN_CHAOS_SEED=N replays a run.
chaos: setup
	PERUN_CHAOS_ROUNDS=$${PERUN_CHAOS_ROUNDS:-200} PERUN_CHAOS_LONG=1 $(PY) -m pytest -q -p no:ape_test -n 2 \
	  --dist loadfile tests/chaos $(PYTEST_ARGS)

# Mutation testing of the contracts (docs/mutation.md), not part of `make test`: each mutant is
# compiled and meets its contract's own tests. MUTATE_ARGS="--contract TicTacToe --max 20" narrows it.
mutate: setup
	$(PY) -m tools.mutate $(MUTATE_ARGS)

bench: setup
	$(PY) -m benchmarks.gas

bench-updates: setup
	$(PY) -m benchmarks.updates

# Slow (about 20 minutes here, most of it opening channels at ~10 a second): a node with 10, 1,000 and
# 10,000 real channels on anvil, restarted and measured at each size (benchmarks/scale.py). With
# SCALE_DIR=DIR the chain and stores stay in DIR, and a later run measures them again without reopening.
bench-scale: setup
	$(PY) -m benchmarks.scale $(if $(SCALE_DIR),--dir $(SCALE_DIR))

bench-virtual: setup
	$(PY) -m benchmarks.virtual

bench-tower: setup
	$(PY) -m benchmarks.tower

bench-multihop: setup
	$(PY) -m benchmarks.multihop

build: setup
	$(VENV)/bin/perun compile

devnet: setup
	$(VENV)/bin/perun devnet

setup: $(VENV)/.installed node_modules/.installed .solc/solc-v$(SOLC_VERSION)

# py-solc-x and ape-solidity find the compiler as $SOLCX_BINARY_PATH/solc-v<version>.
.solc/solc-v$(SOLC_VERSION): tools/solc-shim.js
	mkdir -p .solc
	ln -sfn ../tools/solc-shim.js $@

# The first run installs for a few minutes: each step says so, and pip lists what it fetches
# (and its errors, if any; the recipe fails with pip).
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "==> Python packages into $(VENV) (first run only; about 2 minutes)"
	$(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install --disable-pip-version-check --progress-bar off -c constraints.txt \
	  -e '.[dev]' 2>&1 | (grep --line-buffered -E '^(Collecting|Installing|Successfully|ERROR)' || true)
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "==> anvil and the Solidity compiler into node_modules (first run only; about 30 s)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Hardhat pinned in tools/hardhat/package-lock.json, apart from node_modules so that `make setup`
# stays quick. npm prints nothing for a while: count its downloads instead (and show the rest).
tools/hardhat/node_modules/.installed: tools/hardhat/package.json tools/hardhat/package-lock.json
	@echo "==> Hardhat's node into tools/hardhat/node_modules (first use only; about 300 MB, under a minute)"
	set -o pipefail; cd tools/hardhat && npm ci --no-audit --no-fund --loglevel=http 2>&1 \
	  | awk '/http fetch/ { if (++n % 50 == 0) { print "    " n " downloads"; fflush() } next } { print; fflush() }'
	touch $@

# A test opens a scenario report in Debian's headless chromium. Installed when missing and this
# user may (root, or sudo without a password); otherwise that test is skipped with the reason
# (CI sets PERUN_REQUIRE_CHROMIUM=1, which turns the skip into a failure).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "chromium is not installed and this user cannot install it: the report's browser test will be skipped"; exit 0; fi; \
	  echo "installing Debian's chromium (once)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	  || echo "could not install chromium: the report's browser test will be skipped"; }

# A test captures the nodes' peer traffic on loopback with Debian's tcpdump, to show that no channel
# secret crosses the wire in clear. Installed like chromium above; capturing needs root (CAP_NET_RAW),
# otherwise that test is skipped with the reason (CI sets PERUN_REQUIRE_CAPTURE=1: a failure then).
capture-tool:
	@command -v tcpdump >/dev/null || [ -x /usr/sbin/tcpdump ] || [ -x /usr/bin/tcpdump ] || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "tcpdump is not installed and this user cannot install it: the wire capture test will be skipped"; exit 0; fi; \
	  echo "installing Debian's tcpdump (once)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tcpdump >/dev/null \
	  || echo "could not install tcpdump: the wire capture test will be skipped"; }

clean:
	rm -rf $(VENV) node_modules tools/hardhat/node_modules .solc .build
