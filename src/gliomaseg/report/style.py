"""Words and colours shared by every report: labels in words, the Okabe-Ito palette."""

from __future__ import annotations

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Region / label abbreviations (summaries, evaluate columns, training metrics) -> words.
WORDS: dict[str, str] = {
    "WT": "whole tumour",
    "TC": "tumour core",
    "ET": "enhancing tumour",
    "NCR/NET": "necrotic / non-enhancing core",
    "NCR": "necrotic / non-enhancing core",
    "NETC": "necrotic / non-enhancing core",
    "ED": "edema",
    "SNFH": "edema",
    "tumour": "tumour",
    "background": "background",
    "label1": "necrotic / non-enhancing core (label)",
    "label2": "edema (label)",
    "label3": "enhancing tumour (label)",
    "mean": "mean over outputs",
}

#: Display names of the modalities (:data:`gliomaseg.core.case.MODALITIES`), in channel order.
MODALITY_TITLES: dict[str, str] = {
    "flair": "FLAIR",
    "t1": "T1",
    "t1ce": "T1 post-contrast",
    "t2": "T2",
}

#: Line colour of each region or label in charts (same hue on every page).
SERIES_COLOURS: dict[str, str] = {
    "WT": OKABE_ITO["orange"],
    "TC": OKABE_ITO["vermillion"],
    "ET": OKABE_ITO["blue"],
    "NCR/NET": OKABE_ITO["reddish_purple"],
    "NCR": OKABE_ITO["reddish_purple"],
    "ED": OKABE_ITO["bluish_green"],
    "tumour": OKABE_ITO["orange"],
    "label1": OKABE_ITO["reddish_purple"],
    "label2": OKABE_ITO["bluish_green"],
    "label3": OKABE_ITO["sky_blue"],
    "mean": OKABE_ITO["black"],
}
#: Outline colour of each predicted region on greyscale MR (bright hues read best on grey).
CONTOUR_COLOURS: dict[str, str] = {
    "WT": OKABE_ITO["yellow"],
    "TC": OKABE_ITO["vermillion"],
    "ET": OKABE_ITO["sky_blue"],
}
#: The reference (ground truth) is outlined in one other hue, dashed.
REFERENCE_COLOUR = OKABE_ITO["reddish_purple"]


def words(name: str) -> str:
    """Words for a region/label abbreviation (``"WT"`` -> ``"whole tumour"``); else the name."""
    return WORDS.get(name, name)


def series_colour(name: str, index: int = 0) -> str:
    """Chart colour of a region/label, or a palette colour by position for other names."""
    if name in SERIES_COLOURS:
        return SERIES_COLOURS[name]
    cycle = [c for k, c in OKABE_ITO.items() if k != "black"]
    return cycle[index % len(cycle)]
