# dicom-gateway: `make run` and `make test` set everything up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= conf/gateway.yaml
SECRET := certs/site-secret.key
SAMPLE := var/sample-input
EXPORT := var/export
# Debian packages: dicom3tools (dciodvfy, output validity tests), dcmtk (storescu/storescp
# peers and the benchmark baseline), orthanc (a real archive in the end-to-end tests),
# tesseract-ocr + eng (burned-in text), fonts-dejavu-core (text rendered by the pixel tests),
# postgresql (the shared mapping's tests start their own cluster), haproxy (several
# gateways behind one address), chromium + chromium-driver (the web console's browser tests).
APT_PACKAGES := dicom3tools dcmtk orthanc tesseract-ocr tesseract-ocr-eng fonts-dejavu-core \
	postgresql haproxy chromium chromium-driver

.PHONY: all setup system run demo test lint bench faults fuzz load clean

all: test

system:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then echo "install:$$missing (no apt-get here)"; exit 1; fi; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing system packages:$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml | system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	if $(BIN)/python -m pip show -q opencv-python 2>/dev/null; then \
	  $(BIN)/python -m pip uninstall -q -y opencv-python && \
	  $(BIN)/python -m pip install -q --force-reinstall --no-deps opencv-python-headless; fi
	touch $(STAMP)

setup: system $(STAMP)

$(SECRET): | $(STAMP)
	$(BIN)/dicom-gateway keys init --dir $(dir $(SECRET))

# The service on the embedded defaults: DICOM on 127.0.0.1:11112 (AE DEID_GW), clean
# studies exported under var/export, /healthz and /metrics on 127.0.0.1:9102 (and the web
# console there once http.console is true: the run target says how). Ctrl-C drains.
run: setup $(SECRET)
	$(BIN)/dicom-gateway check-config -c $(CONFIG)
	@echo "web console (off): set http.console: true in $(CONFIG), add an account with"
	@echo "  $(BIN)/dicom-gateway console user add NAME --role reviewer -c $(CONFIG)"
	@echo "  then open http://127.0.0.1:9102/ (docs/console.md)"
	$(BIN)/dicom-gateway run -c $(CONFIG)

# The offline engine over a bundled synthetic sample (what `make run` did before the service).
demo: setup $(SECRET)
	@test -d $(SAMPLE) || $(BIN)/dicom-gateway sample $(SAMPLE)
	$(BIN)/dicom-gateway anonymize $(SAMPLE) $(EXPORT) -c $(CONFIG)
	@echo "de-identified sample written under $(abspath $(EXPORT))"

lint: setup
	$(BIN)/ruff check gateway tests bench

test: setup
	$(BIN)/ruff check gateway tests bench
	$(BIN)/pytest

# Every speed figure in one table (DCMTK passthrough beside the gateway; a few minutes).
bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The long crash campaign (release check): N SIGKILLs of a running gateway (aimed by a
# SEED-ed random generator), then the figures.
N ?= 200
SEED ?= 1
faults: setup
	PYTHONPATH=tests $(BIN)/python tests/faults/crash_campaign.py --kills $(N) --seed $(SEED)

# The long fuzz run: FUZZ_EXAMPLES malformed instances through the engine (a fifth of that
# through the network and the anonymize command); prints the tally of outcomes.
FUZZ_EXAMPLES ?= 5000
fuzz: setup
	HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -s -q -o timeout=0 tests/fuzz

# Load: 8 concurrent senders, one study of LOAD_INSTANCES instances, one multi-frame of
# LOAD_MULTIFRAME_MB MiB; prints the figures.
LOAD_INSTANCES ?= 5000
LOAD_MULTIFRAME_MB ?= 2048
load: setup
	LOAD_INSTANCES=$(LOAD_INSTANCES) LOAD_MULTIFRAME_MB=$(LOAD_MULTIFRAME_MB) $(BIN)/pytest -s -q -o timeout=0 tests/load

-include mk/image.mk

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
