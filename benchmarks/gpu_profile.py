"""GPU efficiency profile: precision / memory-format / compile matrix, MAE model-FLOPs utilisation,
and whether the data loader keeps the GPU fed. Prints markdown tables (not a test).

Sections (``--sections``, all by default):

* ``peak``: the bf16 matrix-product ceiling measured on this GPU (an ``N x N x N`` product, mean of
  ``10`` after ``3`` warm-ups), the denominator MFU is also given against.
* ``simclr``: SimCLR on a ResNet-18 (CIFAR stem, 32 px, batch 256, projector 2048-256, LARS: the
  solo-learn CIFAR settings of ``recipes/image/cifar10/simclr_gpu.yaml``) through mmssl's ``Trainer``,
  on pre-generated two-view tensors (no decoding or augmentation, so the figure is the model's step
  rate), for fp32 / bf16 x NCHW / channels_last x eager / ``torch.compile``. images/s is the median of
  the 10-step windows after the warm-up; peak memory is ``torch.cuda.max_memory_allocated``.
  fp32 is PyTorch's default fp32 (TF32 off for matrix products, on for cuDNN convolutions), as a user
  gets it; ``cudnn.benchmark`` stays off, as in the trainer. Goal (issue 14): bf16 + channels_last at
  least 2x fp32.
* ``optim``: the optimizer step alone on the same SimCLR model (random gradients): LARS against SGD
  (fused on CUDA), with and without ``found_inf`` (the trainer's on-device skip of non-finite steps).
  Set beside the SimCLR step time, it says whether the optimizer's kernel launches matter.
* ``mae``: MAE ViT-B/16 at 224 px (mask 0.75, decoder 512-d x 8 blocks, AdamW; He et al. 2022), a
  plain bf16 step loop on device-resident random images. Model FLOPs of one step (forward + backward,
  matrix products and attention, as ``torch.utils.flop_counter`` counts them) divided by the step
  time; MFU against the datasheet's dense bf16 peak (989 TFLOP/s for an H100/H200 SXM) and against the
  measured ``peak``. Activation checkpointing recomputes the forward, which MFU does not count.
  Goal (issue 14): at least 40% MFU.
* ``loader``: for GPU recipes (``--recipes``; their data must be on this machine), the data loader
  alone (the trainer's loader: same dataset, batch, workers, collate) vs the training rate of the same
  recipe; a ratio near 1 means the GPU waits for data.

    .venv/bin/python benchmarks/gpu_profile.py                       # everything (CUDA)
    .venv/bin/python benchmarks/gpu_profile.py --sections simclr --device cpu --quick   # harness test
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASHEET_BF16_TFLOPS = 989.4  # H100/H200 SXM dense bf16 (NVIDIA datasheet), the usual MFU denominator
LOADER_RECIPES = ("image/cifar10/simclr_gpu", "image/cifar10/mae_gpu", "semi/cifar10/fixmatch_gpu")


@dataclass(frozen=True)
class Setting:
    precision: str  # fp32 | bf16
    channels_last: bool
    compile: bool

    @property
    def label(self) -> str:
        parts = [self.precision, "channels_last" if self.channels_last else "NCHW"]
        return " + ".join(parts + (["compile"] if self.compile else []))


SIMCLR_SETTINGS = (
    Setting("fp32", False, False),
    Setting("fp32", True, False),
    Setting("bf16", False, False),
    Setting("bf16", True, False),
    Setting("bf16", True, True),
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def seconds_per_call(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


# ---------------------------------------------------------------------------------------------- peak


def matmul_peak_tflops(device: torch.device, n: int) -> float:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / seconds_per_call(lambda: a @ b, device, warmup=3, iters=10) / 1e12


# -------------------------------------------------------------------------------------------- simclr


class TwoViewTensors(Dataset):
    """Pre-generated "augmented" view pairs: the step rate without decoding or augmentation."""

    def __init__(self, n: int, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.views = torch.randn(2, n, 3, size, size, generator=g)

    def __len__(self) -> int:
        return self.views.shape[1]

    def __getitem__(self, i: int) -> dict:
        from mmssl.data.keys import VIEWS

        return {VIEWS: [self.views[0, i], self.views[1, i]]}


def simclr_rate(setting: Setting, args: argparse.Namespace, device: torch.device) -> dict:
    from mmssl.registry import ENCODERS, METHODS
    from mmssl.train.config import TrainConfig
    from mmssl.train.trainer import Trainer

    torch._dynamo.reset()
    torch.manual_seed(0)
    encoder = ENCODERS.build("resnet18", small_stem=True)
    method = METHODS.build("simclr", encoder, temperature=0.2, projector_hidden=2048, projector_dim=256)
    window = args.window
    cfg = TrainConfig(
        steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        optimizer="lars",
        lr=0.4,
        weight_decay=1e-4,
        precision=setting.precision,
        channels_last=setting.channels_last,
        compile=setting.compile,
        device=device.type,
        num_workers=args.workers,
        ckpt_every=0,
        log_every=window,
        progress=False,
    )
    reset_peak(device)
    dataset = TwoViewTensors(args.batch_size * 4)
    result = Trainer(cfg, method, dataset, run_dir=None).fit()
    timed = [h["samples_per_s"] for h in result.history if "samples_per_s" in h and h["step"] > args.warmup]
    return {"images_per_s": statistics.median(timed), "peak_mb": peak_mb(device), "loss": result.final_loss}


def section_simclr(args: argparse.Namespace, device: torch.device) -> None:
    print(
        f"\n### SimCLR ResNet-18 (32 px, batch {args.batch_size}, LARS) step rate, synthetic views, "
        f"{args.steps} timed steps after {args.warmup}\n"
    )
    print("| setting | images/s | x fp32 NCHW | peak memory (MB) | loss |")
    print("|---|---:|---:|---:|---:|")
    base = None
    for setting in SIMCLR_SETTINGS:
        if device.type == "cpu" and setting.precision == "bf16" and not args.quick:
            continue
        try:
            r = simclr_rate(setting, args, device)
        except Exception as err:  # one failing setting (e.g. compile) must not hide the others
            print(
                f"| {setting.label} | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} | | | |"
            )
            continue
        base = base or r["images_per_s"]
        print(
            f"| {setting.label} | {r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f} | "
            f"{fmt(r['peak_mb'])} | {r['loss']:.3f} |",
            flush=True,
        )


# --------------------------------------------------------------------------------------------- optim


def section_optim(args: argparse.Namespace, device: torch.device) -> None:
    from mmssl.registry import ENCODERS, METHODS
    from mmssl.train.config import TrainConfig
    from mmssl.train.optim import build_optimizer

    torch.manual_seed(0)
    encoder = ENCODERS.build("resnet18", small_stem=True)
    method = METHODS.build("simclr", encoder, temperature=0.2, projector_hidden=2048, projector_dim=256)
    method = method.to(device)
    for p in method.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    tensors = sum(1 for _ in method.parameters())
    print(f"\n### Optimizer step alone, SimCLR ResNet-18 + projector ({tensors} parameter tensors)\n")
    print("| optimizer | found_inf | ms per step |")
    print("|---|---|---:|")
    fused = device.type == "cuda"  # as the trainer builds SGD there
    iters = 3 if args.quick else 50
    for name in ("lars", "sgd"):
        for with_flag in (False, True):
            if with_flag and name == "sgd" and not fused:
                continue  # unfused SGD has no found_inf path
            # The trainer's own optimizer, with the SimCLR GPU recipe's LARS settings (lr 0.4, wd 1e-4).
            cfg = TrainConfig(optimizer=name, lr=0.4, weight_decay=1e-4)
            optimizer = build_optimizer(method, cfg, fused=fused and name == "sgd")
            if with_flag:
                optimizer.found_inf = torch.zeros((), device=device)  # type: ignore[attr-defined]
            ms = seconds_per_call(optimizer.step, device, warmup=3, iters=iters) * 1e3
            label = f"{name.upper()}{' (fused)' if fused and name == 'sgd' else ''}"
            print(f"| {label} | {'set (0)' if with_flag else '-'} | {ms:.2f} |")


# ----------------------------------------------------------------------------------------------- mae


def mae_step_fn(args: argparse.Namespace, device: torch.device, compile_: bool, recompute: bool):
    from mmssl.data.keys import IMAGE
    from mmssl.registry import ENCODERS, METHODS

    torch._dynamo.reset()
    torch.manual_seed(0)
    encoder = ENCODERS.build("vit_base", img_size=args.mae_size, patch_size=16, grad_checkpointing=recompute)
    method = METHODS.build("mae", encoder, mask_ratio=0.75).to(device)
    optimizer = torch.optim.AdamW(method.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    images = torch.randn(args.mae_batch, 3, args.mae_size, args.mae_size, device=device)
    forward = torch.compile(method) if compile_ else method
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss = forward({IMAGE: images})["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def count_flops() -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            with autocast:
                loss = method({IMAGE: images})["loss"]
            loss.backward()
        optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    return step, count_flops


def section_mae(args: argparse.Namespace, device: torch.device, peak: float | None) -> None:
    print(
        f"\n### MAE ViT-B/16 at {args.mae_size} px (mask 0.75, decoder 512x8), batch {args.mae_batch}, bf16, "
        f"{args.mae_steps} timed steps after {args.mae_warmup}\n"
    )
    print(
        "| setting | step (ms) | images/s | model TFLOP/step | TFLOP/s | MFU (datasheet) "
        "| MFU (measured peak) | peak memory (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    flops = None
    step = count_flops = None
    for label, compile_, recompute in (
        ("eager", False, False),
        ("compile", True, False),
        ("eager + activation checkpointing", False, True),
    ):
        try:
            # Free the previous setting's model and optimizer state first, or they count in this peak.
            step = count_flops = None
            gc.collect()
            reset_peak(device)
            step, count_flops = mae_step_fn(args, device, compile_, recompute)
            flops = flops or count_flops()
            seconds = seconds_per_call(step, device, args.mae_warmup, args.mae_steps)
        except Exception as err:
            print(f"| {label} | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} | | | | | | |")
            continue
        tflops = flops / seconds / 1e12
        print(
            f"| {label} | {seconds * 1e3:.1f} | {args.mae_batch / seconds:.0f} | {flops / 1e12:.2f} | "
            f"{tflops:.0f} | "
            f"{100 * tflops / DATASHEET_BF16_TFLOPS:.1f}% | {fmt(peak and 100 * tflops / peak, '.1f')}% | "
            f"{fmt(peak_mb(device))} |",
            flush=True,
        )


# -------------------------------------------------------------------------------------------- loader


def loader_rate(cfg, data, batches: int) -> float:
    """samples/s of the trainer's own DataLoader over ``batches`` batches, timed once the batches the
    workers prefetched while the first one was made (``prefetch_factor`` 2 each) are drained."""
    from mmssl.train.data import ResumableSampler
    from mmssl.train.trainer import pretraining_loader

    t = cfg.train
    sampler = ResumableSampler(len(data.pretrain), t.batch_size, seed=t.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    it = iter(pretraining_loader(data.pretrain, t, sampler, data.collate_fn, device))
    for _ in range(1 + 2 * t.num_workers):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * t.batch_size / (time.perf_counter() - start)


def section_loader(args: argparse.Namespace, device: torch.device) -> None:
    import tempfile

    from mmssl import pipeline
    from mmssl.cli import resolve_recipe
    from mmssl.config import load_recipe

    steps = args.warmup + args.steps
    print(f"\n### Data loader alone vs training, GPU recipes ({args.steps} steps after {args.warmup})\n")
    print("| recipe | batch | workers | loader samples/s | training samples/s | training / loader |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.recipes:
        with tempfile.TemporaryDirectory() as tmp:
            overrides = [
                f"train.steps={steps}",
                "train.ckpt_every=0",
                "train.progress=false",
                f"train.log_every={args.window}",
                f"train.device={device.type}",
                "eval.monitor.every=0",
                f"out_dir={tmp}",
                "resume=null",
            ] + (["train.batch_size=16", "train.num_workers=0"] if args.quick else [])
            try:
                cfg = load_recipe(resolve_recipe(name), overrides)
                data = pipeline.build_data(cfg)  # decoded once, for both measurements
                loaded = loader_rate(cfg, data, args.steps)
                _, _, result, _ = pipeline.train(cfg, data)
            except Exception as err:
                print(f"| {name} | | | skipped: {type(err).__name__}: {str(err).splitlines()[0][:120]} | | |")
                continue
        timed = [
            h["samples_per_s"] for h in result.history if "samples_per_s" in h and h["step"] > args.warmup
        ]
        trained = statistics.median(timed)
        print(
            f"| {name} | {cfg.train.batch_size} | {cfg.train.num_workers} | {loaded:.0f} | {trained:.0f} | "
            f"{trained / loaded:.2f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", nargs="+", default=["peak", "simclr", "optim", "mae", "loader"])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--batch-size", type=int, default=256, help="SimCLR batch")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps (compile happens here)")
    p.add_argument("--steps", type=int, default=60, help="timed steps")
    p.add_argument("--window", type=int, default=10, help="steps per timing window")
    p.add_argument("--workers", type=int, default=4, help="loader workers of the SimCLR section")
    p.add_argument("--mae-size", type=int, default=224)
    p.add_argument("--mae-batch", type=int, default=256)
    p.add_argument("--mae-warmup", type=int, default=5)
    p.add_argument("--mae-steps", type=int, default=20)
    p.add_argument("--peak-n", type=int, default=8192)
    p.add_argument("--recipes", nargs="+", default=list(LOADER_RECIPES), help="recipes of the loader section")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a test of this script on CPU")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.warmup, args.steps, args.window, args.workers = 8, 2, 2, 1, 0
        args.mae_size, args.mae_batch, args.mae_warmup, args.mae_steps, args.peak_n = 32, 2, 1, 1, 256
    sys.stdout.reconfigure(line_buffering=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; nothing to profile")
        return 0
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    peak = None
    if "peak" in args.sections:
        peak = matmul_peak_tflops(device, args.peak_n)
        print(f"\nmeasured matrix-product peak ({args.peak_n}^3, bf16 on CUDA): {peak:.0f} TFLOP/s")
    if "simclr" in args.sections:
        section_simclr(args, device)
    if "optim" in args.sections:
        section_optim(args, device)
    if "mae" in args.sections:
        section_mae(args, device, peak)
    if "loader" in args.sections:
        section_loader(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
