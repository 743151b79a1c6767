# Two entry points, each self-contained on a fresh machine:
#   make test   set up .venv, then lint, type-check and run the test suite
#   make demo   set up .venv, then run the main job on a bundled synthetic case
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The case report's interactive viewer embeds NiiVue: the pinned release (version and npm
# integrity hash in viewer_assets.py) is fetched from registry.npmjs.org, verified and
# extracted here (git-ignored). Reports are written without the viewer when it is absent.
NIIVUE := src/gliomaseg/report/vendor/niivue.umd.js

.PHONY: test demo lint typecheck imports pytest setup clean

setup: $(STAMP) $(NIIVUE)
	@# Bytecode now, as a normal install has it (PYTHONDONTWRITEBYTECODE would stop Python writing
	@# it on first use): a cold 'gliomaseg segment' compiles 65 modules otherwise (0.13 s).
	$(BIN)/python -m compileall -q src > /dev/null

# torch is pinned exactly: a CPU wheel of 2.13.0 is available offline, anything looser pulls CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(NIIVUE): src/gliomaseg/report/viewer_assets.py | $(STAMP)
	$(BIN)/python -m gliomaseg.report.viewer_assets
	touch $(NIIVUE)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

# Import rules (pyproject.toml [tool.importlinter]; README, Development).
imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) $(NIIVUE)
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(BIN)/pytest -q

test: lint typecheck imports pytest

demo: $(STAMP) $(NIIVUE)
	$(BIN)/gliomaseg demo -o demo_output

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache src/gliomaseg/report/vendor test-artifacts
