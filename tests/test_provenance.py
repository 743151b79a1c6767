"""Provenance (issue 15, item 8): model cards list their training cases; segment marks them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.cache import CACHE_FORMAT, load_index
from gliomaseg.io.writers import write_layout
from gliomaseg.models.checkpoint import load_checkpoint
from gliomaseg.report.case import build_case_report
from gliomaseg.segment.models import WEIGHTS_DIR
from gliomaseg.synthetic.phantoms import make_case
from gliomaseg.train.bundle import (
    TRAINING_CASE_NOTE,
    bundle_runs,
    read_card,
    training_case_record,
    training_cases,
)

TRAINING = {
    "training_cases": ["BraTS2021_00000", "Synth_slice_3"],
    "training_patients": ["BraTS2021_00000", "volume_9"],
    "training_case_aliases": {"BraTS-GLI-00000-000": "BraTS2021_00000"},
}


def test_training_case_record_matches_ids_patients_and_aliases() -> None:
    hit = training_case_record(TRAINING, "BraTS2021_00000")
    assert hit == {
        "used_to_train_model": True,
        "matched": "BraTS2021_00000",
        "note": TRAINING_CASE_NOTE,
    }
    by_patient = training_case_record(TRAINING, "volume_9_slice_40", "volume_9")
    assert by_patient["used_to_train_model"] is True and by_patient["matched"] == "volume_9"
    alias = training_case_record(TRAINING, "BraTS-GLI-00000-000")
    assert alias["used_to_train_model"] is True
    assert alias["matched"] == "BraTS2021_00000 (same patient as BraTS-GLI-00000-000)"
    assert training_case_record(TRAINING, "BraTS2021_00003") == {
        "used_to_train_model": False,
        "matched": None,
        "note": None,
    }
    unknown = training_case_record({"training_cases": None}, "BraTS2021_00000")
    assert unknown["used_to_train_model"] is None and "records no training cases" in unknown["note"]


def _fake_cache(root: Path, cases: list[tuple[str, str, bool]]) -> Path:
    root.mkdir(parents=True)
    index = {
        "format": CACHE_FORMAT,
        "cases": [{"case_id": c, "patient": p, "labelled": lab} for c, p, lab in cases],
        "folds": [],
    }
    (root / "index.json").write_text(json.dumps(index))
    return root


def test_training_cases_are_each_members_split_plus_the_extra_data(
    synthetic_cache: Path, tmp_path: Path
) -> None:
    index = load_index(synthetic_cache)
    everyone = sorted(c["case_id"] for c in index["cases"])
    extra = _fake_cache(tmp_path / "auto", [("Auto_1", "Auto_1", True), ("Auto_2", "P2", False)])
    run = tmp_path / "run"
    run.mkdir()
    one = {"data": str(synthetic_cache), "train_config": {"fold": 1}}
    got = training_cases([run], [one])
    held_out = set(index["folds"][1]["val"])
    assert held_out and got["training_cases"] == sorted(set(everyone) - held_out)
    # Two members that each hold out another fold saw every case; extra data joins whole
    # (its unlabelled case never trained anything).
    two = {"data": str(synthetic_cache), "train_config": {"fold": 0, "extra_data": str(extra)}}
    got = training_cases([run, run], [one, two])
    assert got["training_cases"] == sorted([*everyone, "Auto_1"])
    # A raw dataset folder: the cache train prepared inside the run folder is used.
    _fake_cache(run / "cache", [("Raw_1", "Raw_1", True)])
    raw = {"data": str(tmp_path / "raw_dataset"), "train_config": {"fold": -1}}
    assert training_cases([run], [raw])["training_cases"] == ["Raw_1"]
    # Caches gone: unknown, not a guess.
    gone = {"data": str(tmp_path / "nowhere"), "train_config": {"fold": 0}}
    assert training_cases([tmp_path], [gone]) == {
        "training_cases": None,
        "training_patients": None,
    }


def test_segment_marks_a_training_case_in_summary_report_and_evaluate(
    tiny_run: Path, synthetic_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "tiny.pt"
    card = bundle_runs([tiny_run], model, description="tiny", checkpoint="best.pt")
    index = load_index(synthetic_cache)
    held_out = set(index["folds"][0]["val"])  # tiny_run trained fold 0
    trained = sorted(c["case_id"] for c in index["cases"] if c["patient"] not in held_out)
    assert card["training_cases"] == trained
    assert load_checkpoint(model)["training_cases"] == trained
    assert read_card(model.with_suffix(".json"))["training_cases"] == trained

    data = tmp_path / "in"
    seen, unseen = trained[0], "Fresh_900"
    for cid, seed in ((seen, 5), (unseen, 6)):
        synth = make_case(
            rng=np.random.default_rng(seed),
            case_id=cid,
            template="phantom",
            shape=(32, 32, 20),
            tumour_radius_mm=8.0,
        )
        write_layout(synth, data, layout="brats2020")
    out = tmp_path / "out"
    assert main(["segment", str(data), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    summary = json.loads((out / f"{seen}_summary.json").read_text())
    assert summary["training_case"] == {
        "used_to_train_model": True,
        "matched": seen,
        "note": TRAINING_CASE_NOTE,
    }
    other = json.loads((out / f"{unseen}_summary.json").read_text())
    assert other["training_case"]["used_to_train_model"] is False

    warnings = build_case_report(out, case_id=seen).warnings
    assert any(TRAINING_CASE_NOTE in w for w in warnings)
    assert not any(TRAINING_CASE_NOTE in w for w in build_case_report(out, case_id=unseen).warnings)

    evaluation = tmp_path / "e"
    assert main(["evaluate", "--pred", str(out), "--gt", str(data), "-o", str(evaluation)]) == 0
    assert json.loads((evaluation / "summary.json").read_text())["used_to_train_model"] == [seen]
    assert "used to train the model" in capsys.readouterr().out

    # A plain training checkpoint records no training cases: unknown, said so.
    plain = tmp_path / "plain"
    best = tiny_run / "checkpoints" / "best.pt"
    assert main(["segment", str(data / unseen), "-o", str(plain), "--model", str(best)]) == 0
    record = json.loads((plain / f"{unseen}_summary.json").read_text())["training_case"]
    assert record["used_to_train_model"] is None


def test_shipped_cards_list_their_training_cases() -> None:
    for name in ("brats", "lgg"):
        card = read_card(WEIGHTS_DIR / f"{name}.json")
        cv = {p for fold in card["folds"] for p in fold["val_patients"]}
        # a complete fold ensemble: every training patient was held out by exactly one member
        assert cv and cv == set(card["training_patients"]), name
        assert set(card["training_cases"]) >= cv, name
        for alias, trained in card.get("training_case_aliases", {}).items():
            assert trained in card["training_cases"], alias
    brats = read_card(WEIGHTS_DIR / "brats.json")
    # The HDF5 slices of BraTS19_CBICA_ABM_1 (patient volume_7) are marked, others not.
    assert training_case_record(brats, "volume_7_slice_30", "volume_7")["used_to_train_model"]
    assert not training_case_record(brats, "volume_17_slice_30", "volume_17")["used_to_train_model"]


def test_case_alias_flags_parse_or_fail_in_one_line() -> None:
    from gliomaseg.cli.train import _aliases
    from gliomaseg.core.errors import InputError

    assert _aliases(["a=b", "c=d"]) == {"a": "b", "c": "d"}
    with pytest.raises(InputError, match="ALIAS=ID"):
        _aliases(["volume_7"])


@pytest.mark.realdata
def test_shipped_lgg_card_lists_exactly_the_development_patients(shared_data: Path) -> None:
    dev = (shared_data / "lgg" / "dev_patients.txt").read_text().split()
    assert sorted(read_card(WEIGHTS_DIR / "lgg.json")["training_cases"]) == sorted(dev)
