"""Label schemes and tumour regions, kept as data.

Every reader converts its file's labels into one internal scheme:

====  =========================================  ======================
code  internal meaning                           BraTS name
====  =========================================  ======================
0     background                                 --
1     necrotic / non-enhancing tumour core       NCR/NET (2023: NETC)
2     peritumoural edema                         ED (2023: SNFH)
3     enhancing tumour                           ET
====  =========================================  ======================

Binary schemes (LGG FLAIR abnormality, a plain tumour mask) map "tumour" to 1.
Regions are unions of internal labels: WT = {1, 2, 3}, TC = {1, 3}, ET = {3}.

A scheme is a mapping from the values found in a file to internal codes (``to_internal``)
and the value written back for each internal code (``from_internal``). Values a file holds
that the scheme does not know are an error naming the values; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

BACKGROUND, NCR, ED, ET = 0, 1, 2, 3
INTERNAL_NAMES: dict[int, str] = {0: "background", 1: "NCR/NET", 2: "ED", 3: "ET"}
#: Words for people (reports, summaries), by internal code.
INTERNAL_WORDS: dict[int, str] = {
    0: "background",
    1: "necrotic / non-enhancing core",
    2: "edema",
    3: "enhancing tumour",
}

#: BraTS regions as unions of internal labels (nnU-Net keeps these as data too).
REGIONS: dict[str, tuple[int, ...]] = {"WT": (NCR, ED, ET), "TC": (NCR, ET), "ET": (ET,)}


@dataclass(frozen=True)
class LabelScheme:
    """How one dataset family encodes tumour labels.

    Attributes:
        name: Short identifier used on the command line (``brats2020``, ``msd``...).
        to_internal: File value -> internal code (0-3).
        from_internal: Internal code -> file value written back. Codes missing here cannot be
            written in this scheme (an error, never a silent drop).
        names: File value -> what the dataset calls it.
        binary: True when the scheme only knows "tumour" vs background.
        description: One line for ``inspect`` and the docs.
    """

    name: str
    to_internal: dict[int, int]
    from_internal: dict[int, int]
    names: dict[int, str] = field(default_factory=dict)
    binary: bool = False
    description: str = ""

    @property
    def regions(self) -> dict[str, tuple[int, ...]]:
        """Regions that make sense for this scheme (binary schemes only have WT)."""
        if self.binary:
            return {"WT": (NCR,)}
        return REGIONS

    def encode(self, raw: NDArray[np.generic], *, source: str = "label map") -> NDArray[np.uint8]:
        """Convert file values to internal codes.

        Args:
            raw: Integer-valued label array of any shape (float arrays holding integers are
                accepted, as many NIfTI label maps are stored as float).
            source: Name of the file, used in error messages.

        Returns:
            uint8 array of the same shape with values in {0, 1, 2, 3}.

        Raises:
            ValueError: values that are not integers or not part of the scheme, naming them.
        """
        arr = np.asarray(raw)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"{source}: label map contains NaN/Inf; re-export it as integer labels"
                )
            rounded = np.rint(arr)
            if not np.array_equal(rounded, arr):
                raise ValueError(
                    f"{source}: label map holds non-integer values; it looks like an image, "
                    "not a segmentation: check which file is the label"
                )
            arr = rounded.astype(np.int64)
        values = np.unique(arr)
        unknown = sorted(int(v) for v in values if int(v) not in self.to_internal)
        if unknown:
            known = sorted(self.to_internal)
            raise ValueError(
                f"{source}: unknown label value(s) {unknown} for scheme '{self.name}' "
                f"(expects {known}); pass the right --label-scheme or fix the file"
            )
        lut_size = int(max(int(values.max()) if values.size else 0, max(self.to_internal))) + 1
        if values.size and int(values.min()) < 0:
            raise ValueError(f"{source}: negative label values {[int(v) for v in values if v < 0]}")
        lut = np.zeros(lut_size, dtype=np.uint8)
        for value, code in self.to_internal.items():
            lut[value] = code
        return lut[arr]

    def decode(
        self, internal: NDArray[np.integer], *, dtype: type = np.uint8
    ) -> NDArray[np.generic]:
        """Convert internal codes back to this scheme's file values.

        Raises:
            ValueError: an internal code this scheme cannot represent is present.
        """
        arr = np.asarray(internal)
        present = {int(v) for v in np.unique(arr)}
        missing = sorted(present - set(self.from_internal))
        if missing:
            raise ValueError(
                f"scheme '{self.name}' cannot represent internal label(s) "
                f"{[INTERNAL_NAMES.get(m, m) for m in missing]}; choose another --labels scheme"
            )
        lut = np.zeros(max(self.from_internal) + 1, dtype=np.int64)
        for code, value in self.from_internal.items():
            lut[code] = value
        return lut[arr].astype(dtype)


BRATS2020 = LabelScheme(
    name="brats2020",
    to_internal={0: 0, 1: NCR, 2: ED, 4: ET},
    from_internal={0: 0, NCR: 1, ED: 2, ET: 4},
    names={0: "background", 1: "NCR/NET", 2: "ED", 4: "ET"},
    description="BraTS 2018-2021: 1 NCR/NET, 2 edema, 4 enhancing",
)
BRATS2023 = LabelScheme(
    name="brats2023",
    to_internal={0: 0, 1: NCR, 2: ED, 3: ET},
    from_internal={0: 0, NCR: 1, ED: 2, ET: 3},
    names={0: "background", 1: "NETC", 2: "SNFH", 3: "ET"},
    description="BraTS 2023+: 1 NETC, 2 SNFH (edema), 3 enhancing",
)
#: Medical Segmentation Decathlon Task01 and nnU-Net's BraTS conversions (Dataset001/137).
MSD = LabelScheme(
    name="msd",
    to_internal={0: 0, 1: ED, 2: NCR, 3: ET},
    from_internal={0: 0, ED: 1, NCR: 2, ET: 3},
    names={0: "background", 1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"},
    description="Decathlon Task01 / nnU-Net BraTS: 1 edema, 2 non-enhancing, 3 enhancing",
)
#: BraTS 2013/2015 five-class labels. Necrosis and non-enhancing both become NCR/NET; written
#: back as 1 (necrosis), so a round trip through this scheme is lossy for label 3.
BRATS2013 = LabelScheme(
    name="brats2013",
    to_internal={0: 0, 1: NCR, 2: ED, 3: NCR, 4: ET},
    from_internal={0: 0, NCR: 1, ED: 2, ET: 4},
    names={0: "background", 1: "necrosis", 2: "edema", 3: "non-enhancing", 4: "enhancing"},
    description="BraTS 2013/2015: 1 necrosis, 2 edema, 3 non-enhancing, 4 enhancing",
)
#: BraTS 2013 single-slice "atropos_truth" maps: 1-3 are CSF/GM/WM tissue (background for us),
#: 4-7 are the BraTS 2013 tumour labels 1-4 shifted by 3.
BRATS2013_ATROPOS = LabelScheme(
    name="brats2013-atropos",
    to_internal={0: 0, 1: 0, 2: 0, 3: 0, 4: NCR, 5: ED, 6: NCR, 7: ET},
    from_internal={0: 0, NCR: 4, ED: 5, ET: 7},
    names={
        1: "CSF",
        2: "GM",
        3: "WM",
        4: "necrosis",
        5: "edema",
        6: "non-enhancing",
        7: "enhancing",
    },
    description="BraTS 2013 Atropos truth: 1-3 tissue, 4-7 tumour labels 1-4 + 3",
)
LGG = LabelScheme(
    name="lgg",
    to_internal={0: 0, 255: NCR},
    from_internal={0: 0, NCR: 255},
    names={0: "background", 255: "FLAIR abnormality"},
    binary=True,
    description="Kaggle LGG masks: 0 background, 255 FLAIR abnormality",
)
BINARY = LabelScheme(
    name="binary",
    to_internal={0: 0, 1: NCR},
    from_internal={0: 0, NCR: 1},
    names={0: "background", 1: "tumour"},
    binary=True,
    description="plain binary tumour mask: 0 background, 1 tumour",
)

SCHEMES: dict[str, LabelScheme] = {
    s.name: s for s in (BRATS2020, BRATS2023, MSD, BRATS2013, BRATS2013_ATROPOS, LGG, BINARY)
}

#: One-hot channel order of the Kaggle BraTS2020 HDF5 ``mask`` (NCR/NET, ED, ET).
ONEHOT_BRATS_CHANNELS: tuple[int, ...] = (NCR, ED, ET)


def get_scheme(name: str) -> LabelScheme:
    """Look a scheme up by name, with an error listing the known ones."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(
            f"unknown label scheme '{name}'; choose one of {sorted(SCHEMES)}"
        ) from None


def guess_scheme(values: set[int], *, hint: str | None = None) -> LabelScheme:
    """Pick the scheme that explains the values found in a label map.

    The layout's own scheme (``hint``) wins when it explains every value; otherwise BraTS 2020
    is chosen when a 4 is present, BraTS 2023 when a 3 is present (without 4), BraTS 2020 for
    {0, 1, 2} (both read those alike) and the LGG scheme for {0, 255}. Anything else is an
    error naming the values.
    """
    candidates = [hint] if hint else []
    if 4 in values:
        candidates.append("brats2020")
    elif 3 in values:
        candidates.append("brats2023")
    else:
        candidates.append("brats2020")  # {0, 1, 2}: BraTS 2020 and 2023 agree
    if values <= {0, 255}:
        candidates.append("lgg")
    for name in candidates:
        if name and values <= set(SCHEMES[name].to_internal):
            return SCHEMES[name]
    raise ValueError(
        f"label values {sorted(values)} match no known scheme "
        f"(known: {sorted(SCHEMES)}); pass --label-scheme"
    )


def onehot_to_internal(
    onehot: NDArray[np.generic],
    *,
    channels: tuple[int, ...] = ONEHOT_BRATS_CHANNELS,
    source: str = "mask",
) -> NDArray[np.uint8]:
    """Collapse a channels-last one-hot mask into internal codes.

    Args:
        onehot: (..., K) array of 0/1 values, channel k meaning internal code ``channels[k]``.
        channels: Internal code for each channel.
        source: File name for error messages.

    Returns:
        uint8 array of shape ``onehot.shape[:-1]``.

    Raises:
        ValueError: values other than 0/1, or a voxel claimed by two channels.
    """
    arr = np.asarray(onehot)
    if arr.shape[-1] != len(channels):
        raise ValueError(f"{source}: expected {len(channels)} mask channels, found {arr.shape[-1]}")
    values = {int(v) for v in np.unique(arr)}
    if not values <= {0, 1}:
        raise ValueError(
            f"{source}: one-hot mask holds value(s) {sorted(values - {0, 1})}; expected 0/1"
        )
    if np.any(arr.sum(axis=-1) > 1):
        raise ValueError(f"{source}: one-hot mask channels overlap; each voxel must have one label")
    out = np.zeros(arr.shape[:-1], dtype=np.uint8)
    for k, code in enumerate(channels):
        out[arr[..., k] > 0] = code
    return out


def region_counts(
    labels: NDArray[np.integer], regions: dict[str, tuple[int, ...]] = REGIONS
) -> dict[str, int]:
    """Voxel counts of labels 1-3 (by internal name) and of each region.

    Args:
        labels: Internal codes, any shape.
        regions: Region name -> internal codes (binary schemes pass ``{"WT": (1,)}``).

    Returns:
        ``{"NCR/NET": n1, "ED": n2, "ET": n3, <region>: n...}``; zeros for an empty map.
    """
    counts = np.bincount(np.asarray(labels).ravel(), minlength=4)
    out = {INTERNAL_NAMES[k]: int(counts[k]) for k in (1, 2, 3)}
    for name, codes in regions.items():
        out[name] = int(sum(counts[c] for c in codes))
    return out


def region_mask(labels: NDArray[np.integer], region: str) -> NDArray[np.bool_]:
    """Boolean mask of a BraTS region (``WT``, ``TC``, ``ET``) from internal codes."""
    if region not in REGIONS:
        raise ValueError(f"unknown region '{region}'; choose one of {sorted(REGIONS)}")
    return np.isin(labels, REGIONS[region])


__all__ = [
    "BINARY",
    "BRATS2013",
    "BRATS2013_ATROPOS",
    "BRATS2020",
    "BRATS2023",
    "INTERNAL_NAMES",
    "LGG",
    "MSD",
    "REGIONS",
    "SCHEMES",
    "LabelScheme",
    "get_scheme",
    "guess_scheme",
    "onehot_to_internal",
    "region_counts",
    "region_mask",
]
