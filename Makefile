# runeshift: `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= 1

.PHONY: help setup demo test lint typecheck check bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-10s %s\n", $$1, $$2}'

setup: ## Install system packages if missing, create .venv from the lock file
	@bash scripts/setup.sh

demo: setup ## Run the whole migration on sample data, on local throwaway servers
	@bash scripts/demo.sh $(SCALE)

test: setup ## Run the test suite (starts its own servers)
	$(BIN)/pytest

lint: setup ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup ## mypy --strict on the packages
	$(BIN)/mypy runeshift extract transform load reconcile cutover services

check: lint typecheck test ## Everything CI runs

bench: setup ## Benchmarks (not part of the test suite); results go to BENCHMARKS.md
	@bash bench/run_all.sh

clean: ## Stop the demo sandbox and remove local state
	-$(BIN)/runeshift sandbox down
	rm -rf .runeshift
