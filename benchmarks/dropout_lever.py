"""Issue 24 lever: the WRN's dropout masks under bf16 autocast, today's against two other draws of the mask.

    python -m benchmarks.dropout_lever --threads 1 --out benchmarks/out/dropout-lever.json

Under CPU autocast the WRN block's dropout input is bf16, and `F.dropout` draws its mask on that bf16 tensor, one
generator call per element. Two levers, both seeded from the same torch generator:
- "fp32 mask": `bernoulli_` on an fp32 buffer (another ATen path), applied in bf16;
- "16-bit fields": one int64 `random_()` (63 uniform bits from one 64-bit draw) gives three 16-bit fields, each
  kept when below round(0.7 x 65536): keep probability 45875/65536 = 0.6999969 instead of 0.7, a third of the
  generator calls of one draw per element.
Measured, in one process, interleaved so drift hits every variant alike:
1. the dropout op alone at each activation shape of the `cpu` preset's WRN-16-2 (batch 10), bf16 and fp32;
2. the whole `cpu`-preset baseline classifier step in bf16: today, the fp32-mask lever, and no dropout at all
   (p = 0: the most any mask lever can win).
Reported as seconds and as ratios against today's. The lever is swapped in for the classifier module only
(its `F` is replaced by a proxy whose `dropout` is the lever); nothing in chimeramix changes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.roofline import cpu_model
from benchmarks.run import _subset, classifier_trainer, write_result
from chimeramix.models import classifiers
from chimeramix.speed import SpeedOptions

# (channels, size) of the dropout inputs of WRN-16-2 at 32 px: one per group of blocks
SHAPES = [(32, 32), (64, 16), (128, 8)]


def fp32_mask_dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """Dropout whose mask is drawn by bernoulli_ on fp32, then applied in x's dtype (same keep probability)."""
    if not training or p == 0:
        return x
    keep = 1.0 - p
    mask = torch.empty(x.shape, dtype=torch.float32, device=x.device).bernoulli_(keep)
    return x * mask.to(x.dtype) * (1.0 / keep)


def bits_dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """Dropout whose mask comes from 16-bit fields of int64 draws (three per draw; keep probability to 1/65536)."""
    if not training or p == 0:
        return x
    keep, n = 1.0 - p, x.numel()
    bits = torch.empty(-(-n // 3), dtype=torch.int64, device=x.device).random_()  # bits 0-62 uniform, 63 is 0
    fields = bits.view(torch.int16).view(-1, 4)[:, :3].reshape(-1)[:n].view(x.shape)  # little-endian: bits 0-47
    thresh = round(keep * 65536) - 32768  # int16 fields are uniform on [-32768, 32767]
    return x * (fields < thresh).to(x.dtype) * (1.0 / keep)


class _Functional:
    """torch.nn.functional with one function replaced (for the classifier module's `F` only)."""

    def __init__(self, **over):
        self.over = over

    def __getattr__(self, name):
        return self.over.get(name) or getattr(F, name)


def _interleaved(fns: dict, warmup: int, steps: int, repeats: int) -> dict:
    for fn in fns.values():
        for i in range(warmup):
            fn(i)
    times = {k: [] for k in fns}
    k = warmup
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(steps):
                fn(k)
                k += 1
            times[name].append((time.perf_counter() - t) / steps)
    return {name: {"seconds": statistics.median(v), "repeats": [round(x, 7) for x in v]} for name, v in times.items()}


def bench_ops(a) -> list[dict]:
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        for c, s in SHAPES:
            x = torch.randn(10, c, s, s).to(dtype)
            fns = {"today": lambda i: F.dropout(x, 0.3, True), "fp32 mask": lambda i: fp32_mask_dropout(x, 0.3, True),
                   "16-bit fields": lambda i: bits_dropout(x, 0.3, True)}
            r = _interleaved(fns, 5, 200, a.repeats)
            rows.append({"dtype": str(dtype).removeprefix("torch."), "shape": [10, c, s, s], **r})
    return rows


def bench_step(a) -> dict:
    subset, _ = _subset(a.data, a.spc)
    speed = SpeedOptions.resolve(torch.device("cpu"), amp="on")
    variants = {"today": classifiers.F, "fp32 mask": _Functional(dropout=fp32_mask_dropout),
                "16-bit fields": _Functional(dropout=bits_dropout),
                "no dropout": _Functional(dropout=lambda x, p=0.5, training=True, inplace=False: x)}
    trainers = {}
    for name in variants:
        trainers[name] = classifier_trainer("cpu", speed, torch.device("cpu"), subset, "none", a.data, a.spc)

    def run(name):
        def fn(i):
            classifiers.F = variants[name]
            try:
                trainers[name].step(i)
            finally:
                classifiers.F = F
        return fn

    r = _interleaved({n: run(n) for n in variants}, 5, a.steps, a.repeats)
    for n in variants:
        r[n]["ratio_to_today"] = r["today"]["seconds"] / r[n]["seconds"]
    return r


def table(res: dict) -> str:
    L = [f"{res['cpu']}; torch {res['torch']}, {res['threads']} thread(s)", "",
         "| dropout op | dtype | today | fp32 mask | 16-bit fields |", "| --- | --- | ---: | ---: | ---: |"]
    for r in res["ops"]:
        t = r["today"]["seconds"]
        cells = [f"{r[k]['seconds'] * 1e6:.0f} us ({t / r[k]['seconds']:.2f}x)" for k in ("fp32 mask", "16-bit fields")]
        L.append(f"| {'x'.join(map(str, r['shape']))} | {r['dtype']} | {t * 1e6:.0f} us | " + " | ".join(cells) + " |")
    L += ["", "| cpu-preset baseline step, bf16 | s/step | steps/s | speed-up vs today |", "| --- | ---: | ---: | ---: |"]
    for n, r in res["step"].items():
        L.append(f"| {n} | {r['seconds']:.4f} | {1 / r['seconds']:.2f} | {r['ratio_to_today']:.2f}x |")
    return "\n".join(L)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--spc", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="steps per timed block (default: 20)")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per variant, the median is reported")
    p.add_argument("--out", default="benchmarks/out/dropout-lever.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = {"cpu": cpu_model(), "torch": torch.__version__, "threads": a.threads, "ops": bench_ops(a),
           "step": bench_step(a)}
    write_result(a.out, res, table(res))


if __name__ == "__main__":
    main()
