# Dashtam — every command a contributor needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv from PATH, else a private copy installed with pip into .uv/ (never into .venv: `uv pip
# sync` would remove it there).
UV ?= $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
LOCK := requirements/dev.txt
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
COV_MIN ?= 85
COMPOSE := docker compose

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

# ---- environment --------------------------------------------------------------------------
.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv

$(STAMP): $(LOCK) pyproject.toml | $(UV)
	@test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(BIN)/python $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e . 2>/dev/null \
	  || $(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install the locked dependencies

.PHONY: lock
lock: | $(UV) ## Re-compile the hashed lock files from pyproject.toml
	$(UV) pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet -o requirements/main.txt
	$(UV) pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes --quiet -o requirements/dev.txt

# ---- run ----------------------------------------------------------------------------------
.PHONY: run
run: install certs ## Set up everything and serve the whole system (embedded backends)
	$(BIN)/dashtam migrate
	$(BIN)/dashtam dev

.PHONY: certs
certs: install ## Create the local CA and server certificate under certs/
	$(BIN)/dashtam certs

.PHONY: keys
keys: install ## Print fresh SECRET_KEY and ENCRYPTION_KEYS values
	$(BIN)/dashtam keys

.PHONY: migrate
migrate: install ## Apply database migrations
	$(BIN)/dashtam migrate

.PHONY: migrate-create
migrate-create: install ## Autogenerate a migration: make migrate-create MSG="add things"
	@test -n "$(MSG)" || (echo 'usage: make migrate-create MSG="describe the change"'; exit 2)
	$(BIN)/dashtam migrate
	$(BIN)/alembic revision --autogenerate -m "$(MSG)"

# ---- quality ------------------------------------------------------------------------------
.PHONY: lint
lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check src tests bench alembic
	$(BIN)/ruff format --check src tests bench alembic
	$(BIN)/mypy src bench

.PHONY: format
format: install ## Format and auto-fix the code
	$(BIN)/ruff format src tests bench alembic
	$(BIN)/ruff check --fix src tests bench alembic

# ---- tests --------------------------------------------------------------------------------
.PHONY: test
test: install ## Run every test with coverage (fails under $(COV_MIN)%)
	$(BIN)/pytest -p no:cacheprovider -n auto --dist loadfile --cov --cov-report=term --cov-fail-under=$(COV_MIN) $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Unit tests (no I/O)
	$(BIN)/pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: install ## Integration tests (database, Redis, simulator)
	$(BIN)/pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)

.PHONY: test-api
test-api: install ## API tests (httpx against the ASGI app)
	$(BIN)/pytest -p no:cacheprovider tests/api $(PYTEST_ARGS)

.PHONY: test-smoke
test-smoke: install ## Smoke tests against live processes over HTTPS
	$(BIN)/pytest -p no:cacheprovider tests/smoke $(PYTEST_ARGS)

.PHONY: bench
bench: install certs ## Benchmarks (see bench/README.md); without BENCH_ARGS also the whale sync
	$(BIN)/python -m bench $(BENCH_ARGS)
ifeq ($(strip $(BENCH_ARGS)),)
	$(BIN)/python -m bench.scenarios.sync
endif

.PHONY: bench-sync
bench-sync: install ## The whale's initial sync and re-sync (BENCH_DATABASE_URL, default dashtam_bench_sync)
	$(BIN)/python -m bench.scenarios.sync

.PHONY: docs
docs: install ## Build the documentation site (strict: broken links fail)
	$(BIN)/mkdocs build --strict --site-dir site

.PHONY: clean
clean: ## Remove caches, coverage and build output (keeps .venv, var/ and certs/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov site build dist
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

.PHONY: clean-all
clean-all: clean ## Also remove .venv, var/ (local database, secrets, mail) and certs
	rm -rf $(VENV) var certs/*.pem

# ---- docker compose (needs a Docker engine) -----------------------------------------------
# env/.env.<name> is created from its template when missing and never overwritten afterwards.
env/.env.dev env/.env.test env/.env.ci:
	cp $@.example $@
	@echo "created $@ from $@.example (edit it; it is git-ignored)"

.PHONY: dev-up dev-down dev-logs dev-status dev-shell dev-restart dev-rebuild
dev-up: env/.env.dev ## Start the development stack in containers
	$(COMPOSE) -f compose/docker-compose.dev.yml up -d
dev-down: ## Stop the development stack
	$(COMPOSE) -f compose/docker-compose.dev.yml down
dev-logs: ## Follow development logs
	$(COMPOSE) -f compose/docker-compose.dev.yml logs -f
dev-status: ## Show development containers
	$(COMPOSE) -f compose/docker-compose.dev.yml ps
dev-shell: ## Shell in the development API container
	$(COMPOSE) -f compose/docker-compose.dev.yml exec app bash
dev-restart: dev-down dev-up ## Restart the development stack
dev-rebuild: env/.env.dev ## Rebuild development images without cache
	$(COMPOSE) -f compose/docker-compose.dev.yml build --no-cache

.PHONY: test-up test-down test-status test-restart test-rebuild
test-up: env/.env.test ## Start the isolated test stack
	$(COMPOSE) -f compose/docker-compose.test.yml up -d
test-down: ## Stop the test stack
	$(COMPOSE) -f compose/docker-compose.test.yml down -v
test-status: ## Show test containers
	$(COMPOSE) -f compose/docker-compose.test.yml ps
test-restart: test-down test-up ## Restart the test stack
test-rebuild: env/.env.test ## Rebuild test images without cache
	$(COMPOSE) -f compose/docker-compose.test.yml build --no-cache

.PHONY: ci-up ci-test ci-down ci-build
ci-build: env/.env.ci ## Build CI images
	$(COMPOSE) -f compose/docker-compose.ci.yml build
ci-up: env/.env.ci ## Start CI services (they migrate, then stay idle) and wait until healthy
	$(COMPOSE) -f compose/docker-compose.ci.yml up -d --build --wait
ci-test: ci-up ## Run the test suite inside the CI stack
	$(COMPOSE) -f compose/docker-compose.ci.yml exec -T app make test
ci-down: ## Remove the CI stack
	$(COMPOSE) -f compose/docker-compose.ci.yml down -v

.PHONY: status-all
status-all: ## Containers of every environment
	-$(COMPOSE) -f compose/docker-compose.dev.yml ps
	-$(COMPOSE) -f compose/docker-compose.test.yml ps
	-$(COMPOSE) -f compose/docker-compose.ci.yml ps
