# burst — the two quickstart commands are `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
STAMP := .burst/installed.stamp

.PHONY: install system-deps demo test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PIP) install -q -e '.[test]'
	@mkdir -p .burst && touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

## The main job: replay the bundled ITP cluster04 trace (59.5 days, 15,802 jobs) under every
## policy on the embedded defaults, print the comparison and write plots to ./report.
demo: install
	burst simulate --policy never,greedy,burst,clairvoyant --report report

## Everything CI runs: system components, Python packages, lint, types, all tests.
test: system-deps install
	$(PYTHON) -m ruff check burst providers policies bot tests bench
	$(PYTHON) -m mypy
	$(PYTHON) -m pytest -q

test-fast: install
	$(PYTHON) -m pytest -q -m "not slow"

bench: install
	$(PYTHON) bench/policy.py
	$(PYTHON) bench/tick.py

clean:
	rm -rf .burst report build *.egg-info
