# mplab: networked MicroPython devices in QEMU, on a LAN you can watch, talk to and break.
#
#   make lab-up          bring the default lab up (sets up everything it needs first)
#   make test            ... and run the test suite
#   make help            all targets

SHELL := /bin/bash
.DEFAULT_GOAL := help

VERSION := $(shell cat VERSION)
LAB ?= default
NODES ?= 2
PYTEST_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
MPLAB := $(VENV)/bin/mplab
# A python3 with venv support; Debian's when present (pyenv builds may lack ensurepip pieces).
HOST_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)

include mk/images.mk

.PHONY: help setup host-packages docker venv firmware lab-up lab-down lab-status lab-console \
	lab-logs test test-firmware test-lab test-socket test-services test-scale upstream-tests \
	example-mqtt-sensor example-https-poller example-microdot-server device-packages lint conformance differential repro bench bench-scale soak firmware-all clean

help: ## list the targets
	@echo "mplab $(VERSION): make <target> [LAB=name] [NODES=n]"
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

host-packages: ## install missing system packages (apt; root or sudo) and the Compose v2 plugin
	@scripts/ensure-host-packages.sh

docker: host-packages ## start dockerd if no daemon answers
	@scripts/ensure-docker.sh

$(VENV)/.installed: requirements.txt pyproject.toml | host-packages
	@test -x $(PY) || $(HOST_PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -e .
	@touch $@

venv: $(VENV)/.installed ## the Python venv with the pinned packages and the lab package

firmware: host-packages ## build firmware/build/firmware.elf (MICROPYTHON_VERSION=1.26.1 for another)
	@$(MAKE) --no-print-directory -C firmware

firmware-all: host-packages ## build every packaged MicroPython version (for the version matrix)
	@for v in $$($(MAKE) --no-print-directory -s -C firmware print-versions); do \
		$(MAKE) --no-print-directory -C firmware MICROPYTHON_VERSION=$$v || exit 1; done

setup: docker firmware venv ## everything a lab needs: packages, dockerd, firmware, images, venv
	@$(MAKE) --no-print-directory images

lab-up: setup ## bring the lab up: make lab-up [NODES=4] [LAB=name]
	@$(MPLAB) --lab $(LAB) up --nodes $(NODES)

lab-down: venv ## take the lab down and remove everything it made
	@$(MPLAB) --lab $(LAB) down

lab-status: venv ## table of nodes, IPs, MACs, serial ports, state
	@$(MPLAB) --lab $(LAB) status

lab-console: venv ## interactive REPL: make lab-console NODE=node1 (Ctrl-] exits)
	@test -n "$(NODE)" || { echo "usage: make lab-console NODE=node1"; exit 2; }
	@$(MPLAB) --lab $(LAB) console $(NODE)

lab-logs: venv ## console log of a node: make lab-logs NODE=node1
	@test -n "$(NODE)" || { echo "usage: make lab-logs NODE=node1"; exit 2; }
	@$(MPLAB) --lab $(LAB) logs $(NODE)

test: setup firmware-all device-packages ## run the whole suite (firmware, lab, sockets, upstream's tests, impairments, scenarios)
	@$(PY) -m pytest $(PYTEST_ARGS)

test-firmware: firmware venv ## only the firmware tests (netns + TAP, no Docker)
	@$(PY) -m pytest tests/firmware $(PYTEST_ARGS)

test-lab: setup ## only the lab tests
	@$(PY) -m pytest tests/lab $(PYTEST_ARGS)

test-socket: setup ## only the socket conformance suite
	@$(PY) -m pytest tests/socket $(PYTEST_ARGS)

test-scale: setup ## only the 64-node lab: up, every guest leased and answering, down (about 1 min; docs/scale-out.md)
	@$(PY) -m pytest tests/scale $(PYTEST_ARGS)

test-services: setup ## only the service daemons' tests (MQTT, HTTP(S), NTP, the lab CA; docs/services.md)
	@$(PY) -m pytest tests/services $(PYTEST_ARGS)

example-mqtt-sensor: setup ## examples/mqtt-sensor: an MQTT/TLS sensor through a link flap and a broker restart (about 1 min)
	@$(PY) -m pytest examples/mqtt-sensor $(PYTEST_ARGS)

example-https-poller: setup ## examples/https-poller: an HTTPS poller while DNS is slow, judged by its verdict
	@$(PY) -m pytest examples/https-poller $(PYTEST_ARGS)

# MicroPython packages the examples install, fetched from PyPI once into build/packages/ (the
# lab, the scenarios and the tests then read the cache and reach nothing off the machine).
DEVICE_PACKAGES ?= microdot

device-packages: venv ## fetch the examples' MicroPython packages from PyPI into build/packages (once)
	@$(PY) -c "import sys; from lab import packages; packages.resolve_all(sys.argv[1:], progress=print)" $(DEVICE_PACKAGES)

example-microdot-server: setup device-packages ## examples/microdot-server: microdot on a node over HTTP and HTTPS, from the host
	@$(PY) -m pytest examples/microdot-server $(PYTEST_ARGS)

upstream-tests: setup ## upstream MicroPython's asyncio/ssl/tls/select/socket/net_hosted tests on a lab node
	@$(PY) -m pytest tests/upstream --mplab-nodes 1 $(PYTEST_ARGS)

repro: setup firmware-all ## reproduce field bugs: make repro [SCENARIO=scenarios/x.yml] [FIRMWARE=1.25.0,1.26.1]
	@if [ -n "$(SCENARIO)" ]; then $(MPLAB) repro $(SCENARIO) $(if $(FIRMWARE),--firmware $(FIRMWARE)); \
	else rc=0; for s in scenarios/*.yml; do $(MPLAB) repro $$s $(if $(FIRMWARE),--firmware $(FIRMWARE)) || rc=1; done; exit $$rc; fi

conformance: setup ## socket conformance report: reports/conformance.{md,html} (in a lab of its own)
	@$(PY) -m lab conformance --lab conf -- $(PYTEST_ARGS)

bench: setup ## benchmarks: reports/bench/{results.json,summary.md,*.png} (about 16 min)
	@$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	@$(PY) -m bench

bench-scale: setup ## labs of 64, 128, 256 nodes, one at a time (SIZES=64,128,256): reports/bench/ scale_* figures, scale.png (about 8 min)
	@$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	@$(PY) -m bench scale $(if $(SIZES),--sizes $(SIZES))

soak: setup ## soak + chaos, not in CI: 10 min TCP echo under 10% loss, 10 min under delay+jitter, 5 min of faults in a 4-node lab: reports/soak/
	@$(PY) -m lab.soak --echo-seconds $(or $(SOAK_ECHO_SECONDS),600) --delay-seconds $(or $(SOAK_DELAY_SECONDS),600) --chaos-seconds $(or $(SOAK_CHAOS_SECONDS),300)

differential: setup ## guest vs CPython on Linux, same snippets: reports/differential.{md,html}
	@$(PY) -m lab diff --lab diff

lint: venv ## ruff on the Python code
	@$(VENV)/bin/ruff check lab tests bench scripts firmware/scripts examples
	@$(VENV)/bin/ruff format --check lab tests bench scripts firmware/scripts examples

clean: ## remove build outputs (keeps downloaded sources)
	@$(MAKE) --no-print-directory -C firmware clean
	rm -rf artifacts reports
