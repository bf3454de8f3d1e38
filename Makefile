# One-command set-up: every target bootstraps .venv from the pinned constraints.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= test

.PHONY: venv test test-slow train bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $(STAMP)

# pytest's exit status 5 means "no tests collected"; it is not a failure.
test: venv
	$(PY) -m pytest -q -m "not slow" tests; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-slow: venv
	$(PY) -m pytest -q -m slow tests

train: venv
	$(VENV)/bin/mjx-dacer train --config configs/quickstart.yaml

bench: venv
	$(VENV)/bin/mjx-dacer bench gmm

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
