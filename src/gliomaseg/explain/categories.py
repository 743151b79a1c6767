"""Rule-based categories of tumour features: each aspect gets one category, with evidence.

Rules. Every category comes from a measured feature (:mod:`gliomaseg.explain.features`,
formulas in ``FEATURE_DOCS``) compared with a constant of this module; each chosen sentence
carries that ``rule`` and its ``evidence`` (value, comparison, threshold), see
:func:`category_evidence`. TC (tumour core) = NCR/NET + ET; WT = TC + edema.

==================  =========================  ===================  ============================
category            quantity                   threshold            source / justification
==================  =========================  ===================  ============================
size small / large  WT volume (case), WT       < 10 / > 50 mL;      equal-volume spheres of 2.7
                    area (slice)               < 500 / > 1600 mm²   and 4.6 cm; slice: their
                                                                    cross-sections, rounded
margin irregular    irregularity = 1 -         >= 0.20 (case),      project convention: twice
                    solidity                   >= 0.15 (slice)      a digitised ball's 0.10 at
                                                                    5 voxels radius (see
                                                                    solidity_3d)
focality            n_components_major         >= 2                 two separate lesions each
multifocal          (each >= 5 % of WT)                             holding >= 5 % (specks left
                                                                    by a segmentation ignored)
focality diffuse    max opened_extent_mm       >= 80 mm, or         project convention (about
                    (bulk after a 3 mm ball    brain_fraction       half the brain's length);
                    opening), or               >= 0.15 (case)       the opening removes strands
                    brain_fraction                                  and stalks under ~6 mm thick,
                                                                    so a thin false-positive
                                                                    stalk cannot make a focal
                                                                    tumour diffuse
laterality          left / midline / right     see features         :func:`~gliomaseg.explain.
                    fractions                                       features.laterality_from_
                                                                    fractions`
necrosis present    core_fraction_NCR =        >= 0.05              shares of the core, not of
                    NCR/NET / TC                                    WT: edema is not tumour core
                                                                    (VASARI scores necrosis and
                                                                    enhancement as shares of the
                                                                    tumour without edema; its
                                                                    lowest graded share is 5 %)
enhancement none    core_fraction_ET =         < 0.05               as for necrosis
                    ET / TC (0 without core)
enhancement rim     et_rim_fraction            >= 0.5               ET covering most of the
                                                                    necrotic part's border
edema extensive     proportion_ED = ED / WT    >= 0.5               edema is most of the
                                                                    abnormality
==================  =========================  ===================  ============================

A tumour without a core (edema only) gets no necrosis sentence: there is no core to call
necrotic or solid. BraTS label 1 is necrotic *or* non-enhancing tumour, so the necrosis
sentences say "necrotic or non-enhancing" where the two cannot be told apart.

Binary masks (LGG, plain tumour masks) have no compartments: necrosis, enhancement and edema
are not described.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gliomaseg.core.laterality import BILATERAL_FRACTION, MIDLINE_MAJORITY

#: Whole-tumour volume (mL) bands of a case: (small/medium, medium/large) boundaries.
CASE_SIZE_BANDS_ML: tuple[float, float] = (10.0, 50.0)
#: Whole-tumour area (mm²) bands of a slice: (small/medium, medium/large) boundaries.
SLICE_SIZE_BANDS_MM2: tuple[float, float] = (500.0, 1600.0)
#: Irregularity (1 - solidity) at and above which a margin is irregular, by scope.
MARGIN_IRREGULARITY: dict[str, float] = {"case": 0.20, "slice": 0.15}
#: Components (each >= 5 % of the tumour) from which a tumour is multifocal.
MULTIFOCAL_COMPONENTS = 2
#: Extent (mm) of the tumour's bulk (``opened_extent_mm``) along any scanner axis at and
#: above which a single tumour is diffuse.
DIFFUSE_EXTENT_MM = 80.0
#: Share of the brain at and above which a tumour (case) is diffuse.
DIFFUSE_BRAIN_FRACTION = 0.15
#: NCR/NET share of the tumour core (``core_fraction_NCR``) at and above which a necrotic or
#: non-enhancing core is described.
NECROSIS_CORE_FRACTION = 0.05
#: ET share of the tumour core (``core_fraction_ET``) below which the tumour is non-enhancing.
ENHANCEMENT_CORE_FRACTION = 0.05
#: Share of the necrotic core's border covered by ET at and above which ET forms a rim.
RIM_FRACTION = 0.5
#: ED share of WT at and above which edema is extensive.
EDEMA_PROPORTION = 0.5

#: Aspects in the order sentences are reported, and their categories (library tags).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "presence": ("presence:none", "presence:tumour"),
    "size": ("size:small", "size:medium", "size:large"),
    "margin": ("margin:smooth", "margin:irregular"),
    "focality": ("focality:focal", "focality:multifocal", "focality:diffuse"),
    "laterality": (
        "laterality:left",
        "laterality:right",
        "laterality:bilateral",
        "laterality:midline",
    ),
    "necrosis": ("necrosis:present", "necrosis:absent"),
    "enhancement": ("enhancement:rim", "enhancement:patchy", "enhancement:none"),
    "edema": ("edema:extensive", "edema:limited"),
}
SCOPES: tuple[str, ...] = ("case", "slice")


def feature_scope(features: Mapping[str, Any]) -> str:
    """``"case"`` or ``"slice"``: the ``kind`` of a features dict (an error otherwise)."""
    kind = features.get("kind")
    if kind not in SCOPES:
        raise ValueError(
            f"features have kind {kind!r}; pass a dict from case_features or slice_features"
        )
    return str(kind)


def _need(features: Mapping[str, Any], keys: Iterable[str]) -> None:
    missing = [k for k in keys if k not in features]
    if missing:
        raise ValueError(
            f"features lack {missing}; pass the dict made by gliomaseg.explain.features"
        )


def size_measure(features: Mapping[str, Any]) -> tuple[float, tuple[float, float], str]:
    """(whole-tumour size, its band boundaries, unit): volume in mL (case), area in mm² (slice)."""
    if feature_scope(features) == "case":
        _need(features, ["volume_ml_WT"])
        return float(features["volume_ml_WT"]), CASE_SIZE_BANDS_ML, "mL"
    _need(features, ["area_mm2_WT"])
    return float(features["area_mm2_WT"]), SLICE_SIZE_BANDS_MM2, "mm²"


def _check(quantity: str, value: float, op: str, threshold: float, unit: str) -> dict[str, Any]:
    """One comparison of a measured value with a threshold, as recorded in a summary."""
    holds = {">=": value >= threshold, ">": value > threshold, "<": value < threshold}[op]
    return {
        "quantity": quantity,
        "value": float(value),
        "op": op,
        "threshold": float(threshold),
        "unit": unit,
        "holds": bool(holds),
    }


def _size_checks(features: Mapping[str, Any]) -> list[dict[str, Any]]:
    value, (low, high), unit = size_measure(features)
    quantity = "volume_ml_WT" if unit == "mL" else "area_mm2_WT"
    return [_check(quantity, value, "<", low, unit), _check(quantity, value, ">", high, unit)]


def size_band(features: Mapping[str, Any]) -> str | None:
    """Measured size band (``"small"``, ``"medium"``, ``"large"``); ``None`` when empty."""
    small, large = _size_checks(features)
    if features.get("empty") or small["value"] <= 0:
        return None
    return "small" if small["holds"] else "large" if large["holds"] else "medium"


def categorise(features: Mapping[str, Any]) -> dict[str, str]:
    """Rule-based category of each aspect (the rules: :func:`category_evidence`).

    Args:
        features: A :func:`~gliomaseg.explain.features.case_features` dict or one element
            of :func:`~gliomaseg.explain.features.slice_features`.

    Returns:
        Aspect -> category tag, in :data:`CATEGORIES` order. An empty mask has only
        ``{"presence": "presence:none"}``; binary masks have no necrosis, enhancement or
        edema, and a tumour without a core (no NCR/NET, no ET) has no necrosis aspect.
    """
    return {aspect: item["category"] for aspect, item in category_evidence(features).items()}


def category_evidence(features: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each aspect's category with the measurements and thresholds that decided it.

    The rules are the table in this module's docstring; every category comes from the
    comparisons listed with it, so a reader can redo the decision.

    Args:
        features: A :func:`~gliomaseg.explain.features.case_features` dict or one element
            of :func:`~gliomaseg.explain.features.slice_features`.

    Returns:
        Aspect -> ``{"category", "rule", "evidence"}``, in :data:`CATEGORIES` order;
        ``evidence`` lists ``{"quantity", "value", "op", "threshold", "unit", "holds"}``:
        the feature compared, its measured value, the comparison, the threshold and whether
        it holds. Fractions are 0-1.

    Raises:
        ValueError: features of an unknown kind or missing keys.
    """
    scope = feature_scope(features)
    _need(features, ["empty", "irregularity", "n_components_major", "extent_mm", "laterality"])
    presence = [_check("n_voxels", float(features.get("n_voxels") or 0), ">", 0, "voxels")]
    if features["empty"]:
        return {"presence": _item("presence:none", "tumour when n_voxels > 0", presence)}
    out = {"presence": _item("presence:tumour", "tumour when n_voxels > 0", presence)}
    out["size"] = _item(
        f"size:{size_band(features)}",
        "small below the first threshold, large above the second, else medium",
        _size_checks(features),
    )
    irregular = _check(
        "irregularity", float(features["irregularity"] or 0.0), ">=", MARGIN_IRREGULARITY[scope], ""
    )
    out["margin"] = _item(
        "margin:irregular" if irregular["holds"] else "margin:smooth",
        "irregular when 1 - solidity reaches the threshold, else smooth",
        [irregular],
    )
    out["focality"] = _focality(features, scope)
    if features.get("laterality"):
        out["laterality"] = _laterality(features)
    if not features.get("binary"):
        out.update(_compartments(features))
    return out


def _item(category: str, rule: str, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    return {"category": category, "rule": rule, "evidence": evidence}


def _focality(features: Mapping[str, Any], scope: str) -> dict[str, Any]:
    _need(features, ["opened_extent_mm"])
    checks = [
        _check(
            "n_components_major",
            int(features.get("n_components_major") or 0),
            ">=",
            MULTIFOCAL_COMPONENTS,
            "components",
        )
    ]
    extent = list(features.get("opened_extent_mm") or [0.0, 0.0, 0.0])
    if scope == "slice" and "axis" in features and len(extent) == 3:
        extent.pop(int(features["axis"]))  # in-plane extent only (canonical axes = x, y, z)
    checks.append(
        _check("max(opened_extent_mm)", max(extent, default=0.0), ">=", DIFFUSE_EXTENT_MM, "mm")
    )
    fraction = features.get("brain_fraction") if scope == "case" else None
    if fraction is not None:
        checks.append(_check("brain_fraction", fraction, ">=", DIFFUSE_BRAIN_FRACTION, ""))
    kind = (
        "multifocal"
        if checks[0]["holds"]
        else "diffuse"
        if any(c["holds"] for c in checks[1:])
        else "focal"
    )
    rule = (
        "multifocal with 2 or more components each holding >= 5% of the tumour; else diffuse "
        "when the bulk (after an opening that removes thin strands) spans the extent "
        "threshold along an axis"
        + (" or the tumour fills the brain-fraction threshold" if scope == "case" else "")
        + "; else focal"
    )
    return _item(f"focality:{kind}", rule, checks)


def _laterality(features: Mapping[str, Any]) -> dict[str, Any]:
    """The side decided by the features module, with the shares it was decided from."""
    shares = {k: float(features.get(f"{k}_fraction") or 0.0) for k in ("left", "midline", "right")}
    checks = [
        _check("left_fraction", shares["left"], ">=", BILATERAL_FRACTION, ""),
        _check("right_fraction", shares["right"], ">=", BILATERAL_FRACTION, ""),
        _check("midline_fraction", shares["midline"], ">=", MIDLINE_MAJORITY, ""),
    ]
    rule = (
        "from the features (laterality_from_fractions): bilateral when both sides reach their "
        "threshold, else midline when the midline band reaches its threshold, else the side "
        "holding more"
    )
    return _item(f"laterality:{features['laterality']}", rule, checks)


def _compartments(features: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Necrosis, enhancement and edema of a multi-label segmentation."""
    _need(features, ["core_fraction_NCR", "core_fraction_ET", "proportion_ED", "et_rim_fraction"])
    out: dict[str, dict[str, Any]] = {}
    ncr = features["core_fraction_NCR"]
    if ncr is not None:  # no core (edema only): nothing to say about necrosis
        check = _check("core_fraction_NCR", ncr, ">=", NECROSIS_CORE_FRACTION, "")
        out["necrosis"] = _item(
            "necrosis:present" if check["holds"] else "necrosis:absent",
            "present when NCR/NET is at least the threshold share of the tumour core "
            "(NCR + ET; edema excluded), else absent",
            [check],
        )
    # No core means no enhancing voxel: its share is 0.
    et = _check(
        "core_fraction_ET", features["core_fraction_ET"] or 0.0, "<", ENHANCEMENT_CORE_FRACTION, ""
    )
    rim = _check("et_rim_fraction", features["et_rim_fraction"] or 0.0, ">=", RIM_FRACTION, "")
    out["enhancement"] = _item(
        "enhancement:none"
        if et["holds"]
        else "enhancement:rim"
        if rim["holds"]
        else "enhancement:patchy",
        "none when ET is below the threshold share of the tumour core; else rim when ET covers "
        "at least the threshold share of the necrotic part's border (0 without NCR/NET); else "
        "patchy",
        [et, rim],
    )
    edema = _check(
        "proportion_ED", float(features["proportion_ED"] or 0.0), ">=", EDEMA_PROPORTION, ""
    )
    out["edema"] = _item(
        "edema:extensive" if edema["holds"] else "edema:limited",
        "extensive when edema is at least the threshold share of the whole tumour, else limited",
        [edema],
    )
    return out


__all__ = [
    "CASE_SIZE_BANDS_ML",
    "CATEGORIES",
    "DIFFUSE_BRAIN_FRACTION",
    "DIFFUSE_EXTENT_MM",
    "EDEMA_PROPORTION",
    "ENHANCEMENT_CORE_FRACTION",
    "MARGIN_IRREGULARITY",
    "MULTIFOCAL_COMPONENTS",
    "NECROSIS_CORE_FRACTION",
    "RIM_FRACTION",
    "SCOPES",
    "SLICE_SIZE_BANDS_MM2",
    "categorise",
    "category_evidence",
    "feature_scope",
    "size_band",
    "size_measure",
]
