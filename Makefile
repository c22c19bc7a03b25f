# smits: `make run` (the demo on the embedded SQLite default) and `make test` (the whole suite).
SHELL := /bin/bash
# Python 3.11 to 3.13: python3 when it is one of them, else the newest of them found (PATH or pyenv).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell python3 -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null \
	&& echo python3 || for v in 3.13 3.12 3.11; do deploy/find-python.sh $$v && break; done)
endif
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The test broker uses this port and the next; both below the ephemeral port range.
TEST_KAFKA_PORT ?= 29092
# The test OpenID Connect provider (deploy/oidc), below the ephemeral port range too.
TEST_OIDC_PORT ?= 28080

.PHONY: run test test-faults bench bench-quick lint unit stop clean

$(INSTALLED): pyproject.toml
	@[ -n "$(PYTHON)" ] || { echo "smits needs Python 3.11, 3.12 or 3.13; none found (set PYTHON=/path/to/python3.X)"; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit("smits needs Python 3.11 to 3.13, found " + sys.version) if not (3, 11) <= sys.version_info[:2] <= (3, 13) else None'
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

# Starts Postgres, Kafka and the OIDC provider when they are not running and stops what it started (KEEP_INFRA=1 keeps them),
# then runs the unit tier under every other supported Python found on the machine.
test: lint
	TEST_KAFKA_PORT=$(TEST_KAFKA_PORT) TEST_OIDC_PORT=$(TEST_OIDC_PORT) deploy/test-suite.sh

# The fault-injection scenarios at full size (make test runs them at 300 triggers each).
FAULTS_SIZE ?= 5000
# Like make test, it stops the broker and the cluster it started when it ends (KEEP_INFRA=1 keeps them).
test-faults: $(INSTALLED)
	@set -euo pipefail; \
	started=""; \
	deploy/postgres/pg.sh status >/dev/null 2>&1 || started="$$started postgres"; \
	deploy/kafka/kafka.sh status --port $(TEST_KAFKA_PORT) --dir .run/kafka-test >/dev/null 2>&1 || started="$$started kafka"; \
	trap 'if [ "$${KEEP_INFRA:-0}" != 1 ]; then for w in $$started; do case $$w in \
	  postgres) deploy/postgres/pg.sh stop || true ;; \
	  kafka) deploy/kafka/kafka.sh stop --port $(TEST_KAFKA_PORT) --dir .run/kafka-test || true ;; \
	esac; done; fi' EXIT; \
	kafka="$$(deploy/kafka/kafka.sh start --port $(TEST_KAFKA_PORT) --dir .run/kafka-test)"; \
	pg_url="$$(deploy/postgres/pg.sh start)"; \
	SMITS_FAULTS_SIZE=$(FAULTS_SIZE) SMITS_TEST_PG_URL="$$pg_url" SMITS_TEST_KAFKA="$$kafka" \
	  $(BIN)/pytest tests/faults -s -p no:cacheprovider

# Benchmarks (BENCHMARKS.md): own Kafka (29392) and Postgres (25435); figures printed, never asserted.
# Three runs of the throughput and latency stages (medians reported), scale-out once, console and soak once.
bench: $(INSTALLED)
	$(BIN)/python -m bench --runs 3 --scale-out

# One run of the same stages at small sizes (a few minutes), to catch a collapse; counts are still checked exactly.
bench-quick: $(INSTALLED)
	$(BIN)/python -m bench --quick

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

stop:
	-deploy/kafka/kafka.sh stop --dir .run/kafka
	-deploy/kafka/kafka.sh stop --port $(TEST_KAFKA_PORT) --dir .run/kafka-test
	-deploy/oidc/oidc.sh stop --port $(TEST_OIDC_PORT) --dir .run/oidc-test
	-deploy/postgres/pg.sh stop
	-deploy/kafka/kafka.sh stop --port 29392 --dir .run/bench/kafka-29392
	-deploy/postgres/pg.sh stop --port 25435 --dir /var/tmp/smits-pg-bench-25435

clean: stop
	rm -rf .run .venv-3.* smits.db smits.db-wal smits.db-shm
