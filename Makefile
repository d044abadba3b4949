# ReadRoom: the two commands.
#   make demo  - installs what it needs, starts the reference cloud with demo studies and opens the workstation
#   make test  - installs what the tests need (Orthanc, nginx, Xvfb, validators) and runs them
# System packages are listed in one place: installer/system-packages.txt

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := $(shell grep -v '^\s*\#' installer/system-packages.txt | grep -v '^\s*$$')
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  if command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then command -v $$p; break; fi; done)
XVFB := xvfb-run -a -s "-screen 0 1920x1200x24"
DEMO_HOME ?= $(CURDIR)/.demo
PYTEST_ARGS ?=

.PHONY: demo test system-deps venv clean lint bench

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$(PYTHON)" ]; then missing="$$missing python3.11 python3.11-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "System packages present."; fi

$(VENV)/.installed: pyproject.toml
	@py="$(PYTHON)"; [ -n "$$py" ] || py=$$(command -v python3.11); \
	[ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: system-deps $(VENV)/.installed

test: venv
	PYTHONUNBUFFERED=1 $(XVFB) $(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	@if [ -z "$$DISPLAY" ] && [ -z "$$WAYLAND_DISPLAY" ]; then \
	  echo "No display here: running the demo without a window (reference cloud, sign-in as reader1, worklist)."; \
	  echo "Run 'make demo' from a desktop session to open the workstation."; \
	  READROOM_HOME=$(DEMO_HOME) $(VENV)/bin/readroom demo --no-window; \
	else READROOM_HOME=$(DEMO_HOME) $(VENV)/bin/readroom demo; fi

bench: venv
	$(XVFB) $(VENV)/bin/readroom-bench --json bench-results.json

lint: venv
	$(VENV)/bin/ruff check app viewer reporting dictation cloud_client cloud bench tests

clean:
	rm -rf $(VENV) .demo .pytest_cache *.egg-info
