"""The image sections of a case report: modalities at the chosen slices, the probability
map, the per-slice probability chart and the 3D render."""

from __future__ import annotations

from typing import Any

from gliomaseg.io.outputs import MESH_PNG_SUFFIX, PROBS_SUFFIX
from gliomaseg.report import figures as figs
from gliomaseg.report.case_data import CaseFiles, CaseVolumes
from gliomaseg.report.framing import display_window
from gliomaseg.report.html import PNG_SIGNATURE, Figure, Section
from gliomaseg.report.style import CONTOUR_COLOURS, MODALITY_TITLES, words

#: Output channel names by channel count when the summary does not record them (the
#: shipped targets: binary, regions, classes4).
_DEFAULT_OUTPUTS: dict[int, tuple[str, ...]] = {
    1: ("tumour",),
    3: ("WT", "TC", "ET"),
    4: ("background", "NCR/NET", "ED", "ET"),
}


def _row_titles(files: CaseFiles, slices: list[int]) -> list[str]:
    probs = {int(s["index"]): s for s in files.summary.get("slices") or []}
    titles = []
    for z in slices:
        entry = probs.get(z)
        if entry is None:
            titles.append(f"slice {z}")
        else:
            titles.append(
                f"slice {entry['slice']}\np = {float(entry['max_tumour_probability']):.2f}"
            )
    return titles


def slices_section(files: CaseFiles, volumes: CaseVolumes, slices: list[int]) -> Section:
    """``slices``: each modality at the chosen slices with the masks outlined."""
    title = "Modalities at the flagged slices"
    if not volumes.images:
        return Section("slices", title, omitted="no input image could be read (see warnings)")
    if not slices:
        return Section("slices", title, omitted="no slice has tumour or tumour probability")
    images = {m: volumes.images[m] for m in MODALITY_TITLES if m in volumes.images}
    images.update({m: v for m, v in volumes.images.items() if m not in images})
    png = figs.modality_grid(
        images,
        slices,
        windows={m: display_window(v) for m, v in images.items()},
        spacing=volumes.spacing,
        row_titles=_row_titles(files, slices),
        prediction=volumes.prediction,
        reference=volumes.reference,
        binary=volumes.binary,
        orientation_known=volumes.orientation_known,
    )
    regions = ["WT"] if volumes.binary else list(CONTOUR_COLOURS)
    legend = ", ".join(
        f"{'tumour' if volumes.binary else words(r)} ({_colour_word(r)})" for r in regions
    )
    ref = "; reference: reddish purple, dashed" if volumes.reference is not None else ""
    which = "flagged" if files.summary.get("flagged_slices") else "most probable"
    fig = Figure(
        f"{files.case_id}_slices",
        png,
        alt=f"{len(slices)} {which} axial slices of each modality with the segmentation outlined",
        caption=(
            f"Axial slices ({which}; at most 4), {_convention(volumes)}. Predicted outlines: "
            f"{legend}{ref}."
        ),
    )
    return Section("slices", title, fig.html(), figures=[fig])


def _convention(volumes: CaseVolumes) -> str:
    if not volumes.orientation_known:
        return "orientation unknown (the input does not record it): sides are not marked"
    return "radiological convention: the patient's right is on the left, anterior at the top"


def _colour_word(region: str) -> str:
    return {"WT": "yellow", "TC": "vermillion", "ET": "sky blue"}[region]


def output_names(summary: dict[str, Any], k: int) -> tuple[list[str], bool]:
    """Names of the K probability channels, and whether they were assumed from K."""
    recorded = summary.get("outputs") or (summary.get("target") or {}).get("names")
    if isinstance(recorded, list) and len(recorded) == k:
        return [str(n) for n in recorded], False
    if k in _DEFAULT_OUTPUTS:
        return list(_DEFAULT_OUTPUTS[k]), True
    return [f"output {i + 1}" for i in range(k)], True


def probability_section(files: CaseFiles, volumes: CaseVolumes, slices: list[int]) -> Section:
    """``probability``: each network output's probability at the chosen slices."""
    title = "Probability map"
    if files.probs is None:
        return Section(
            "probability",
            title,
            omitted=f"no {files.case_id}{PROBS_SUFFIX} in {files.folder} (run 'gliomaseg "
            "segment' with --save-probabilities)",
        )
    if volumes.probs is None or not slices:
        return Section("probability", title, omitted="the probability map could not be read")
    names, assumed = output_names(files.summary, volumes.probs.shape[0])
    keep = [k for k, n in enumerate(names) if n != "background"]
    underlay_name = next((m for m in ("flair", "t2", "t1ce", "t1") if m in volumes.images), None)
    underlay = volumes.images.get(underlay_name) if underlay_name else None
    png = figs.probability_grid(
        volumes.probs[keep],
        [words(names[k]) for k in keep],
        slices,
        spacing=volumes.spacing,
        row_titles=_row_titles(files, slices),
        underlay=underlay,
        window=display_window(underlay) if underlay is not None else (0.0, 1.0),
        orientation_known=volumes.orientation_known,
    )
    note = " Output names assumed from the channel count." if assumed else ""
    over = f" over {MODALITY_TITLES[underlay_name]}" if underlay_name else ""
    fig = Figure(
        f"{files.case_id}_probability",
        png,
        alt="probability of each network output at the shown slices",
        caption=f"Probability of each network output (0-1, viridis){over}; values under "
        f"0.02 are transparent.{note}",
    )
    return Section("probability", title, fig.html(), figures=[fig])


def slice_chart_section(files: CaseFiles, slices: list[int]) -> Section:
    """``slice-probability``: the maximum tumour probability of every axial slice."""
    title = "Tumour probability per slice"
    entries = files.summary.get("slices") or []
    if not entries:
        return Section(
            "slice-probability", title, omitted="the summary records no per-slice probability"
        )
    ranked = "review" in files.summary  # its threshold is on the uncertainty score
    threshold = None if ranked else files.summary.get("flag_threshold")
    png = figs.slice_probability_chart(
        [int(e["index"]) for e in entries],
        [float(e["max_tumour_probability"]) for e in entries],
        threshold=None if threshold is None else float(threshold),
        chosen=slices,
    )
    flagged = len(files.summary.get("flagged_slices") or [])
    fig = Figure(
        f"{files.case_id}_slice_probability",
        png,
        alt="bar chart of the maximum tumour probability of every axial slice",
        caption=f"Maximum tumour probability of every axial slice; {flagged} slice(s) "
        + (
            "are flagged for review (ranked below); "
            if ranked
            else "at or above the flag threshold (vermillion) are flagged for review; "
        )
        + "triangles mark the slices shown above.",
    )
    return Section("slice-probability", title, fig.html(), figures=[fig])


def render_section(files: CaseFiles) -> Section:
    """``render``: the 3D surface views of ``gliomaseg explain``."""
    title = "3D render"
    if files.mesh_png is None:
        return Section(
            "render",
            title,
            omitted=f"no {files.case_id}{MESH_PNG_SUFFIX} in {files.explain_dir} (run 'gliomaseg explain')",
        )
    png = files.mesh_png.read_bytes()
    if not png.startswith(PNG_SIGNATURE):
        return Section("render", title, omitted=f"{files.mesh_png} is not a PNG image")
    fig = Figure(
        f"{files.case_id}_mesh",
        png,
        alt="three views of the 3D tumour surface",
        caption="Surface of the whole tumour at the true voxel spacing (gliomaseg explain).",
    )
    return Section("render", title, fig.html(), figures=[fig])
