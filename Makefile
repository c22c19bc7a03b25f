# smits: `make run` (the demo on the embedded SQLite default) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TEST_KAFKA_PORT ?= 29092  # and 29093; both below the ephemeral port range

.PHONY: run test test-faults bench bench-quick lint unit stop clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("smits needs Python 3.11, found " + sys.version) if sys.version_info[:2] != (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: $(INSTALLED)
	deploy/run-local.sh

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	@set -euo pipefail; \
	pg_url="$$(deploy/postgres/pg.sh start)"; \
	kafka="$$(deploy/kafka/kafka.sh start --port $(TEST_KAFKA_PORT) --dir .run/kafka-test)"; \
	echo "postgres: $$pg_url  kafka: $$kafka"; \
	SMITS_TEST_PG_URL="$$pg_url" SMITS_TEST_KAFKA="$$kafka" $(BIN)/pytest

# The fault-injection scenarios at full size (make test runs them at 300 triggers each).
FAULTS_SIZE ?= 5000
test-faults: $(INSTALLED)
	@set -euo pipefail; \
	kafka="$$(deploy/kafka/kafka.sh start --port $(TEST_KAFKA_PORT) --dir .run/kafka-test)"; \
	pg_url="$$(deploy/postgres/pg.sh start)"; \
	SMITS_FAULTS_SIZE=$(FAULTS_SIZE) SMITS_TEST_PG_URL="$$pg_url" SMITS_TEST_KAFKA="$$kafka" \
	  $(BIN)/pytest tests/faults -s -p no:cacheprovider

# Benchmarks (BENCHMARKS.md): own Kafka (29392) and Postgres (25435); figures printed, never asserted.
bench: $(INSTALLED)
	$(BIN)/python -m bench

# The same stages at small sizes (< 2 min), to catch a collapse; counts are still checked exactly.
bench-quick: $(INSTALLED)
	$(BIN)/python -m bench --quick

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

stop:
	-deploy/kafka/kafka.sh stop --dir .run/kafka
	-deploy/kafka/kafka.sh stop --port $(TEST_KAFKA_PORT) --dir .run/kafka-test
	-deploy/postgres/pg.sh stop
	-deploy/kafka/kafka.sh stop --port 29392 --dir .run/bench/kafka-29392
	-deploy/postgres/pg.sh stop --port 25435 --dir /var/tmp/smits-pg-bench-25435

clean: stop
	rm -rf .run smits.db smits.db-wal smits.db-shm
