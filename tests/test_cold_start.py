"""Cold start: ``segment``, ``inspect``, ``evaluate`` and ``report`` import neither MONAI nor
transformers (together ~5 s of a ~13 s cold ``segment`` on a 2-core CPU).

Each check runs in a fresh interpreter, as a user's command does, and reads ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import make_case

HEAVY = ("monai", "transformers", "sentence_transformers")

_PROBE = """
import json, sys
{setup}
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"rc": rc, "heavy": heavy}}))
"""


def _heavy_after(setup: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    code = _PROBE.format(setup=setup, heavy=heavy)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0, proc.stderr[-2000:]
    heavy: list[str] = result["heavy"]
    return heavy


def test_import_segment_is_light() -> None:
    assert _heavy_after("import gliomaseg.segment.workflow, gliomaseg.cli.main; rc = 0") == []


def test_segment_batch_reads_before_torch_is_imported() -> None:
    """``segment_inputs`` starts its case reader before importing torch (the cold start
    overlaps them), so the modules up to that point must import neither torch nor
    scipy.ndimage (0.17 s; nibabel's own import of the bare ``scipy`` package is cheap)."""
    setup = (
        "import gliomaseg.segment.batch, gliomaseg.segment.config, gliomaseg.cli.main; "
        "rc = int('scipy.ndimage' in sys.modules)"
    )
    assert _heavy_after(setup, ("torch",)) == []


@pytest.fixture(scope="module")
def segmented(tmp_path_factory) -> tuple[Path, Path]:
    """A BraTS-layout phantom and its segmentation by the bundled ``brats`` model."""
    from gliomaseg.cli.main import main

    root = tmp_path_factory.mktemp("cold")
    synth = make_case(
        rng=np.random.default_rng(7),
        case_id="Case_042",
        template="phantom",
        shape=(32, 32, 12),
        tumour_radius_mm=8.0,
    )
    folder = write_layout(synth, root / "in", layout="brats2020")
    out = root / "seg"
    assert main(["segment", str(folder), "-o", str(out), "--model", "brats", "--no-progress"]) == 0
    return folder, out


@pytest.mark.parametrize("command", ["segment", "inspect", "evaluate", "report"])
def test_command_imports_neither_monai_nor_transformers(
    segmented: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    folder, seg = segmented
    argv = {
        "segment": ["segment", str(folder), "-o", str(tmp_path / "s"), "--no-progress"],
        "inspect": ["inspect", str(folder)],
        "evaluate": ["evaluate", "--pred", str(seg), "--gt", str(folder), "-o", str(tmp_path)],
        "report": ["report", str(seg)],
    }[command]
    setup = f"from gliomaseg.cli.main import main; rc = main({argv!r})"
    assert _heavy_after(setup) == []


def test_console_script_exit_keeps_code_output_and_files(
    segmented: tuple[Path, Path], tmp_path: Path
) -> None:
    """``gliomaseg`` ends with ``os._exit`` (skipping ~0.45 s of teardown): the exit code,
    piped stdout/stderr and every output file must still be there."""
    folder, _ = segmented
    out = tmp_path / "s"
    run = [sys.executable, "-m", "gliomaseg", "segment", str(folder), "-o", str(out)]
    proc = subprocess.run(
        [*run, "--model", "brats", "--no-progress"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("Case_042_seg.nii.gz")
    summary = json.loads((out / "Case_042_summary.json").read_text())
    assert summary["case_id"] == "Case_042"
    bad = subprocess.run(
        [sys.executable, "-m", "gliomaseg", "segment", str(tmp_path / "nothing"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2
    assert "nothing" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
