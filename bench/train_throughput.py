"""Training throughput (slices/s) and peak memory of the default 2D model; prints JSON.

Measures ``gliomaseg.train.loop``'s own optimisation step (``train._step``: forward, Dice + BCE
on WT/TC/ET regions, backward, Adam) on the default network of :class:`TrainConfig`
(U-Net 16-32-64-128, batch norm, 4 input channels, 3 sigmoid outputs). Each device runs in
a fresh subprocess so its peak RSS is its own (``--in-process`` skips that: faster, but RSS
then covers everything the process did): on CPU with ``--threads`` threads and fp32
(``train.py`` uses autocast and channels-last on CUDA only), and on CUDA when present with
bf16 autocast and channels-last, as ``train.py`` does.

By default one random batch is reused every step, so the numbers are the network's alone.
``--cache CACHE`` trains through the real data path instead (``SliceDataset`` and
``EpochSampler`` over a prepared cache, as ``gliomaseg.train.builders.make_loader`` builds them) and also reports
the time spent waiting for batches. Timings are reported, never asserted; the load average
is recorded because other work on the machine changes them.

    python bench/train_throughput.py                       # CPU (+ CUDA when present)
    python bench/train_throughput.py --cache CACHE --workers 1
    python bench/train_throughput.py --size 32 --features 4,8 --steps 2 --warmup 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # Long: a flat table of add_argument calls, one per flag.
    from gliomaseg.cli.main import DefaultsHelpFormatter
    from gliomaseg.io.cache import is_cache

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument(
        "--model",
        choices=("unet", "residual_unet"),
        default="unet",
        help="unet: classic U-Net (two 3x3 convolutions per level, max-pool); residual_unet: "
        "MONAI's strided U-Net (--res-units 0 is the plain strided net)",
    )
    parser.add_argument("--res-units", type=int, default=1, help="residual_unet only")
    parser.add_argument(
        "--norm", choices=("batch", "instance"), default="batch", help="normalisation layers"
    )
    parser.add_argument(
        "--in-channels", type=int, default=4, help="4: 2D; 12: 2.5D (one neighbour each side)"
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="channels-last memory format on the CPU too (train.py uses it on CUDA)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="compare the variants in SWEEP (networks, widths, sizes, 2.5D, bf16, "
        "channels-last, compile, batch size), each in a fresh process, at --steps/--warmup",
    )
    parser.add_argument(
        "--features", type=_features, default=[16, 32, 64, 128], help="widths per level"
    )
    parser.add_argument("--size", type=int, default=240, help="square slice size in pixels")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CPU, and CUDA too when present",
    )
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast on CUDA and on CPUs with native bf16 (as train.py)",
    )
    parser.add_argument("--cache", type=Path, default=None, help="train from a prepared cache")
    parser.add_argument("--workers", type=int, default=0, help="loader workers (--cache only)")
    parser.add_argument("--seed", type=int, default=0, help="weights and synthetic data")
    parser.add_argument("--in-process", action="store_true", help="no subprocess per device")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--worker", choices=("cpu", "cuda"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.size, args.batch_size, args.steps, args.threads) < 1 or args.warmup < 0:
        parser.error("--size, --batch-size, --steps and --threads must be >= 1, --warmup >= 0")
    multiple = 2 ** (len(args.features) - 1)
    if args.size % multiple:
        parser.error(
            f"--size {args.size} must be a multiple of {multiple} for {len(args.features)} levels"
        )
    if args.cache is not None and not is_cache(args.cache):
        parser.error(f"--cache {args.cache}: no index.json; make one with 'gliomaseg prepare'")
    return args


# --------------------------------------------------------------------------- worker


def _config(args: argparse.Namespace, device: str) -> Any:
    from gliomaseg.train.config import TrainConfig

    # Only the model width, slice size and batch differ from TrainConfig's defaults;
    # fold -1 trains on every labelled case of a --cache (no validation split needed).
    model: dict[str, Any] = {"name": args.model, "features": list(args.features), "norm": args.norm}
    if args.model == "residual_unet":
        model["num_res_units"] = args.res_units
    return TrainConfig.from_dict(
        {
            "model": model,
            "patch_size": (args.size, args.size),
            "batch_size": args.batch_size,
            "steps_per_epoch": args.warmup + args.steps,
            "amp": args.amp,
            "device": device,
            "fold": -1,
            "workers": args.workers,
            "seed": args.seed,
        }
    )


def _random_batch(config: Any, n_channels: int, seed: int) -> dict[str, Any]:
    """Images (N, C, H, W) float32 and WT/TC/ET targets (N, 3, H, W) of a random label map."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    n, (h, w) = config.batch_size, config.patch_size
    image = torch.from_numpy(rng.standard_normal((n, n_channels, h, w), dtype=np.float32))
    labels = rng.integers(0, 4, size=(n, h, w))
    target = torch.from_numpy(np.stack([config.target_spec.encode(lab) for lab in labels]))
    return {"image": image, "target": target}


def measure(args: argparse.Namespace, device_name: str) -> dict[str, Any]:
    """Train ``warmup + steps`` steps on one device; timings of the last ``steps``."""
    # Long: the measurement must stay one straight-line body (set-up, warm-up, timed steps).
    import torch

    from gliomaseg.models import count_parameters
    from gliomaseg.train.builders import build_from_config, cache_channels, make_loader, split_cases
    from gliomaseg.train.loop import _step
    from gliomaseg.train.losses import build_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(device_name)
    config = _config(args, device_name)
    total = args.warmup + args.steps
    batches: Any
    if args.cache is None:
        n_channels = args.in_channels  # 4: FLAIR, T1, T1ce, T2; 12: and both neighbours
        batch = _random_batch(config, n_channels, args.seed)
        batches = [{k: v.to(device) for k, v in batch.items()}] * total
    else:
        channels, modalities = cache_channels(args.cache, config)
        train_ids, _ = split_cases(args.cache, config)
        loader, sampler = make_loader(args.cache, train_ids, config, channels, 0, 1)
        sampler.set_epoch(0)
        batches, n_channels = loader, len(modalities)
    model, _ = build_from_config(config, n_channels)
    model.to(device).train()
    channels_last = bool(args.channels_last or (device.type == "cuda" and config.channels_last))
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if args.cache is None:
            batches = [
                {**b, "image": b["image"].contiguous(memory_format=torch.channels_last)}
                for b in batches
            ]
    net: Any = torch.compile(model) if args.compile else model  # compiles in the warmup
    loss_fn = build_loss(config.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    load_before = os.getloadavg()
    step_s, data_s, cpu_s, losses = [], [], [], []
    fetch, cpu = time.perf_counter(), time.process_time()
    warmup_start = fetch
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        # _step is the exact step train() runs; float(loss) in it waits for the GPU.
        losses.append(_step(net, loss_fn, optimizer, batch, device=device, config=config))
        end = time.perf_counter()
        if i + 1 == args.warmup:
            warmup_s = end - warmup_start
        if i >= args.warmup:
            step_s.append(end - fetch)
            data_s.append(start - fetch)
            cpu_s.append(time.process_time() - cpu)
        fetch, cpu = time.perf_counter(), time.process_time()
        if i + 1 >= total:
            break
    seconds = sum(step_s)
    warmup_s = warmup_s if args.warmup else 0.0
    from gliomaseg.train.runs import use_bf16

    result: dict[str, Any] = {
        "device": device_name,
        "mode": "random" if args.cache is None else "cache",
        "threads": args.threads,
        "model": config.to_dict()["model"],
        "size": args.size,
        "batch_size": args.batch_size,
        "amp_bf16": use_bf16(device, config.amp),
        "channels_last": channels_last,
        "compiled": bool(args.compile),
        "in_channels": n_channels,
        "parameters": count_parameters(model),
        "slices_per_s": round(args.batch_size * len(step_s) / seconds, 3),
        "seconds_per_step": _stats(step_s),
        # CPU time of this process (all its threads; not loader workers): less sensitive
        # than wall time to other jobs on the machine.
        "cpu_seconds_per_step": round(statistics.median(cpu_s), 4),
        # Samples per CPU-second: the figure to compare when other jobs share the machine.
        "slices_per_cpu_s": round(args.batch_size / statistics.median(cpu_s), 3),
        "warmup_seconds": round(warmup_s, 2),  # includes torch.compile's compilation
        "first_loss": round(losses[0], 5),
        "last_loss": round(losses[-1], 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    if args.cache is not None:
        result["data_seconds_per_step"] = _stats(data_s)
        result["workers"] = args.workers
    if device.type == "cuda":
        result["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name(device)
    return result


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "mean": round(statistics.fmean(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


# --------------------------------------------------------------------------- parent

#: ``--sweep`` variants: name -> flags added to the command line. The first is the network of
#: the old shipped presets' family at the old default size; the others change one thing at a
#: time from ``residual-160`` (the shipped presets' network and crop), then the slice sizes.
SWEEP: dict[str, list[str]] = {
    "classic-unet-16..128-192": ["--model", "unet", "--features", "16,32,64,128", "--size", "192"],
    "strided-unet-16..256-192 (no residual units)": [
        *("--model", "residual_unet", "--res-units", "0", "--features", "16,32,64,128,256"),
        *("--size", "192"),
    ],
    "residual-160": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "160"),
    ],
    "residual-160-instance-norm": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "160"),
        *("--norm", "instance"),
    ],
    "residual-160-2.5d": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "160"),
        *("--in-channels", "12"),
    ],
    "residual-160-fp32": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "160"),
        "--no-amp",
    ],
    "residual-160-channels-last": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "160"),
        "--channels-last",
    ],
    "residual-160-compile": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "160"),
        "--compile",
    ],
    "residual-160-batch32": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "160"),
        *("--batch-size", "32"),
    ],
    "residual-160-wide-32..512": [
        *("--model", "residual_unet", "--features", "32,64,128,256,512", "--size", "160"),
    ],
    "residual-128 (LGG at half resolution)": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "128"),
    ],
    "residual-256 (LGG full slice)": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "256"),
    ],
    "residual-96 (BraTS at 2 mm)": [
        *("--model", "residual_unet", "--features", "16,32,64,128,256", "--size", "96"),
    ],
}


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def run_worker(argv: list[str], device: str) -> dict[str, Any]:
    """This script on one device in a fresh interpreter; its JSON result."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", device],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        return {"device": device, "error": tail}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - start, 2)
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args, args.worker)))
        return
    import torch

    from gliomaseg.core.machine import report_header

    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        raise SystemExit("train_throughput: --device cuda but no CUDA device; use --device cpu")
    devices = {"auto": ["cpu"] + (["cuda"] if cuda else []), "cpu": ["cpu"], "cuda": ["cuda"]}
    load_start = os.getloadavg()
    if args.sweep:
        base = [a for a in argv if a != "--sweep"]
        results = []
        for name, flags in SWEEP.items():
            print(f"train_throughput: {name}", file=sys.stderr, flush=True)
            results.append({"variant": name, **run_worker([*base, *flags], "cpu")})
    elif args.in_process:
        results = [measure(args, d) for d in devices[args.device]]
    else:
        results = [run_worker(argv, d) for d in devices[args.device]]
    report = {
        **report_header(
            "train_throughput",
            note=args.note,
            threads=args.threads,
            device=", ".join(
                d if d == "cpu" else f"cuda ({torch.cuda.get_device_name(0)})"
                for d in devices[args.device]
            ),
            load_start=load_start,
        ),
        "settings": {
            "model": "per result"
            if args.sweep
            else {"name": args.model, "features": args.features},
            "target": "regions (WT, TC, ET), sigmoid",
            "loss": "dice_bce",
            "optimizer": "adam",
            "size": args.size,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "steps": args.steps,
            "data": str(args.cache) if args.cache else "one random batch, reused",
            "isolation": "in-process" if args.in_process else "one subprocess per device",
        },
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
