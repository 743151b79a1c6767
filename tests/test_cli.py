"""Commands not covered elsewhere, through ``main([...])``: ``models`` and ``--layout-config``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.core.case import MODALITIES
from gliomaseg.segment.models import WEIGHTS_DIR
from gliomaseg.synthetic.phantoms import SyntheticCase, make_case


def test_models_lists_every_bundled_card_with_its_figures(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    cards = {p.stem: json.loads(p.read_text()) for p in sorted(WEIGHTS_DIR.glob("*.json"))}
    assert set(cards) == {"brats", "lgg"}  # the README promises both
    blocks = [b for b in out.strip().split("\n\n") if b]
    assert len(blocks) == len(cards)
    for block, (name, card) in zip(blocks, cards.items(), strict=True):
        lines = block.splitlines()
        assert lines[0] == f"{name}: {card['description']}"
        assert f"input: {', '.join(card['input_channels'])} " in lines[1]
        assert lines[1].endswith(f"output: {', '.join(card['target']['names'])}")
        cv = card["cross_validation"]
        region, stats = next(iter(cv["per_patient_3d"].items()))
        figure = f"{region} {stats['dice']['mean']:.3f} mean / {stats['dice']['median']:.3f} median"
        assert f"cross-validation Dice over {cv['n_patients']} patients: {figure}" in lines[3]


def test_models_without_bundled_cards_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("gliomaseg.segment.models.WEIGHTS_DIR", tmp_path)
    assert main(["models"]) == 0
    assert "no bundled models yet" in capsys.readouterr().out


def _arbitrary_names(case: SyntheticCase, folder: Path) -> None:
    """One case as ``imgs/{A,B,C,D}.nii.gz`` plus ``truth_map.nii.gz`` (brats2023 codes)."""
    (folder / "imgs").mkdir(parents=True)
    for m, name in zip(MODALITIES, "ABCD", strict=True):
        nib.save(nib.Nifti1Image(case.images[m], case.affine), folder / "imgs" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(case.label, case.affine), folder / "truth_map.nii.gz")


@pytest.fixture
def config_data(tmp_path) -> tuple[Path, Path, dict[str, SyntheticCase]]:
    """Two cases with names no layout knows, and a layout config kept outside them."""
    cases = {}
    for i, name in enumerate(("subj_a", "subj_b")):
        cases[name] = make_case(
            rng=np.random.default_rng(60 + i),
            case_id=name,
            template="phantom",
            shape=(20, 22, 18),
            spacing=(1.0, 1.0, 2.0),
        )
        _arbitrary_names(cases[name], tmp_path / "data" / name)
    config = tmp_path / "layout.json"
    config.write_text(
        json.dumps(
            {
                "modalities": {
                    m: f"imgs/{n}.nii.gz" for m, n in zip(MODALITIES, "ABCD", strict=True)
                },
                "label": "truth_map.nii.gz",
                "label_scheme": "brats2023",
            }
        )
    )
    return tmp_path / "data", config, cases


def test_layout_config_flag_lets_inspect_read_arbitrary_names(config_data, capsys):
    data, config, cases = config_data
    main(["inspect", str(data), "--json"])  # without the config: loose files, no case
    assert {c["layout"] for c in json.loads(capsys.readouterr().out)["cases"]} == {"nifti-file"}
    assert main(["inspect", str(data), "--json", "--layout-config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == []
    assert [c["case_id"] for c in report["cases"]] == ["subj_a", "subj_b"]
    for described in report["cases"]:
        truth = cases[described["case_id"]]
        assert described["layout"] == "config"
        assert described["label_scheme"] == "brats2023"
        assert described["modalities"] == list(MODALITIES)
        assert described["voxel_volume_ml"] == pytest.approx(0.002)
        wt_ml = float((truth.label > 0).sum()) * 0.002
        assert described["volume_ml"]["WT"] == pytest.approx(wt_ml, abs=1e-3)
        assert sorted(described["label_counts"].values()) == sorted(
            int((truth.label == k).sum()) for k in (0, 1, 2, 3)
        )


def test_layout_config_flag_lets_prepare_cache_arbitrary_names(config_data, tmp_path, capsys):
    data, config, _ = config_data
    cache = tmp_path / "cache"
    argv = ["prepare", str(data), "-o", str(cache), "--folds", "0", "--margin", "0"]
    assert main([*argv, "--layout-config", str(config)]) == 0
    index = json.loads((cache / "index.json").read_text())
    assert sorted(c["case_id"] for c in index["cases"]) == ["subj_a", "subj_b"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"modalities": {"flair": "x"}, "labels": "y"}))
    capsys.readouterr()
    assert main([*argv[:3], str(tmp_path / "cache2"), "--layout-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0] and "labels" in err[0]
