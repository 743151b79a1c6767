"""Seconds per BraTS case and peak memory of ``gliomaseg segment`` vs a MONAI reference; JSON.

Two pipelines segment the same case with the same network and weights:

* ``gliomaseg``: :func:`gliomaseg.segment.workflow.segment_case` on a :class:`Segmenter` loaded with
  ``Segmenter.load``: read the four ``.nii.gz``, reorient, z-score in the brain, crop to it,
  batched slice inference, uncrop, postprocess, write ``<case>_seg.nii.gz`` and
  ``<case>_summary.json``.
* ``monai``: a reference built from MONAI's standard pieces: ``LoadImage`` (the four files
  stacked) + ``EnsureChannelFirst`` + ``NormalizeIntensity(nonzero=True,
  channel_wise=True)`` + batched inference over every axial slice of the full volume (a
  plain loop, or ``SliceInferer`` with ``--reference-inferer slice``) + ``AsDiscrete`` +
  ``SaveImage`` (segmentation only, no summary).

One case is segmented ``--repeats`` times in a warm process (the model loaded once);
median and minimum seconds per case are reported with the CPU time, model load time, and
the cold start of the process (interpreter + imports + load + first case). Beside them,
``gliomaseg_cli_cold`` is what a user waits for: ``gliomaseg segment CASE -o OUT --model M``
run ``--cold-runs`` times, each in a fresh process (``OMP_NUM_THREADS=--threads``, a new
output folder each time), wall seconds median and best of N, with its ratio to the warm
per-case time and to the MONAI reference's cold start (``--cold-runs 0`` skips it;
``--in-process`` too); with ``--batch-root DIR``, ``gliomaseg_cli_batch`` is one such process
over ``--batch-cases`` case folders of DIR (seconds per case). Each pipeline
runs in a fresh subprocess so its peak RSS is its own (``--in-process`` runs both in this
process: faster, but RSS and cold start then mean nothing). Devices: CPU with ``--threads``
threads, and CUDA too when present. Timings are reported, never asserted.

Without ``--model`` the default architecture (:class:`gliomaseg.train.config.TrainConfig`'s U-Net
16-32-64-128, WT/TC/ET sigmoid regions) is saved untrained in gliomaseg's checkpoint
format: weights do not change the network's cost. Without ``--case`` the first BraTS 2021
case of ``../shared/data`` is used, or a BraTS-like synthetic case (240 x 240 x 155) when
that is absent.

    python bench/segment_speed.py                     # CPU (+ CUDA), real case, 3 repeats
    python bench/segment_speed.py --profile 25        # plus a cProfile of gliomaseg's case
    python bench/segment_speed.py --amp --tta --model RUN/checkpoints/best.pt
    python bench/segment_speed.py --model brats --case ../shared/data/brats/BraTS2021_00003
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_CASE = Path(__file__).resolve().parents[2] / "shared/data/brats/BraTS2021_00000"
PIPELINES = ("gliomaseg", "monai")
# Targets for CPU, 2 threads, one BraTS case, default 2D model (reported, never asserted).
TARGET_SECONDS = 10.0
TARGET_RSS_MB = 3e9 / 2**20  # 3 GB, in MiB like peak_rss_mb
# Issue 14: one BraTS case end to end in a fresh `gliomaseg segment` process, 2 threads.
TARGET_COLD_SECONDS = 5.0
# Issue 14: one process over a batch of 16 cases (--batch-root), seconds per case.
TARGET_BATCH_SECONDS = 3.0


def _features(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--features '{text}': use integers like 16,32,64,128"
        ) from None
    if len(values) < 2:
        raise argparse.ArgumentTypeError(f"--features '{text}': give at least two levels")
    return values


def _model_path(text: str) -> Path:
    """A checkpoint path, or the file of a bundled model name (without importing torch)."""
    import gliomaseg

    bundled = Path(gliomaseg.__file__).resolve().parent / "weights" / f"{text}.pt"
    return bundled if not Path(text).exists() and bundled.is_file() else Path(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # Long: a flat table of add_argument calls, one per flag.
    from gliomaseg.cli.main import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--case", type=Path, default=None, help="a BraTS case folder")
    parser.add_argument(
        "--model",
        type=_model_path,
        default=None,
        help="a gliomaseg checkpoint, or a bundled model name (brats, lgg)",
    )
    parser.add_argument(
        "--features",
        type=_features,
        default=[16, 32, 64, 128],
        help="U-Net widths of the untrained default model (ignored with --model)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="cases timed per pipeline")
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=3,
        help="fresh 'gliomaseg segment' processes timed (median and best of N; 0: none)",
    )
    parser.add_argument(
        "--batch-root",
        type=Path,
        default=None,
        help="a folder of BraTS case folders: also time one 'gliomaseg segment' process over "
        "the first --batch-cases of them (seconds per case, reading overlapped with inference)",
    )
    parser.add_argument(
        "--batch-cases", type=int, default=16, help="cases of --batch-root in the batch run"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present"
    )
    parser.add_argument(
        "--amp",
        action="store_true",
        help="bf16 autocast in both pipelines where the device has it natively (what "
        "'gliomaseg segment' does by default; without --amp both run float32, the CLI with --fp32)",
    )
    parser.add_argument("--tta", action="store_true", help="4 in-plane flips in both pipelines")
    parser.add_argument(
        "--reference-inferer",
        choices=("loop", "slice"),
        default="loop",
        help="MONAI reference: a plain loop over slice batches, or monai SliceInferer",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile one more gliomaseg case"
    )
    parser.add_argument("--in-process", action="store_true", help="no subprocess per pipeline")
    parser.add_argument("--seed", type=int, default=0, help="untrained weights, synthetic case")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    # Internal: what the parent passes to a worker subprocess.
    parser.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-device", help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (
        min(args.repeats, args.batch_size, args.threads) < 1
        or min(args.profile, args.cold_runs) < 0
    ):
        parser.error(
            "--repeats, --batch-size and --threads must be >= 1, --profile and --cold-runs >= 0"
        )
    if args.model is not None and not args.model.is_file():
        parser.error(f"--model {args.model}: no such checkpoint file")
    if args.case is not None and not args.case.is_dir():
        parser.error(f"--case {args.case}: no such case folder")
    if args.batch_root is not None and not args.batch_root.is_dir():
        parser.error(f"--batch-root {args.batch_root}: no such folder")
    if args.batch_cases < 1:
        parser.error("--batch-cases must be >= 1")
    return args


# --------------------------------------------------------------------------- inputs


def synthetic_case(folder: Path, *, seed: int) -> Path:
    """A BraTS-like case (240 x 240 x 155, BraTS 2020 names) written under ``folder``."""
    import numpy as np

    from gliomaseg.io.writers import write_layout
    from gliomaseg.synthetic.phantoms import make_brats_like

    case = make_brats_like(rng=np.random.default_rng(seed), case_id="BraTS2021_00000")
    return write_layout(case, folder, layout="brats2020")


def untrained_checkpoint(path: Path, *, features: list[int], seed: int) -> dict[str, Any]:
    """Save the default 2D model, untrained, as a gliomaseg checkpoint; its model config."""
    import torch

    from gliomaseg.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from gliomaseg.train.builders import build_from_config
    from gliomaseg.train.config import TrainConfig

    modalities = ["flair", "t1", "t1ce", "t2"]
    config = TrainConfig.from_dict({"model": {"name": "unet", "features": list(features)}})
    torch.manual_seed(seed)
    model, model_cfg = build_from_config(config, len(modalities))
    save_checkpoint(
        path,
        {  # the keys train._save writes, less the optimizer and run state
            "format": CHECKPOINT_FORMAT,
            "kind": "segmentation",
            "model_config": model_cfg,
            "target": config.target_spec.to_dict(),
            "modalities": modalities,
            "context": config.context,
            "train_config": config.to_dict(),
            "preprocessing": {
                "zscore": "per modality over brain voxels",
                "crop": "brain bounding box",
            },
            "state_dict": model.state_dict(),
        },
    )
    return model_cfg


# --------------------------------------------------------------------------- workers


def _repeat(run: Callable[[], float], repeats: int) -> tuple[list[float], list[float], float]:
    """(wall seconds, process CPU seconds) of each call, and the last call's result."""
    walls, cpus, value = [], [], float("nan")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        value = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, value


def run_gliomaseg(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Time ``segment_case`` (find the files -> seg + summary written)."""
    from gliomaseg.io.layouts import find_cases
    from gliomaseg.io.outdir import OutputFolder
    from gliomaseg.segment.config import SegmentConfig
    from gliomaseg.segment.models import Segmenter
    from gliomaseg.segment.workflow import segment_case

    start = time.perf_counter()
    seg = Segmenter.load(args.model, device=device)
    load_s = time.perf_counter() - start
    baseline = _rss_mb()
    config = SegmentConfig(
        device=device,
        fp32=not args.amp,
        tta=args.tta,
        batch_size=args.batch_size,
        overwrite=True,
    )
    out = OutputFolder(args.out / f"gliomaseg_{device}", overwrite=True)

    def one() -> float:
        (ref,) = find_cases(args.case)
        summary = segment_case(ref, out, seg, config)
        return float(summary["volumes_ml"]["WT"])

    result = _timed(args, one, load_s, baseline)
    if args.profile:
        result["profile"] = _profile(one, args.profile)
    return result


def run_monai(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Time the MONAI reference (find the files -> seg written) with the same network."""
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.transforms import (
        AsDiscrete,
        EnsureChannelFirst,
        LoadImage,
        NormalizeIntensity,
        SaveImage,
    )

    from gliomaseg.core.targets import TargetSpec
    from gliomaseg.io.layouts import find_cases
    from gliomaseg.models import ModelConfig, input_multiple
    from gliomaseg.models.checkpoint import load_model

    start = time.perf_counter()
    model, meta = load_model(args.model, device=device)
    load_s = time.perf_counter() - start
    baseline = _rss_mb()
    target = TargetSpec.from_dict(meta["target"])
    predictor = _Probabilities(model, target, amp=_bf16(args, device), tta=args.tta)
    multiple = input_multiple(ModelConfig.from_dict(meta["model_config"]))
    load, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    normalise = NormalizeIntensity(nonzero=True, channel_wise=True)
    discrete = AsDiscrete(threshold=0.5) if target.kind == "sigmoid" else AsDiscrete(argmax=True)
    lut = torch.from_numpy(_label_lut(target))
    save = SaveImage(
        output_dir=args.out / f"monai_{device}",
        output_postfix="seg",
        output_ext=".nii.gz",
        output_dtype=np.uint8,
        resample=False,
        separate_folder=False,
        print_log=False,
    )

    def one() -> float:
        (ref,) = find_cases(args.case)
        files = [ref.images[m] for m in meta["modalities"]]
        image: Any = normalise(channel_first(load(files)))  # MetaTensor (C, X, Y, Z)
        with torch.no_grad():
            probs = _infer(
                args,
                image.as_tensor(),
                predictor,
                multiple,
                torch.device(device),
                context=int(meta.get("context", 0)),
            )
        label = lut[_pattern_index(discrete(probs))][None]  # (1, X, Y, Z) file codes
        save(MetaTensor(label, meta=image.meta))
        voxel_ml = float(np.prod(image.meta["pixdim"][1:4])) / 1000.0
        return float((label > 0).sum()) * voxel_ml

    return _timed(args, one, load_s, baseline)


def _infer(
    args: argparse.Namespace,
    image: Any,
    predictor: Any,
    multiple: int,
    device: Any,
    *,
    context: int = 0,
) -> Any:
    """(K, X, Y, Z) probabilities of a (C, X, Y, Z) volume, one axial slice at a time.

    A 2.5D model (``context`` neighbours each side) gets each slice's neighbours stacked as
    channels, neighbour-major with the edge slice repeated, as it was trained.
    """
    import torch
    import torch.nn.functional as F

    _, h, w, depth = image.shape
    ph, pw = -h % multiple, -w % multiple
    if args.reference_inferer == "slice" and context:
        raise ValueError("--reference-inferer slice cannot stack neighbouring slices (2.5D)")
    if args.reference_inferer == "slice":
        from monai.inferers import SliceInferer

        inferer = SliceInferer(
            roi_size=(h + ph, w + pw), sw_batch_size=args.batch_size, spatial_dim=2
        )
        return inferer(image[None].to(device), predictor)[0].cpu()
    out = torch.empty((predictor.channels, h, w, depth), dtype=torch.float32)
    slices = image.permute(3, 0, 1, 2)  # (Z, C, X, Y), a view
    for z in range(0, depth, args.batch_size):
        zs = torch.arange(z, min(z + args.batch_size, depth))
        parts = [slices[(zs + k).clamp(0, depth - 1)] for k in range(-context, context + 1)]
        x = torch.cat(parts, dim=1).contiguous()
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        p = predictor(x.to(device))[:, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        out[..., z : z + args.batch_size] = p.permute(1, 2, 3, 0).cpu()
    return out


class _Probabilities:
    """The network as a predictor returning probabilities, optionally bf16 and flip-TTA."""

    def __init__(self, model: Any, target: Any, *, amp: bool, tta: bool) -> None:
        self.model, self.target, self.amp = model, target, amp
        self.channels = target.channels
        self.flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,), (-2, -1)] if tta else [])

    def __call__(self, x: Any) -> Any:
        import torch

        acc: Any = None
        for dims in self.flips:
            xi = torch.flip(x, dims) if dims else x
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logits = self.model(xi).float()
            p = torch.sigmoid(logits) if self.target.kind == "sigmoid" else logits.softmax(1)
            p = torch.flip(p, dims) if dims else p
            acc = p if acc is None else acc + p
        return acc / len(self.flips)


def _label_lut(target: Any) -> Any:
    """BraTS 2020 file codes for each output pattern (sigmoid) or class index (softmax).

    Sigmoid channels thresholded at 0.5 give a bit pattern per voxel; it maps to the internal
    code whose region membership is nearest (Hamming), e.g. WT only -> edema, WT+TC -> NCR,
    WT+TC+ET -> ET: MONAI has no standard transform for this last step.
    """
    import numpy as np

    from gliomaseg.core.labels import get_scheme

    to_file = get_scheme("brats2020").from_internal
    if target.kind == "softmax":
        return np.array([to_file[g[0]] for g in target.groups], dtype=np.uint8)
    member = np.array([[c in g for g in target.groups] for c in range(4)], dtype=int)
    lut = np.zeros(2**target.channels, dtype=np.uint8)
    for pattern in range(lut.size):
        bits = np.array([(pattern >> k) & 1 for k in range(target.channels)])
        lut[pattern] = to_file[int(np.argmin(np.abs(member - bits).sum(axis=1)))]
    return lut


def _pattern_index(discrete: Any) -> Any:
    """(X, Y, Z) int64 LUT index: bit k set where channel k is on (one channel: the class)."""
    import torch

    if discrete.shape[0] == 1:
        return discrete[0].long()
    weights = 2 ** torch.arange(discrete.shape[0]).view(-1, 1, 1, 1)
    return (discrete.long() * weights).sum(0)


def _timed(
    args: argparse.Namespace, one: Callable[[], float], load_s: float, baseline: float
) -> dict[str, Any]:
    if args.worker_device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()  # --in-process: the other pipeline's peak
    load_before = os.getloadavg()
    walls, cpus, wt_ml = _repeat(one, 1)
    cold = time.time() - args.spawned_at if args.spawned_at is not None else None
    more = _repeat(one, args.repeats - 1)
    walls, cpus = walls + more[0], cpus + more[1]
    wt_ml = more[2] if args.repeats > 1 else wt_ml
    result: dict[str, Any] = {
        "seconds_per_case": {
            "median": round(statistics.median(walls), 3),
            "min": round(min(walls), 3),
            "all": [round(s, 3) for s in walls],
        },
        "cpu_seconds_per_case": round(statistics.median(cpus), 3),
        "model_load_seconds": round(load_s, 3),
        "cold_start_to_first_case_seconds": round(cold, 2) if cold is not None else None,
        "peak_rss_mb": round(_rss_mb(), 1),
        "rss_after_imports_and_load_mb": round(baseline, 1),
        "predicted_wt_ml": round(wt_ml, 1),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    if args.worker_device == "cuda":
        result["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def _profile(one: Callable[[], float], top: int) -> dict[str, Any]:
    """cProfile of one more case: the ``top`` functions by cumulative and by own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(one)
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    rows = [
        (f"{Path(file).name}:{line}({name})", ct, tt)
        for (file, line, name), (_, _, tt, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]

    def table(key: int) -> list[list[Any]]:
        ranked = sorted(rows, key=lambda r: r[key], reverse=True)[:top]
        return [[name, round(ct, 3), round(tt, 3)] for name, ct, tt in ranked]

    return {
        "seconds": round(seconds, 3),
        "columns": ["function", "cumulative_s", "own_s"],
        "by_cumulative": table(1),
        "by_own_time": table(2),
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One pipeline on one device (in this process)."""
    start = time.perf_counter()
    if args.worker == "monai":
        import monai  # noqa: F401
    import torch

    imports_s = time.perf_counter() - start
    torch.set_num_threads(args.threads)
    device = args.worker_device
    run = run_gliomaseg if args.worker == "gliomaseg" else run_monai
    result = run(args, device)
    return {
        "pipeline": args.worker,
        "device": device,
        "threads": args.threads,
        "import_seconds": round(imports_s, 3),
        # gliomaseg: MONAI only for the networks that need it (not the bundled residual U-Net)
        "monai_imported": "monai" in sys.modules,
        "transformers_imported": "transformers" in sys.modules,
        **result,
    }


# --------------------------------------------------------------------------- cold CLI


def _bf16(args: argparse.Namespace, device: str) -> bool:
    """Whether ``--amp`` means bf16 on ``device`` (native bf16 only: emulated is slower)."""
    import torch

    from gliomaseg.train.runs import use_bf16

    return use_bf16(torch.device(device), args.amp)


def _cli(args: argparse.Namespace, device: str) -> tuple[list[str], dict[str, str]]:
    """``gliomaseg segment`` as a user runs it (without inputs and ``-o``), and its env.

    The CLI has no thread flag, so ``OMP_NUM_THREADS`` sets torch's threads. The package's
    bytecode is compiled first, as an installed package (or ``make setup``) has it: this
    machine sets PYTHONDONTWRITEBYTECODE, which would otherwise make every run compile ~65
    modules (0.13 s).
    """
    import gliomaseg

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(gliomaseg.__file__).parent)],
        check=True,
        capture_output=True,
    )
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    command = [sys.executable, "-m", "gliomaseg", "segment", "--model", str(args.model)]
    command += ["--device", device, "--batch-size", str(args.batch_size)]
    command += ["--no-progress"] + ["--tta"] * args.tta + ["--fp32"] * (not args.amp)
    return command, env


def _seconds(walls: list[float]) -> dict[str, Any]:
    return {
        "min": round(min(walls), 3),
        "median": round(statistics.median(walls), 3),
        "all": [round(w, 3) for w in walls],
    }


def cold_cli(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Wall seconds of ``gliomaseg segment CASE`` in a fresh process, ``--cold-runs`` times.

    What a user waits for: interpreter start, imports, model load, one case read, segmented
    and written, the process gone.
    """
    command, env = _cli(args, device)
    walls: list[float] = []
    load_before = os.getloadavg()
    for i in range(args.cold_runs):
        out = args.out / f"cli_{device}_{i}"
        start = time.perf_counter()
        proc = subprocess.run(
            [*command, str(args.case), "-o", str(out)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            return {"error": proc.stderr.splitlines()[-5:]}
    return {
        "command": "gliomaseg segment CASE -o OUT --model MODEL --no-progress"
        + ("" if args.amp else " --fp32")
        + " (fresh process)",
        "bf16_autocast": _bf16(args, device),
        "seconds": _seconds(walls),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def batch_cli(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """One fresh ``gliomaseg segment`` process over ``--batch-cases`` cases of ``--batch-root``:
    wall seconds per case (cold start included), reading overlapped with inference."""
    cases = sorted(p for p in args.batch_root.iterdir() if p.is_dir())[: args.batch_cases]
    folder = args.out / f"batch_in_{device}"
    folder.mkdir(parents=True)
    for case in cases:  # links: the user's data is only read
        (folder / case.name).symlink_to(case.resolve())
    command, env = _cli(args, device)
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(
        [*command, str(folder), "-o", str(args.out / f"batch_{device}")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": proc.stderr.splitlines()[-5:]}
    return {
        "command": "gliomaseg segment FOLDER -o OUT --model MODEL --no-progress (fresh process)",
        "cases": [c.name for c in cases],
        "seconds": round(wall, 3),
        "seconds_per_case": round(wall / len(cases), 3),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


# --------------------------------------------------------------------------- parent


def _spawn(args: argparse.Namespace, pipeline: str, device: str) -> dict[str, Any]:
    """One pipeline in a fresh interpreter (peak RSS and cold start are its own)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        *_forwarded(args),
        "--worker",
        pipeline,
        "--worker-device",
        device,
        "--spawned-at",
        repr(time.time()),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"pipeline": pipeline, "device": device, "error": proc.stderr.splitlines()[-5:]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _forwarded(args: argparse.Namespace) -> list[str]:
    flags = [
        "--case",
        str(args.case),
        "--model",
        str(args.model),
        "--out",
        str(args.out),
        "--repeats",
        str(args.repeats),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--reference-inferer",
        args.reference_inferer,
        "--profile",
        str(args.profile),
    ]
    return flags + ["--amp"] * args.amp + ["--tta"] * args.tta


def _in_process(args: argparse.Namespace, pipeline: str, device: str) -> dict[str, Any]:
    sub = argparse.Namespace(**{**vars(args), "worker": pipeline, "worker_device": device})
    return worker(sub)


def compare(
    results: list[dict[str, Any]],
    device: str,
    cold: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Both pipelines on one device, their time ratios and (CPU) the targets.

    ``cold``: :func:`cold_cli`'s result for this device, or None when not measured.
    """
    by = {r["pipeline"]: r for r in results if r["device"] == device}
    row: dict[str, Any] = {"device": device, **by}
    if cold is not None:
        row["gliomaseg_cli_cold"] = cold
    if batch is not None:
        row["gliomaseg_cli_batch"] = batch
    if any("error" in r for r in [*by.values(), cold or {}]):
        return row
    ours, ref = by["gliomaseg"], by["monai"]
    ratio = ours["seconds_per_case"]["median"] / ref["seconds_per_case"]["median"]
    row["time_ratio_gliomaseg_to_monai"] = round(ratio, 3)
    if cold is not None and "error" not in cold:
        best = cold["seconds"]["min"]
        row["cold_cli_to_warm_gliomaseg"] = round(best / ours["seconds_per_case"]["min"], 3)
        if ref.get("cold_start_to_first_case_seconds"):
            row["cold_cli_to_cold_monai_reference"] = round(
                best / ref["cold_start_to_first_case_seconds"], 3
            )
    if device == "cpu":
        row["targets"] = {
            "apply_to": "CPU, 2 threads, one BraTS case, the default 2D model",
            "seconds_per_case_at_most": TARGET_SECONDS,
            "peak_rss_mb_below": round(TARGET_RSS_MB),
            "met_seconds": ours["seconds_per_case"]["median"] <= TARGET_SECONDS,
            "met_rss": ours["peak_rss_mb"] < TARGET_RSS_MB,
            "met_at_least_as_fast_as_monai": ratio <= 1.0,
        }
        if cold is not None and "error" not in cold:
            row["targets"]["cold_cli_seconds_at_most"] = TARGET_COLD_SECONDS
            row["targets"]["met_cold_cli_median"] = cold["seconds"]["median"] <= TARGET_COLD_SECONDS
        if batch is not None and "error" not in batch:
            row["targets"]["batch_seconds_per_case_at_most"] = TARGET_BATCH_SECONDS
            row["targets"]["met_batch"] = batch["seconds_per_case"] <= TARGET_BATCH_SECONDS
    return row


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    from importlib.metadata import version

    import torch

    from gliomaseg.core.machine import report_header

    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        raise SystemExit("segment_speed: --device cuda but no CUDA device; use --device cpu")
    devices = {"auto": ["cpu"] + (["cuda"] if cuda else []), "cpu": ["cpu"], "cuda": ["cuda"]}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="segment_speed_") as tmp:
        case_source = "--case"
        if args.case is None and DEFAULT_CASE.is_dir():
            args.case, case_source = DEFAULT_CASE, "../shared/data (real BraTS 2021 case)"
        elif args.case is None:
            args.case = synthetic_case(Path(tmp) / "case", seed=args.seed)
            case_source = "synthetic BraTS-like case (make_brats_like): ../shared/data absent"
        model_info = _model_info(args, Path(tmp))
        args.out = Path(tmp) / "out"
        run = _in_process if args.in_process else _spawn
        results = [run(args, p, d) for d in devices[args.device] for p in PIPELINES]
        measure_cold = args.cold_runs > 0 and not args.in_process
        colds = {d: cold_cli(args, d) if measure_cold else None for d in devices[args.device]}
        measure_batch = args.batch_root is not None and not args.in_process
        batches = {d: batch_cli(args, d) if measure_batch else None for d in devices[args.device]}
    report = {
        **report_header(
            "segment_speed",
            note=args.note,
            threads=args.threads,
            device=", ".join(
                d if d == "cpu" else f"cuda ({torch.cuda.get_device_name(0)})"
                for d in devices[args.device]
            ),
            load_start=load_start,
        ),
        "monai": version("monai"),
        "case": {"path": str(args.case), "source": case_source},
        "model": model_info,
        "settings": {
            "repeats": args.repeats,
            "batch_size": args.batch_size,
            "amp_bf16": args.amp,
            "tta": args.tta,
            "reference_inferer": args.reference_inferer,
            "isolation": "in-process" if args.in_process else "one subprocess per pipeline",
            "cold_runs": 0 if args.in_process else args.cold_runs,
            "batch_cases": 0 if args.batch_root is None or args.in_process else args.batch_cases,
        },
        "results": [compare(results, d, colds[d], batches[d]) for d in devices[args.device]],
    }
    print(json.dumps(report, indent=2))


def _model_info(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Point ``args.model`` at a checkpoint (an untrained one without --model); describe it."""
    if args.model is not None:
        from gliomaseg.models.checkpoint import load_checkpoint

        payload = load_checkpoint(args.model)
        return {
            "checkpoint": str(args.model),
            "weights": "given checkpoint",
            "config": payload["model_config"],
            "target": payload["target"],
        }
    args.model = tmp / "untrained.pt"
    config = untrained_checkpoint(args.model, features=args.features, seed=args.seed)
    return {
        "checkpoint": "untrained, in a temporary folder",
        "weights": (
            f"untrained default model (seed {args.seed}) saved in gliomaseg's checkpoint "
            "format and loaded by Segmenter.load: weight values do not change the network's "
            "cost; postprocessing and the summary depend a little on how much tumour is "
            "predicted (predicted_wt_ml)"
        ),
        "config": config,
        "target": "regions (WT, TC, ET), sigmoid",
    }


if __name__ == "__main__":
    main()
