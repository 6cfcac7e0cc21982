# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv idempotently; the stamp tracks pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.lesionxai-installed
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=
# extra options for `make demo`, e.g. DEMO_ARGS="--model unet-anchor" (any `lesionxai demo` option)
DEMO_ARGS ?=

.PHONY: all demo test venv system-deps clean-venv

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so that nothing later resolves a different (CUDA) build.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -c constraints.txt -e ".[slicer,cohort,nnunet,library,dev]"
	# timm (a dependency of nnU-Net's dynamic_network_architectures, used only by its transformer architectures) pulls
	# torchvision; PyPI's torchvision is built for the CUDA torch and fails to import with the CPU torch
	# ("operator torchvision::nms does not exist"), and no CPU build is on PyPI. No LesionXAI path uses it: remove it
	# so that nothing imports a broken package (README "Models").
	$(PIP) uninstall --quiet --yes torchvision
	touch $(STAMP)

venv: $(STAMP)

# Chromium (browser tests) and Mesa EGL (offscreen viewer rendering) from apt when missing; the same step
# .ci/run relies on. Without root or sudo it names the packages to install and stops.
system-deps:
	bash .ci/system-deps.sh

demo: system-deps $(STAMP)
	$(VENV)/bin/lesionxai demo --out demo-output $(DEMO_ARGS)

test: system-deps $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
