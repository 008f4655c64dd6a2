# One entry point for humans: `make help`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv test demo lint types migrate check format up simulator clean bench chaos fuzz wheel wheel-job

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv with everything installed

test: $(STAMP) ## Run the tests (real PostgreSQL/Redis from CAMPAIGNS_TEST_* or embedded ones)
	$(BIN)/pytest -q

demo: $(STAMP) ## Run a whole demo campaign on embedded servers and the simulator
	$(BIN)/campaigns demo

lint: $(STAMP) ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP) ## mypy --strict
	$(BIN)/mypy

migrate: $(STAMP) ## Apply migrations to CAMPAIGNS_DATABASE_URL
	$(BIN)/campaigns migrate

check: lint types test wheel-job ## Everything CI runs

wheel: ## Build the wheel into dist/ (migrations, rulesets and sample data inside)
	rm -rf build  # setuptools reuses build/lib: a module deleted since the last build would ride along
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir dist .

wheel-job: ## CI's wheel job: the wheel in a fresh venv in /tmp migrates and runs one event end to end
	bash .ci/wheel-job

up: $(STAMP) ## api + scheduler + worker + beat (embedded servers unless configured)
	$(BIN)/campaigns up

simulator: $(STAMP) ## The fake Telnyx on :8081
	$(BIN)/campaigns simulator --mix completed=0.6,busy=0.2,no-answer=0.2

bench: $(STAMP) ## All benchmarks, peers included (long; results in docs/benchmarks.md)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_import.py --rows 1000000 --repeat 3
	$(BIN)/python bench/bench_parse.py --rows 1000000
	$(BIN)/python bench/bench_dispatch.py --burst 100000 --rate 1000 --duration 30 --repeat 3
	$(BIN)/python bench/bench_backlog.py --backlog 10000000
	$(BIN)/python bench/bench_webhooks.py --calls 20000 --repeat 3
	$(BIN)/python bench/bench_webhooks.py --calls 20000 --concurrency 64 --repeat 3 --api-workers 2
	$(BIN)/python bench/bench_memory.py --events 1000000

chaos: $(STAMP) fuzz ## Full reliability suite: kill -9, restarts, webhook flood, fuzzing (CI runs a reduced one)
	CHAOS_FULL=1 $(BIN)/pytest -q -s -p no:cacheprovider --timeout 3600 tests/reliability

fuzz: $(STAMP) ## ~10 minutes of random fuzzing: schemathesis on every operation, hostile creates and webhooks
	CAMPAIGNS_FUZZ_EXAMPLES=$${CAMPAIGNS_FUZZ_EXAMPLES:-12000} $(BIN)/pytest -q -p no:cacheprovider --timeout 3600 \
		tests/worker/api/test_hostile_input.py::test_fuzzed_creates_and_webhooks_give_no_5xx_and_log_no_numbers \
		tests/worker/api/test_schemathesis.py::test_every_answer_conforms_to_the_schema

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
