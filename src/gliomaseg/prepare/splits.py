"""Patient-level splits: deterministic for a given seed whatever the order of the input list.

Splits are made per *patient*, never per slice or case, so one subject never sits in both
the training and the validation side of a fold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _unique_patients(patients: Sequence[str]) -> list[str]:
    if isinstance(patients, str):
        raise ValueError("patients must be a sequence of ids, not one string")
    ids = sorted({str(p) for p in patients})
    if not ids:
        raise ValueError("patients is empty; need at least one patient id to split")
    return ids


def _shuffled_strata(
    ids: list[str], strata: Mapping[str, str] | None, rng: np.random.Generator
) -> list[list[str]]:
    """Patients grouped by stratum (groups in sorted key order), each group shuffled."""
    if strata is None:
        groups = {"": ids}
    else:
        missing = [p for p in ids if p not in strata]
        if missing:
            raise ValueError(
                f"strata has no entry for {len(missing)} patient(s), e.g. {missing[:3]}; "
                "give every patient a stratum key (or pass strata=None)"
            )
        groups = {}
        for p in ids:
            groups.setdefault(str(strata[p]), []).append(p)
    return [[groups[key][i] for i in rng.permutation(len(groups[key]))] for key in sorted(groups)]


def _make_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def kfold_patients(
    patients: Sequence[str],
    k: int,
    *,
    seed: int | np.random.Generator = 0,
    strata: Mapping[str, str] | None = None,
) -> list[tuple[list[str], list[str]]]:
    """Deterministic patient-level k-fold split, optionally stratified.

    Ids are de-duplicated and sorted first (one id per slice is fine), so the result depends
    only on the set of patients and the seed. Each stratum (e.g. LGG institution from
    :func:`gliomaseg.prepare.workflow.stratum_of`) is shuffled and dealt round-robin over the folds, the dealing
    position carrying over from one stratum to the next, so fold sizes differ by at most one
    and every stratum is spread as evenly as possible.

    Args:
        patients: Patient ids, duplicates allowed.
        k: Number of folds, ``2 <= k <= number of distinct patients``.
        seed: Seed (or a generator, advanced in place) for the shuffle.
        strata: Optional patient id -> stratum key; must cover every patient.

    Returns:
        ``k`` pairs ``(train_ids, val_ids)``, each list sorted. Every patient is in exactly
        one validation fold and never in train and val of the same fold.
    """
    ids = _unique_patients(patients)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= len(ids):
        raise ValueError(
            f"k must be an int with 2 <= k <= number of patients ({len(ids)}), got {k!r}; "
            "use fewer folds or more patients"
        )
    groups = _shuffled_strata(ids, strata, _make_rng(seed))
    fold_of: dict[str, int] = {}
    position = 0
    for group in groups:
        for p in group:
            fold_of[p] = position % k
            position += 1
    folds = []
    for f in range(k):
        val = sorted(p for p in ids if fold_of[p] == f)
        train = sorted(p for p in ids if fold_of[p] != f)
        folds.append((train, val))
    return folds
