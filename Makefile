# Quick start: `make run` sets up the example site and serves it; `make test` runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SITE ?= run/site
OUTBOX ?= run/outbox
# The example's mailertable sends every other domain here: scripts/outbox.py keeps the mail.
OUTBOX_PORT := 2526

.PHONY: venv test-venv deps run test lint bench fuzz clean

# What running needs; the test extras (pytest, ruff, ...) come with test-venv.
$(BIN)/postroom: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/postroom
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/postroom
test-venv: $(VENV)/.test-extras

# Debian packages the tests use (real peers: swaks, smtp-sink/smtp-source from postfix, PostgreSQL).
deps:
	sh scripts/install-debian-deps.sh

# The verify step refuses a site that would send outside mail anywhere but the outbox (one
# written by an older `postroom init --example` did).
run: venv
	@test -f $(SITE)/postroom.toml || $(BIN)/postroom init $(SITE) --example
	@$(BIN)/postroom db upgrade --site $(SITE)
	@$(BIN)/postroom verify --site $(SITE) someone@example.net \
	  | grep -q '\[127.0.0.1\]:$(OUTBOX_PORT),' \
	  || { echo "$(SITE) sends outside mail off this machine: make clean; make run" >&2; exit 1; }
	@echo "example site: $(abspath $(SITE))   log: $(SITE)/log/mail.log"
	@echo "mail for other domains goes to the outbox, $(OUTBOX)/new/; nothing leaves this machine"
	@echo "in another terminal:"
	@echo "  export POSTROOM_SITE=$(abspath $(SITE))"
	@echo "  swaks --server 127.0.0.1 --port 2525 --from me@example.net --to rt@inf.example.ac.uk"
	@echo "      (local mail: $(SITE)/mail/rt/new/)"
	@echo "  $(BIN)/postroom users add alice --address alice@inf.example.ac.uk"
	@echo "  swaks --server 127.0.0.1 --port 5870 --tls --auth PLAIN --auth-user alice \\"
	@echo "      --from alice@inf.example.ac.uk --to friend@example.net      (outside: $(OUTBOX)/new/)"
	@echo "Ctrl-C stops the server and the outbox."
	$(BIN)/python scripts/outbox.py --port $(OUTBOX_PORT) $(OUTBOX) -- \
	  $(BIN)/postroom serve --site $(SITE)

# One pytest worker per core (TEST_WORKERS=0 runs them in this process): most tests wait
# on the servers they start, so one process leaves a core idle half the time.
TEST_WORKERS ?= auto
test: test-venv deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal

lint: test-venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

FUZZ_EXAMPLES ?= 1000000
FUZZ_ARGS ?=
# Long fuzz run (issue 10): every tests/fuzz target for $(FUZZ_EXAMPLES) inputs, then a report
# (run/fuzz/report.json; failing inputs in run/fuzz/found/). Exits 1 on a new finding.
fuzz: test-venv
	$(BIN)/python scripts/fuzz.py --examples $(FUZZ_EXAMPLES) $(FUZZ_ARGS)

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf run .pytest_cache
