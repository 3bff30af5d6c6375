# Two commands for a fresh machine:  `make demo` (set up, then compare schemes on Fashion-MNIST)
# and `make test` (set up, then run the test suite). `make setup` alone installs.
#
# Everything is installed into a virtual environment: the active one if VIRTUAL_ENV is set,
# else the project's own `.venv` (created with --system-site-packages, so a torch installed
# system-wide, e.g. a CUDA build, is reused). This also works where the system Python is
# "externally managed" (PEP 668: Debian/Ubuntu's python3), which refuses a plain `pip install`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST := /usr/share/datasets/fashion-mnist
ifdef VIRTUAL_ENV
PY := $(VIRTUAL_ENV)/bin/python
else
PY := $(VENV)/bin/python
endif

.PHONY: setup venv data timm test demo bench

data:
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; fi

# Debian/Ubuntu ship venv's ensurepip separately (python3-venv): installed when it is missing.
venv:
	@if [ ! -x $(PY) ] || ! $(PY) -m pip --version >/dev/null 2>&1; then \
		[ -z "$(VIRTUAL_ENV)" ] || { echo "make: $(VIRTUAL_ENV) (VIRTUAL_ENV) has no working python/pip" >&2; exit 1; }; \
		echo "make: creating the virtual environment $(VENV) (system site packages visible)"; \
		rm -rf $(VENV); \
		if ! $(PYTHON) -c "import ensurepip, venv" 2>/dev/null; then \
			$(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv; fi; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	fi

# Keeps an installed torch >= 2.4 (e.g. a CUDA build on a GPU machine); else the pinned CPU wheel.
setup: data venv
	@$(PY) -c "import sys, torch; v = torch.__version__.split('+')[0].split('.'); \
		sys.exit(tuple(map(int, v[:2])) < (2, 4))" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	@echo "make: odenets is installed in $(dir $(PY)): run it as $(dir $(PY))odenets, or after \`source $(dir $(PY))activate\` as odenets"

# timm's own model tests (tests/test_timm_models.py) run where timm imports: timm without its
# dependencies (its torchvision pin would pull a CUDA torch), plus the light ones it needs.
timm: setup
	@$(PY) -m pip show -q timm >/dev/null 2>&1 || { $(PY) -m pip install -q --no-deps "timm>=1.0" && \
		$(PY) -m pip install -q huggingface_hub safetensors pyyaml; }

test: setup timm
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m odenets compare --models resnet20,lm_resnet20 --dataset fashion-mnist --epochs 2

bench: setup
	$(PY) -m odenets bench overhead
