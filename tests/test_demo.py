"""demo: segment -> evaluate -> explain -> report on one case, with a clear end message."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import make_case


def test_demo_on_a_users_case_runs_every_step(tiny_run, tmp_path, capsys):
    synth = make_case(
        rng=np.random.default_rng(11),
        case_id="BraTS2021_00077",
        template="phantom",
        shape=(32, 32, 20),
        tumour_radius_mm=8.0,
    )
    case = write_layout(synth, tmp_path / "in", layout="brats2020")
    out = tmp_path / "demo"
    model = tiny_run / "checkpoints" / "best.pt"
    assert main(["demo", "--case", str(case), "--model", str(model), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "segmentation" / "BraTS2021_00077_seg.nii.gz").exists()
    assert (out / "evaluation" / "per_case.csv").exists()
    assert (out / "explain" / "BraTS2021_00077_explanation.json").exists()
    report = out / "report" / "BraTS2021_00077_report.html"
    assert report.exists() and report.stat().st_size > 10_000
    assert f"report:        {report}" in printed
    dice_line = next(line for line in printed.splitlines() if line.startswith("Dice"))
    wt = float(dice_line.split("WT ")[1].split(",")[0])
    # the printed figure is the WT Dice of the written mask against the generated truth
    seg = np.asarray(nib.load(out / "segmentation" / "BraTS2021_00077_seg.nii.gz").dataobj) > 0
    truth = synth.label > 0
    assert wt == pytest.approx(2 * (seg & truth).sum() / (seg.sum() + truth.sum()), abs=5e-4)
    assert wt > 0.5  # the tiny model finds this phantom's tumour (0.89-0.96 on others)


def test_demo_refuses_a_folder_without_one_case(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["demo", "--case", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert code == 2
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "out" / "segmentation").exists()


def test_demo_on_an_lgg_patient_uses_the_lgg_model_and_completes(tmp_path, capsys):
    """It used to stop at the report step: LGG references are TIFF masks, not one NIfTI."""
    from gliomaseg.segment.models import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "lgg.pt").exists():
        pytest.skip(f"no bundled 'lgg' model in {WEIGHTS_DIR}")
    synth = make_case(
        rng=np.random.default_rng(43),
        case_id="TCGA_CS_4942_19970222",
        template="phantom",
        shape=(48, 48, 6),
        tumour_radius_mm=10.0,
    )
    patient = write_layout(synth, tmp_path / "in", layout="lgg-tiff")
    out = tmp_path / "demo"
    args = ["demo", "--case", str(patient), "-o", str(out), "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (out / "segmentation" / f"{patient.name}_summary.json").exists()
    assert "Dice against the case's labels: tumour" in printed
    report = out / "report" / f"{patient.name}_report.html"
    assert report.exists() and report.stat().st_size > 10_000
    assert "reference" in report.read_text()
