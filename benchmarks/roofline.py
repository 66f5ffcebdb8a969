"""Roofline of the machine it runs on: how close each training step comes to the processor's measured peak.

    python -m benchmarks.roofline --data ../shared/data/cifar10 --threads 1 --out benchmarks/out/roofline-cpu.json

1. Peaks: a square matrix multiply (--matmul N, default 2048) in fp32 and in bf16, and a 3x3 convolution at
   each shape the `cpu` preset's WRN-16-2 has at batch 10 (forward and backward, fp32 and bf16 autocast).
2. Steps: the classifier step (baseline and ChimeraMix batches) and the generator step at the `cpu` and
   `paper` configs, in fp32 and bf16 autocast; FLOPs from torch's own counter (torch.utils.flop_counter,
   forward and backward of one step), time the median of timed blocks after warm-up; achieved GFLOP/s and
   its share of the matmul peak of the same precision.

Every figure is measured in this run on this machine; nothing is carried over. Run it on a quiet machine:
another process on the cores is in the numbers.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.run import _subset, classifier_trainer, generator_trainer, timed, write_result
from chimeramix.speed import SpeedOptions

# the cpu preset's WRN-16-2 at batch 10 on 32 px images: (in, out, size) of its 3x3 convolutions
WRN16_2_CONVS = [(3, 16, 32), (16, 32, 32), (32, 32, 32), (32, 64, 16), (64, 64, 16), (64, 128, 8), (128, 128, 8)]


def _seconds(fn, warmup: int, repeats: int, inner: int) -> float:
    for _ in range(warmup):
        fn()
    best = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best.append((time.perf_counter() - t) / inner)
    best.sort()
    return best[len(best) // 2]


def matmul_peak(n: int, dtype: torch.dtype, repeats: int) -> dict:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    s = _seconds(lambda: a @ b, 2, repeats, 3)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "seconds": s, "gflops": 2 * n**3 / s / 1e9}


def conv_rate(cin: int, cout: int, size: int, batch: int, bf16: bool, repeats: int) -> dict:
    x = torch.randn(batch, cin, size, size, requires_grad=True).to(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, 3, 3, requires_grad=True).to(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = F.conv2d(x, w, padding=1)
        y.float().sum().backward()

    with FlopCounterMode(display=False) as fc:
        step()
    s = _seconds(step, 2, repeats, 5)
    return {"shape": f"{cin}->{cout} @ {size}x{size}", "flops": fc.get_total_flops(), "seconds": s,
            "gflops": fc.get_total_flops() / s / 1e9, "precision": "bf16" if bf16 else "fp32"}


def step_rate(kind: str, preset: str, method: str, bf16: bool, subset, a) -> dict:
    speed = SpeedOptions.resolve(torch.device("cpu"), "on" if bf16 else "off", "auto", "auto", "off")
    dev = torch.device("cpu")
    if kind == "generator":
        tr = generator_trainer(preset, speed, dev, subset, "seg", a.data, a.spc)
        fn = lambda i: tr.step(i, 10**9)  # noqa: E731
        # D updates every d_every steps: count over that many steps, per step
        count = tr.cfg.d_every
        shape = f"ngf {tr.cfg.ngf}, {tr.cfg.work_size} px, batch {tr.cfg.batch_size}"
    else:
        tr = classifier_trainer(preset, speed, dev, subset, method, a.data, a.spc)
        fn = tr.step
        count = 1
        shape = f"{tr.cfg.arch}, batch {tr.cfg.batch_size}"
    slow = preset == "paper"
    for i in range(2):  # warm-up outside the counter (first-call allocations, autocast caches)
        fn(i)
    if method == "chimeramix":  # only replaced batches decode compositions: the mean over several steps
        count = 8
    with FlopCounterMode(display=False) as fc:
        for i in range(count):
            fn(100 + i)
    flops = fc.get_total_flops() / count
    r = timed(fn, dev, 1, 1 if slow else a.steps, 3 if slow else a.repeats)
    return {"shape": shape, "flops": flops, "seconds": r["seconds_per_call"], "gflops": flops / r["seconds_per_call"] / 1e9,
            "precision": "bf16" if bf16 else "fp32"}


def cpu_model() -> str:
    """The processor's name and whether it has native bf16 (AVX512-BF16 or AMX): without, bf16 is emulated."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"{name}; native bf16: {', '.join(native) if native else 'none (emulated)'}"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits", help="images for the steps (default: digits)")
    p.add_argument("--spc", type=int, default=10, help="samples per class of the subset (default: 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1, the per-core roofline)")
    p.add_argument("--matmul", type=int, default=2048, help="matrix size of the peak measurement (default: 2048)")
    p.add_argument("--presets", default="cpu,paper", help="presets whose steps are measured (default: cpu,paper)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed block (default: 10; paper: 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks, the median is reported (default: 5; paper: 3)")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16 or both (default: both)")
    p.add_argument("--out", default="benchmarks/out/roofline-cpu.json", help="JSON output")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    res = {"device": f"cpu ({a.threads} thread(s), {cpu_model()})", "torch": torch.__version__,
           "peaks": {}, "convolutions": [], "steps": {}}
    precisions = [{"fp32": False, "bf16": True}[x] for x in a.precisions.split(",")]
    for bf16 in precisions:
        dt = torch.bfloat16 if bf16 else torch.float32
        res["peaks"][str(dt).replace("torch.", "")] = matmul_peak(a.matmul, dt, a.repeats)
    for bf16 in precisions:
        for cin, cout, size in WRN16_2_CONVS:
            res["convolutions"].append(conv_rate(cin, cout, size, 10, bf16, a.repeats))
    subset, _ = _subset(a.data, a.spc)
    for preset in a.presets.split(","):
        for kind, method in (("classifier", "none"), ("classifier", "chimeramix"), ("generator", "")):
            for bf16 in precisions:
                name = f"{preset} {kind}" + (f" {method}" if kind == "classifier" else "") + (" bf16" if bf16 else " fp32")
                res["steps"][name] = step_rate(kind, preset, method, bf16, subset, a)
                v = res["steps"][name]
                # each step type takes a while (bf16 without native support: seconds per step): show it as it comes
                print(f"{name}: {v['flops'] / 1e9:.2f} GFLOP in {1e3 * v['seconds']:.1f} ms", file=sys.stderr, flush=True)
    return write_result(a.out, res, format_table(res))


def format_table(res: dict) -> str:
    peak = {k: v["gflops"] for k, v in res["peaks"].items()}
    peak_of = lambda prec: peak["bfloat16" if prec == "bf16" else "float32"]  # noqa: E731
    lines = [f"device: {res['device']}  torch {res['torch']}", "",
             "| measurement | precision | GFLOP per call | ms per call | GFLOP/s | share of matmul peak |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for k, v in res["peaks"].items():
        lines.append(f"| matmul {v['n']}x{v['n']} | {v['dtype']} | {2 * v['n'] ** 3 / 1e9:.2f} | {1e3 * v['seconds']:.1f} | "
                     f"{v['gflops']:.1f} | 100% |")
    for c in res["convolutions"]:
        lines.append(f"| conv 3x3 {c['shape']}, batch 10, fwd+bwd | {c['precision']} | {c['flops'] / 1e9:.3f} | "
                     f"{1e3 * c['seconds']:.2f} | {c['gflops']:.1f} | {c['gflops'] / peak_of(c['precision']):.0%} |")
    for name, v in res["steps"].items():
        lines.append(f"| {name.rsplit(' ', 1)[0]} step ({v['shape']}) | {v['precision']} | {v['flops'] / 1e9:.2f} | "
                     f"{1e3 * v['seconds']:.1f} | {v['gflops']:.1f} | {v['gflops'] / peak_of(v['precision']):.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
