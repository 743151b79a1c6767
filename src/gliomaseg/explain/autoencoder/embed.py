"""The autoencoder's latent space: embeddings per slice and per case, PCA, correlations.

``gliomaseg autoencoder embed`` writes those vectors per slice and per case, a PCA plot of
them, and how the first principal components relate to the tumour's size and irregularity.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.explain.autoencoder.data import MaskSet, load_masks
from gliomaseg.explain.autoencoder.model import (
    dice_per_mask,
    encode,
    load_autoencoder,
    reconstruct,
)
from gliomaseg.io.atomic import write_json_atomic, write_text_atomic, write_with

#: Files ``embed`` writes into its output folder.
PCA_PNG = "pca.png"
EMBED_REPORT = "embed_report.json"


def pca(latents: NDArray[Any], k: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scores (N, k) on the first k principal components and their explained variance ratios.

    Component signs are arbitrary (those of the SVD).
    """
    x = np.asarray(latents, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    return x @ vt[:k].T, ratio[:k]


def latent_correlations(
    scores: NDArray[Any], area_mm2: NDArray[Any], irregularity: NDArray[Any]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Spearman rho (and p) of each principal component with tumour area and irregularity.

    Returns:
        ``{"PC1": {"area_mm2": {"rho", "p"}, "irregularity": {"rho", "p"}}, ...}``; ``None``
        where a column is constant (no ranking).
    """
    from scipy.stats import spearmanr

    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for k in range(scores.shape[1]):
        out[f"PC{k + 1}"] = {}
        for name, values in (("area_mm2", area_mm2), ("irregularity", irregularity)):
            if np.ptp(values) == 0 or np.ptp(scores[:, k]) == 0:
                out[f"PC{k + 1}"][name] = {"rho": None, "p": None}
                continue
            rho, p = spearmanr(scores[:, k], values)
            out[f"PC{k + 1}"][name] = {"rho": float(rho), "p": float(p)}
    return out


def embed(
    run: str | Path, masks: MaskSet | str | Path, out_dir: str | Path, *, device: str = "cpu"
) -> dict[str, Any]:
    """Embed masks with a trained run and write the latent-space files into ``out_dir``.

    Files: ``slice_embeddings.{csv,npy}`` (one row per mask: case id, slice index, area mm²,
    irregularity, then ``z0..z{L-1}``; the NPY is the (N, L) float32 matrix in the same row
    order), ``case_embeddings.{csv,npy}`` (mean over each case's slices), ``pca.png`` (PC1
    vs PC2 coloured by area) and ``embed_report.json`` (returned).

    Raises:
        FileNotFoundError / ValueError: no run, no masks.
    """
    model, config = load_autoencoder(run, device=device)
    failures: list[tuple[str, str]] = []
    if isinstance(masks, MaskSet):
        data = masks
    else:
        data, failures = load_masks(masks, config=config)
    latents = encode(model, data.masks)
    dice = dice_per_mask(reconstruct(model, data.masks), data.masks)
    k = max(1, min(3, latents.shape[1], len(data) - 1))
    scores, ratio = pca(latents, k)
    out = Path(out_dir)
    files = _write_embeddings(out, data, latents)
    files["pca_png"] = _plot_pca(out / PCA_PNG, scores, data.area_mm2)
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": str(run),
        "masks": "in-memory masks" if isinstance(masks, MaskSet) else str(masks),
        "n_slices": len(data),
        "n_cases": len(np.unique(data.case_ids)),
        "size": config.size,
        "pixel_mm": config.grid_mm,
        "latent": config.latent,
        "reconstruction_dice_mean": float(dice.mean()) if len(dice) else None,
        "explained_variance_ratio": [float(r) for r in ratio],
        "spearman": latent_correlations(scores, data.area_mm2, data.irregularity),
        "skipped": [{"path": p, "reason": m} for p, m in failures],
        "files": {k: str(v) for k, v in files.items()},
    }
    write_json_atomic(out / EMBED_REPORT, report)
    return report


def _write_embeddings(out: Path, data: MaskSet, latents: NDArray[np.float32]) -> dict[str, Path]:
    zcols = [f"z{i}" for i in range(latents.shape[1])]
    rows = [
        [c, int(s), f"{a:.6g}", f"{r:.6g}", *(f"{v:.6g}" for v in z)]
        for c, s, a, r, z in zip(
            data.case_ids, data.slice_index, data.area_mm2, data.irregularity, latents, strict=True
        )
    ]
    files = {"slice_csv": out / "slice_embeddings.csv", "slice_npy": out / "slice_embeddings.npy"}
    write_text_atomic(
        files["slice_csv"],
        _csv(["case_id", "slice_index", "area_mm2", "irregularity", *zcols], rows),
    )
    write_with(files["slice_npy"], lambda tmp: np.save(tmp, latents.astype(np.float32)))
    ids = list(dict.fromkeys(data.case_ids.tolist()))
    pooled = np.stack([latents[data.case_ids == c].mean(axis=0) for c in ids]) if ids else latents
    counts = [int((data.case_ids == c).sum()) for c in ids]
    files["case_csv"], files["case_npy"] = out / "case_embeddings.csv", out / "case_embeddings.npy"
    write_text_atomic(
        files["case_csv"],
        _csv(
            ["case_id", "n_slices", *zcols],
            [[c, n, *(f"{v:.6g}" for v in z)] for c, n, z in zip(ids, counts, pooled, strict=True)],
        ),
    )
    write_with(files["case_npy"], lambda tmp: np.save(tmp, pooled.astype(np.float32)))
    return files


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _plot_pca(path: Path, scores: NDArray[np.float64], area: NDArray[np.float64]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = scores[:, 1] if scores.shape[1] > 1 else np.zeros(len(scores))
    points = ax.scatter(scores[:, 0], y, c=area, cmap="viridis", s=12)
    fig.colorbar(points, ax=ax, label="tumour area in the slice (mm²)")
    ax.set(xlabel="PC1", ylabel="PC2" if scores.shape[1] > 1 else "", title="mask latent space")
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


# --------------------------------------------------------------------------- command line


__all__ = [
    "EMBED_REPORT",
    "PCA_PNG",
    "embed",
    "latent_correlations",
    "pca",
]
