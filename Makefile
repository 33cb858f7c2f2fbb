# yoloops: `make demo` runs the whole pipeline locally; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam

.PHONY: setup demo test lint static pytest bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt layers/yoloops/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e .
	touch $@

demo: setup
	$(VENV)/bin/yoloops demo

lint: setup
	$(VENV)/bin/ruff check .

pytest: setup
	$(PY) -m pytest -q

test: lint static pytest

clean:
	rm -rf $(VENV) $(SAM_VENV) node_modules .aws-sam .local
