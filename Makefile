# The two commands: `make up` (start the whole stack) and `make test` (run the tests).
# Both install what is missing first, into .venv, from pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := api lakehouse lakehouse_assets lakehouse_cli devstack bench tests
CADDY := $(VENV)/tools/caddy
PSQL := $(VENV)/tools/psql
JDBC := $(VENV)/tools/postgresql-jdbc.jar

.PHONY: up test test-fast install check bench docs clean

up: install
	$(BIN)/lakehouse up

# pytest exits 5 when a selection holds no test: not a failure.
# Two workers, a test file (or a package sharing one stack: tests/conftest.py) per worker at
# a time, so module- and package-scoped stacks start once, in the order tests/conftest.py
# gives (the slowest files first); the 20 slowest steps are listed at the end, to keep CI's
# time in view.
test: install
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=20 $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The inner loop: only tests that start no process (no S3 server, Dagster or Postgres).
test-fast: install
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS) || [ $$? -eq 5 ]

install: $(STAMP) $(CADDY) $(PSQL) $(JDBC)

# Byte-compiled here, on every core (pip would do it one module after another), the
# project's packages too: where PYTHONDONTWRITEBYTECODE is set (this CI machine sets it),
# Python writes no .pyc itself, so every process would compile each module it imports from
# source again: a stack's start took 92 CPU-s of the machine instead of 43.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib $(PACKAGES)
	touch $(STAMP)

# Caddy, the reverse proxy docs/Caddyfile configures for the Dagster UI (the tests run it):
# Debian's package, unpacked into the venv (no service installed or started).
$(CADDY):
	mkdir -p $(VENV)/tools/deb
	cd $(VENV)/tools/deb && (apt-get download caddy >/dev/null || { echo \
	  "could not download Debian's caddy package: run 'apt-get update' as root and retry"; \
	  exit 1; }) && dpkg -x caddy_*.deb unpacked
	cp $(VENV)/tools/deb/unpacked/usr/bin/caddy $(CADDY)
	rm -rf $(VENV)/tools/deb

# Full benchmark on the real stack (~30 min, half of it the 1,000-object Iceberg figure):
# writes docs/BENCHMARKS.md. `python -m bench.run --only <figures>` measures single figures.
bench: install
	$(BIN)/python -m bench.run

# The Postgres endpoint's real clients, which the tests drive: psql (Debian's
# postgresql-client, with the libpq it needs) behind a wrapper, and the JDBC driver (Debian's
# libpostgresql-jdbc-java; the JDK is the machine's own). Unpacked into the venv, nothing
# installed system-wide.
$(PSQL):
	rm -rf $(VENV)/tools/pg && mkdir -p $(VENV)/tools/pg
	cd $(VENV)/tools/pg && (apt-get download postgresql-client-15 libpq5 >/dev/null || { echo \
	  "could not download Debian's postgresql-client-15: run 'apt-get update' as root and retry"; \
	  exit 1; }) && for deb in *.deb; do dpkg -x $$deb unpacked; done && rm -f *.deb
	printf '#!/bin/sh\nhere=$$(dirname "$$(readlink -f "$$0")")/pg/unpacked\nLD_LIBRARY_PATH="$$here/usr/lib/x86_64-linux-gnu$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" exec "$$here/usr/lib/postgresql/15/bin/psql" "$$@"\n' > $(PSQL)
	chmod +x $(PSQL)

$(JDBC):
	mkdir -p $(VENV)/tools/deb
	cd $(VENV)/tools/deb && (apt-get download libpostgresql-jdbc-java >/dev/null || { echo \
	  "could not download Debian's libpostgresql-jdbc-java: run 'apt-get update' as root and retry"; \
	  exit 1; }) && dpkg -x libpostgresql-jdbc-java_*.deb unpacked
	cp $(VENV)/tools/deb/unpacked/usr/share/java/postgresql.jar $(JDBC)
	rm -rf $(VENV)/tools/deb

# docs/CONFIGURATION.md, generated from the settings object (a unit test fails while it is
# stale): after changing lakehouse/settings.py.
docs: install
	$(BIN)/lakehouse config-docs > docs/CONFIGURATION.md.tmp
	mv docs/CONFIGURATION.md.tmp docs/CONFIGURATION.md

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .lakehouse .pytest_cache .mypy_cache .ruff_cache
