# Two entry points, each self-contained on a fresh machine:
#   make test   set up .venv, then lint, type-check and run the test suite
#   make demo   set up .venv, then run the main job on a bundled synthetic case
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest setup clean

setup: $(STAMP)

# torch is pinned exactly: a CPU wheel of 2.13.0 is available offline, anything looser pulls CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

pytest: $(STAMP)
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(BIN)/pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/gliomaseg demo -o demo_output

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
