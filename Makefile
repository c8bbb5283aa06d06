# burst: the two quickstart commands are `make demo` and `make test`.
#
# Everything installs into ./.venv (created with --system-site-packages so packages the machine
# already has are reused, and so Debian's "externally managed" system Python is never touched).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.burst-installed

.PHONY: install system-deps checkov demo test test-fast lint typecheck bench clean

$(BIN)/python:
	@$(PYTHON) -m venv --system-site-packages $(VENV) || { \
	  echo "cannot create a virtualenv: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

## checkov scans terraform/ (tests/terraform). It gets a venv of its own: it pins an old boto3 and
## installs a module named `hcl2` that clashes with the python-hcl2 the tests parse with. Pinned:
## a new release brings new checks, so bump it on purpose (and fix or justify what it finds).
CHECKOV_VENV ?= .venv-checkov
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check 'checkov==3.3.30'

checkov: $(CHECKOV_VENV)/bin/checkov

## The main job: replay the bundled ITP cluster04 trace (59.5 days, 15,802 jobs) under every
## policy on the embedded defaults, print the comparison and write plots to ./report.
demo: install
	$(BIN)/burst simulate --policy never,greedy,burst,clairvoyant --report report

## Everything CI runs: system components, Python packages, lint, types, all tests.
test: system-deps install checkov lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25

## ruff, then the layering contracts of pyproject.toml [tool.importlinter] (policies -> domain only;
## the core imports no adapter; adapters import only domain/errors/ports; only the CLI imports bot).
lint: install
	$(BIN)/python -m ruff check burst providers policies bot tests bench
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/python -m mypy

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/tick.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .burst report build *.egg-info
