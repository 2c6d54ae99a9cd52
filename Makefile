# Quick start: `make run` sets up the example site and serves it; `make test` runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SITE ?= run/site

.PHONY: venv deps run test lint bench clean

$(BIN)/postroom: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/postroom

# Debian packages the tests use (real peers: swaks, smtp-sink/smtp-source from postfix, PostgreSQL).
deps:
	sh scripts/install-debian-deps.sh

run: venv
	@test -f $(SITE)/postroom.toml || $(BIN)/postroom init $(SITE) --example
	@$(BIN)/postroom db upgrade --site $(SITE)
	$(BIN)/postroom serve --site $(SITE)

test: venv deps
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check src tests bench

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf run .pytest_cache
