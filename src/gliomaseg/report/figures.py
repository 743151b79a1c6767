"""Report figures drawn with matplotlib's Agg canvas, returned as PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state), so they
are safe to draw from any thread and leave nothing open. Axial slices of canonical RAS+
volumes are shown in the radiological convention: anterior at the top and the patient's
right on the viewer's left (:func:`display_slice`). Colours come from the Okabe-Ito palette
(:mod:`gliomaseg.report.style`); lines also differ in style where colour alone would carry
meaning.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.labels import REGIONS
from gliomaseg.report.style import (
    CONTOUR_COLOURS,
    MODALITY_TITLES,
    OKABE_ITO,
    REFERENCE_COLOUR,
    series_colour,
    words,
)

DPI = 100
#: Panel size (inches) of one slice image.
PANEL_IN = 2.3


def _figure(width: float, height: float, *, constrained: bool = False) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Any) -> bytes:
    """PNG bytes of a figure (no timestamp in the metadata, so output is reproducible)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def display_slice(plane: NDArray[Any]) -> NDArray[Any]:
    """(X, Y) plane of a RAS+ volume -> (Y, X) rows for display, radiological convention.

    Row 0 is the most anterior voxel row; column 0 is the patient's right.
    """
    return np.asarray(plane).T[::-1, ::-1]


def region_masks(label: NDArray[np.integer], *, binary: bool) -> dict[str, NDArray[np.bool_]]:
    """Region name -> boolean mask of internal codes (only ``WT`` for binary schemes)."""
    if binary:
        return {"WT": label > 0}
    return {name: np.isin(label, codes) for name, codes in REGIONS.items()}


def _outline(
    ax: Any, mask: NDArray[np.bool_], colour: str, *, width: float, dashed: bool = False
) -> None:
    if mask.any() and not mask.all():
        ax.contour(
            mask.astype(np.float32),
            levels=[0.5],
            colors=[colour],
            linewidths=width,
            linestyles=[(0, (4.0, 3.0))] if dashed else "-",
        )


#: Side markers of a :func:`display_slice` panel: letter -> (x, y) in axes fractions
#: (y = 1 at the top). Anterior is the top row, the patient's right the left column.
ORIENTATION_MARKS: dict[str, tuple[float, float]] = {
    "R": (0.02, 0.5),
    "L": (0.98, 0.5),
    "A": (0.5, 0.98),
    "P": (0.5, 0.02),
}


def _orientation_marks(ax: Any, *, known: bool = True) -> None:
    style = {"color": "white", "fontsize": 8, "transform": ax.transAxes, "fontweight": "bold"}
    if not known:  # no letters rather than a guess
        ax.text(0.5, 0.98, "orientation unknown", ha="center", va="top", **style)
        return
    for letter, (x, y) in ORIENTATION_MARKS.items():
        ha = "left" if x < 0.1 else "right" if x > 0.9 else "center"
        va = "top" if y > 0.9 else "bottom" if y < 0.1 else "center"
        ax.text(x, y, letter, ha=ha, va=va, **style)


def modality_grid(
    images: Mapping[str, NDArray[np.floating]],
    slices: Sequence[int],
    *,
    windows: Mapping[str, tuple[float, float]],
    spacing: Sequence[float],
    row_titles: Sequence[str],
    prediction: NDArray[np.integer] | None = None,
    reference: NDArray[np.integer] | None = None,
    binary: bool = False,
    orientation_known: bool = True,
) -> bytes:
    """Axial slices (rows) of each modality (columns) with the masks outlined.

    Args:
        images: Modality -> (X, Y, Z) canonical RAS+ intensities.
        slices: Axial (z) indices to show, one row each.
        windows: Modality -> (low, high) display window (e.g. brain 1st/99th percentile).
        spacing: Voxel size (mm) along X, Y, Z (sets the pixel aspect).
        row_titles: One title per row.
        prediction: (X, Y, Z) internal codes outlined per region (solid lines).
        reference: (X, Y, Z) internal codes outlined in :data:`REFERENCE_COLOUR`, dashed.
        binary: Outline only the whole tumour ("tumour").
        orientation_known: False: "orientation unknown" instead of the A/P/L/R markers.
    """
    # Long: one matplotlib figure, panel by panel; splitting it would scatter its layout.
    from matplotlib.lines import Line2D

    names = list(images)
    fig = _figure(PANEL_IN * len(names) + 0.4, PANEL_IN * len(slices) + 0.7, constrained=True)
    aspect = float(spacing[1]) / float(spacing[0])
    pred_masks = region_masks(prediction, binary=binary) if prediction is not None else {}
    ref_masks = region_masks(reference, binary=binary) if reference is not None else {}
    for row, z in enumerate(slices):
        for col, name in enumerate(names):
            ax = fig.add_subplot(len(slices), len(names), row * len(names) + col + 1)
            lo, hi = windows[name]
            plane = display_slice(images[name][:, :, z])
            ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            # Nested regions often share a boundary (TC and ET around a small core): each
            # inner region is drawn thinner on top, so every colour stays visible, and the
            # dashed reference goes last, thinnest, so the prediction shows between dashes.
            for width, (region, mask) in zip((3.0, 2.2, 1.0), pred_masks.items(), strict=False):
                _outline(ax, display_slice(mask[:, :, z]), CONTOUR_COLOURS[region], width=width)
            for mask in ref_masks.values():
                _outline(ax, display_slice(mask[:, :, z]), REFERENCE_COLOUR, width=1.2, dashed=True)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(MODALITY_TITLES.get(name, name), fontsize=10)
                if col == 0:
                    _orientation_marks(ax, known=orientation_known)
            if col == 0:
                ax.set_ylabel(row_titles[row], fontsize=9)
    handles = [
        Line2D([], [], color=CONTOUR_COLOURS[r], lw=2, label=f"predicted {words(r)}")
        for r in (pred_masks if not binary else {"WT": None})
        if prediction is not None
    ]
    if binary and handles:
        handles[0].set_label("predicted tumour")
    if reference is not None:
        handles.append(
            Line2D([], [], color=REFERENCE_COLOUR, lw=2, ls=(0, (4.0, 3.0)), label="reference")
        )
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    return to_png(fig)


def probability_grid(
    probs: NDArray[np.floating],
    names: Sequence[str],
    slices: Sequence[int],
    *,
    spacing: Sequence[float],
    row_titles: Sequence[str],
    underlay: NDArray[np.floating] | None = None,
    window: tuple[float, float] = (0.0, 1.0),
    orientation_known: bool = True,
) -> bytes:
    """Probability of each network output (columns) at axial slices (rows), 0-1 (viridis).

    Args:
        probs: (K, X, Y, Z) probabilities on the canonical grid.
        names: Column title of each of the K outputs (words).
        slices: Axial (z) indices, one row each.
        spacing: Voxel size (mm) along X, Y, Z.
        row_titles: One title per row.
        underlay: Optional (X, Y, Z) image drawn in grey under the probabilities.
        window: Display window of the underlay.
        orientation_known: False: "orientation unknown" instead of the A/P/L/R markers.
    """
    k = probs.shape[0]
    fig = _figure(PANEL_IN * k + 1.0, PANEL_IN * len(slices) + 0.4, constrained=True)
    aspect = float(spacing[1]) / float(spacing[0])
    shown = None
    for row, z in enumerate(slices):
        for col in range(k):
            ax = fig.add_subplot(len(slices), k, row * k + col + 1)
            if underlay is not None:
                ax.imshow(  # dimmed (white at 1.6x the window top) so the colours stand out
                    display_slice(underlay[:, :, z]),
                    cmap="gray",
                    vmin=window[0],
                    vmax=window[0] + 1.6 * (window[1] - window[0]),
                    aspect=aspect,
                    interpolation="nearest",
                )
            plane = display_slice(probs[col, :, :, z])
            shown = ax.imshow(
                np.ma.masked_less(plane, 0.02),
                cmap="viridis",
                vmin=0.0,
                vmax=1.0,
                alpha=0.8 if underlay is not None else 1.0,
                aspect=aspect,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(names[col], fontsize=10)
                if col == 0:
                    _orientation_marks(ax, known=orientation_known)
            if col == 0:
                ax.set_ylabel(row_titles[row], fontsize=9)
    if shown is not None:
        fig.colorbar(shown, ax=fig.axes, shrink=0.6, label="probability")
    return to_png(fig)


def slice_probability_chart(
    indices: Sequence[int],
    probability: Sequence[float],
    *,
    threshold: float | None,
    chosen: Sequence[int] = (),
) -> bytes:
    """Bar chart of the maximum tumour probability of every axial slice.

    Args:
        indices: Axial slice indices (x axis).
        probability: Maximum tumour probability of each slice, 0-1.
        threshold: The flag threshold, drawn as a dashed line (None: not drawn).
        chosen: Slices shown in the image panels, marked with a triangle.
    """
    fig = _figure(10.0, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    p = np.asarray(probability, dtype=np.float64)
    idx = np.asarray(indices)
    above = p >= threshold if threshold is not None else np.zeros(p.shape, bool)
    colours = np.where(above, OKABE_ITO["vermillion"], OKABE_ITO["sky_blue"])
    ax.bar(idx, p, width=0.9, color=list(colours))
    if threshold is not None:
        ax.axhline(threshold, color="black", ls="--", lw=1.2)
        ax.text(
            idx.min() if idx.size else 0,
            threshold + 0.02,
            f"flag threshold {threshold:g}",
            fontsize=8,
            va="bottom",
        )
    if len(chosen):
        marks = [int(z) for z in chosen]
        heights = [float(p[list(idx).index(z)]) + 0.04 if z in idx else 1.0 for z in marks]
        ax.plot(marks, heights, "v", color="black", ms=6, label="shown above")
        ax.legend(loc="upper right", fontsize=8)
    ax.set(
        xlabel="axial slice index (inferior → superior)",
        ylabel="max tumour probability",
        ylim=(0, 1.12),
    )
    if idx.size:
        ax.set_xlim(idx.min() - 1, idx.max() + 1)
    fig.tight_layout()
    return to_png(fig)


def _jitter(n: int, width: float = 0.12) -> NDArray[np.float64]:
    """Deterministic horizontal offsets (golden-ratio sequence) for n points."""
    offsets = (np.arange(n, dtype=np.float64) * 0.6180339887) % 1.0 - 0.5
    return np.asarray(offsets * 2 * width, dtype=np.float64)


def metric_boxplots(
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
) -> bytes:
    """Box plot per region with every case drawn as a point; non-finite values are left out.

    Args:
        series: Region (abbreviation) -> one value per case.
        ylabel: Axis label (with unit).
        title: Figure title.
        ylim: Fixed y range (e.g. (0, 1) for Dice).
    """
    names = list(series)
    fig = _figure(max(3.2, 1.6 * len(names) + 1.2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    data = [[v for v in series[n] if v is not None and math.isfinite(v)] for n in names]
    positions = np.arange(1, len(names) + 1)
    drawn = [(pos, d) for pos, d in zip(positions, data, strict=True) if d]
    if drawn:
        box = ax.boxplot(
            [d for _, d in drawn],
            positions=[pos for pos, _ in drawn],
            widths=0.55,
            showfliers=False,
            patch_artist=True,
            medianprops={"color": "black", "linewidth": 1.6},
        )
        for patch in box["boxes"]:
            patch.set(facecolor="white", edgecolor="black")
        for k, (pos, d) in enumerate(drawn):
            name = names[int(pos) - 1]
            ax.scatter(
                pos + _jitter(len(d)), d, s=14, color=series_colour(name, k), zorder=3, alpha=0.9
            )
    ax.set_xticks(positions, [words(n) for n in names], fontsize=9)
    ax.set(ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    fig.tight_layout()
    return to_png(fig)


def training_figure(
    epochs: Sequence[int],
    columns: Mapping[str, Sequence[float]],
    *,
    best_epoch: int | None,
) -> bytes:
    """Training loss, validation Dice, precision/recall and learning rate per epoch.

    Args:
        epochs: Epoch numbers (x axis).
        columns: ``metrics.csv`` columns by name (``train_loss``, ``lr``, ``dice_<name>``,
            ``precision_<name>``, ``recall_<name>``, ``dice_mean``), NaN where missing.
        best_epoch: Epoch of the best validation Dice (dashed vertical line), or None.
    """
    fig = _figure(11.0, 7.0)
    axes = [fig.add_subplot(2, 2, k + 1) for k in range(4)]
    loss = columns.get("train_loss")
    if loss is not None:
        axes[0].plot(epochs, loss, marker="o", ms=3, color=OKABE_ITO["blue"])
    axes[0].set(title="training loss", xlabel="epoch", ylabel="loss")
    _metric_panel(axes[1], epochs, columns, prefix="dice_", title="validation Dice (per patient)")
    _metric_panel(
        axes[2], epochs, columns, prefix="precision_", title="precision (solid) and recall (dotted)"
    )
    _metric_panel(axes[2], epochs, columns, prefix="recall_", title=None, ls=":")
    lr = columns.get("lr")
    if lr is not None:
        axes[3].plot(epochs, lr, marker="o", ms=3, color=OKABE_ITO["vermillion"])
        if all(v > 0 for v in lr if math.isfinite(v)):
            axes[3].set_yscale("log")
    axes[3].set(title="learning rate", xlabel="epoch", ylabel="learning rate")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            ax.axvline(best_epoch, color="black", ls="--", lw=1, label=f"best epoch {best_epoch}")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return to_png(fig)


def _metric_panel(
    ax: Any,
    epochs: Sequence[int],
    columns: Mapping[str, Sequence[float]],
    *,
    prefix: str,
    title: str | None,
    ls: str = "-",
) -> None:
    names = [c.removeprefix(prefix) for c in columns if c.startswith(prefix)]
    for k, name in enumerate(names):
        colour = series_colour(name, k)
        lw = 2.2 if name == "mean" else 1.4
        label = words(name) if ls == "-" else None
        ax.plot(
            epochs,
            columns[prefix + name],
            ls=ls,
            marker="o",
            ms=3,
            color=colour,
            lw=lw,
            label=label,
        )
    if title is not None:
        ax.set(title=title, xlabel="epoch", ylim=(0, 1.02))
    if any(line.get_label() and not line.get_label().startswith("_") for line in ax.lines):
        ax.legend(fontsize=8, loc="lower right")
