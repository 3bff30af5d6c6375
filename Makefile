# Two commands for a fresh machine:  `make demo` (set up, then compare schemes on Fashion-MNIST)
# and `make test` (set up, then run the test suite). `make setup` alone installs.
PYTHON ?= python3
TORCH ?= torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data test demo bench

data:
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; fi

# Keeps an installed torch >= 2.4 (e.g. a CUDA build on a GPU machine); else the pinned CPU wheel.
setup: data
	@$(PYTHON) -c "import sys, torch; v = torch.__version__.split('+')[0].split('.'); \
		sys.exit(tuple(map(int, v[:2])) < (2, 4))" 2>/dev/null || $(PYTHON) -m pip install -q $(TORCH)
	$(PYTHON) -m pip install -q -e ".[dev]"

test: setup
	$(PYTHON) -m pytest -q tests

demo: setup
	$(PYTHON) -m odenets compare --models resnet20,lm_resnet20 --dataset fashion-mnist --epochs 2

bench: setup
	$(PYTHON) benchmarks/solver_overhead.py
