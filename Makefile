# The two commands of README.md: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= dyzur.local.yaml

.PHONY: install run test lint format bench clean

# The virtualenv with dyzur and its dev tools, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Start the bridge on 127.0.0.1:8080 with the embedded SQLite store; the first run writes
# $(CONFIG) from the shipped example, with fresh tokens in $(CONFIG).tokens.
run: install
	test -f $(CONFIG) || $(BIN)/dyzur init $(CONFIG)
	$(BIN)/dyzur run --config $(CONFIG)

# The linters and the type checker (mypy, configured in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every test, after the linters.
test: lint
	$(BIN)/pytest

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_engine_memory.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_host_collector.py
	$(BIN)/python benchmarks/bench_agent.py
	$(BIN)/python benchmarks/bench_sla.py
	$(BIN)/python benchmarks/bench_siem.py
	$(BIN)/python benchmarks/bench_sinks.py
	$(BIN)/python benchmarks/bench_redmine.py
	$(BIN)/python benchmarks/bench_oncall.py
	$(BIN)/python benchmarks/bench_snmp.py
	$(BIN)/python benchmarks/bench_ssh.py
	$(BIN)/python benchmarks/bench_windows.py
	$(BIN)/python benchmarks/bench_transactions.py
	$(BIN)/python benchmarks/bench_alert_paths.py
	$(BIN)/python benchmarks/bench_tickets.py
	$(BIN)/python benchmarks/bench_incidents.py
	$(BIN)/python benchmarks/bench_web.py
	$(BIN)/python benchmarks/bench_cluster.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
