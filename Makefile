# make demo   — create .venv, install, run `contrastseg demo` on the embedded phantoms
# make test   — create .venv if needed, install (with slicer-core), run the test suite (what .ci/run runs)
# make bench  — the foundation benchmark (cpu profile)
#
# TORCH pins the PyTorch build installed first. torch==2.13.0 is a CPU build where that wheel is the local one;
# on a machine with a CUDA GPU pass the build you want, e.g. `make demo TORCH="torch==2.13.0"` with your pip
# index configured for CUDA wheels, or install torch into .venv yourself first (an existing torch is kept).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.contrastseg-installed
SLICER_STAMP := $(VENV)/.contrastseg-slicer-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The tests also need slicer-core (Slicer's MRML without Qt, ~1 GB) for the Slicer module's logic.
$(SLICER_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,slicer]"
	touch $(SLICER_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/contrastseg demo --out demo_output --overwrite

test: $(SLICER_STAMP)
	$(PY) -m pytest Testing -q

bench: $(STAMP)
	$(PY) benchmarks/bench_foundation.py --profile cpu

clean:
	rm -rf $(VENV) demo_output bench_output
