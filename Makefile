# One place that installs everything. `make demo` and `make test` install first.
# GPU=1 installs mxnet-cu112 and builds Horovod with NCCL GPU operations.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
GPU ?= 0
NP ?= 2
DEMO_DIR ?= work/demo

ifeq ($(GPU),1)
MXNET_PKG := mxnet-cu112==1.9.1
HVD_GPU := HOROVOD_GPU_OPERATIONS=NCCL
else
MXNET_PKG := mxnet==1.9.1
HVD_GPU :=
endif
# MPI support only where an MPI compiler exists; Gloo always.
HVD_MPI := $(if $(shell command -v mpicc 2>/dev/null),HOROVOD_WITH_MPI=1,HOROVOD_WITHOUT_MPI=1)
STAMP := $(VENV)/.installed-gpu$(GPU)

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "setuptools<70" wheel
	# MXNet 1.9.1 is the last release and needs numpy<1.24; install it first so every
	# later package resolves against that numpy.
	$(PIP) install -q "$(MXNET_PKG)" "numpy<1.24"
	# scipy reads MATLAB v5 files (mdnet-import); matplotlib draws the evaluation plots (mdnet-eval).
	# OpenCV's contrib build: the same cv2 plus the CSRT and KCF trackers that `mdnet-eval run
	# --tracker` compares MDNet with. It and the plain build both own cv2/: never both installed.
	-$(PIP) uninstall -q -y opencv-python-headless opencv-python 2>/dev/null
	$(PIP) install -q "opencv-contrib-python-headless<4.12" "h5py<3.17" pyyaml pytest "scipy<1.16" "matplotlib<3.11" "numpy<1.24"
	# The field's toolkits (docs/evaluation.md): got10k (the GOT-10k toolkit; pulls Shapely, fire,
	# wget) and vot-trax (TraX, libtrax.so in its wheel: the tracker's side of the VOT toolkit, which
	# itself needs numpy 2 and lives in $(VOT_VENV), `make vot-venv`).
	$(PIP) install -q "got10k==0.1.3" "vot-trax==4.0.2" "numpy<1.24"
	# Horovod must see the installed mxnet while it builds: no build isolation.
	@if $(PY) -c "import horovod.mxnet" 2>/dev/null; then echo "horovod already built"; else \
	  HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
	  HOROVOD_WITHOUT_PYTORCH=1 $(HVD_MPI) $(HVD_GPU) \
	  $(PIP) install -q --no-build-isolation --no-cache-dir horovod==0.28.1 "numpy<1.24"; fi
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(VENV)/bin/horovodrun --check-build
	@touch $@

test: install
	$(VENV)/bin/python -m pytest -q tests

demo: install
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH NP=$(NP) DEMO_DIR=$(DEMO_DIR) bash tools/demo.sh

bench: install
	$(VENV)/bin/mdnet-bench track --weights random:0 --frames 30 --json
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/mdnet-bench pretrain --json

clean:
	rm -rf $(VENV) work runs results
