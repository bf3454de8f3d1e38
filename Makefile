# One-command set-up: every target bootstraps .venv from the pinned constraints.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# On a machine with an NVIDIA GPU, install the CUDA build of jaxlib and train a real task.
GPU    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
EXTRAS ?= test$(if $(GPU),$(comma)cuda)
comma  := ,

.PHONY: venv test test-slow train bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $(STAMP)

# The suite in TEST_WORKERS processes (pytest-xdist; 0: in this one). On a CPU each process
# runs XLA on one thread (mjx_dacer/cpu_threads.py), so a single pytest leaves the second of
# two cores idle; each worker takes whole files, which keeps a file's compiled environments
# in one process, and holds about 5 GB at its peak.
# pytest's exit status 5 means "no tests collected"; it is not a failure.
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=15 tests; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-slow: venv
	$(PY) -m pytest -q -m slow tests

# A GPU: DACER on Hopper-v5 with the paper's settings, 5 seeds in one program; the
# progress line shows the ETA from the first chunk on. A CPU: the quickstart preset.
GPU_RUN := runs/make-train-hopper
train: venv
ifeq ($(GPU),yes)
	@echo "make train: NVIDIA GPU found: DACER on Hopper-v5, paper settings (1.5M iterations, 30M env steps per seed),"
	@echo "  5 seeds in one program, into $(GPU_RUN)/; the ETA is printed after each chunk. Ctrl-C stops after"
	@echo "  the current chunk; running make train again continues the run from its newest checkpoint."
	@if [ -f $(GPU_RUN)/config.yaml ]; then $(VENV)/bin/mjx-dacer train --resume $(GPU_RUN); \
	else $(VENV)/bin/mjx-dacer train --env Hopper-v5 --seeds 5 --out $(GPU_RUN); fi
else
	@echo "make train: no NVIDIA GPU: the CPU-sized quickstart preset (Multi-goal, 4000 iterations, about 2 minutes"
	@echo "  on 2 cores) into runs/make-train-quickstart/"
	$(VENV)/bin/mjx-dacer train --config quickstart --out runs/make-train-quickstart --overwrite
endif

bench: venv
	$(VENV)/bin/mjx-dacer bench gmm

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
