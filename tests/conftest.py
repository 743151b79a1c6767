"""Shared fixtures: tiny synthetic cases and the location of the real data."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


#: A small 2D region model that learns the synthetic phantoms in a few dozen CPU steps.
BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str) -> ModuleType:
    """``bench/<name>.py`` freshly imported as the module ``bench_<name>``."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TINY_TRAIN: dict = {
    "name": "test",
    "model": {"name": "unet", "features": [8, 16, 32], "norm": "batch"},
    "loss": {"name": "dice_bce"},
    "target": "regions",
    "patch_size": [32, 32],
    "tumour_fraction": 0.7,
    "epochs": 3,
    "steps_per_epoch": 20,
    "batch_size": 8,
    "lr": 0.01,
    "scheduler": "none",
    "fold": 0,
}


@pytest.fixture(autouse=True)
def _cli_logging_ends_with_the_test():
    """``main()`` gives the root logger a handler bound to that test's captured stderr; remove
    it afterwards, so a later test's log records never go to a closed stream (whose logging
    errors would land in that test's captured stderr)."""
    import logging

    root = logging.getLogger()
    level = root.level
    yield
    from gliomaseg.cli.main import _LineFormatter

    for handler in root.handlers[:]:
        if isinstance(handler.formatter, _LineFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    """A prepared cache of five synthetic phantom cases (5 patient-level folds)."""
    from gliomaseg.io.writers import write_layout
    from gliomaseg.prepare.workflow import PrepareConfig, prepare_dataset
    from gliomaseg.synthetic.phantoms import make_case

    root = tmp_path_factory.mktemp("synthetic")
    for i in range(5):
        synth = make_case(
            rng=np.random.default_rng(100 + i),
            case_id=f"Synth_{i:03d}",
            template="phantom",
            shape=(32, 32, 20),
            tumour_radius_mm=8.0,
        )
        write_layout(synth, root / "raw", layout="brats2020")
    prepare_dataset(root / "raw", root / "cache", config=PrepareConfig(folds=5, margin=0))
    return root / "cache"


@pytest.fixture(scope="session")
def tiny_run(synthetic_cache, tmp_path_factory) -> Path:
    """Run folder of :data:`TINY_TRAIN` trained on :func:`synthetic_cache`."""
    from gliomaseg.train.config import TrainConfig
    from gliomaseg.train.loop import train

    run = tmp_path_factory.mktemp("tiny") / "run"
    train(TrainConfig.from_dict(TINY_TRAIN), synthetic_cache, run, progress=False)
    return run


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (fresh clone elsewhere)")
    return SHARED_DATA
