"""CPU speed levers for the `cpu` preset, each as a ratio against the plain step measured in the same run.

    python -m benchmarks.levers --data ../shared/data/cifar10 --out benchmarks/out/levers-cpu.json

Each variant runs in its own process (so thread settings and compiled code do not
leak between variants); "2 processes" starts two at once and adds their rates, which
is what `experiment --jobs 2` gets from the same cores. The reference (fp32, default
switches, all cores) runs first and last: the spread between the two is the noise.
Needs the machine to itself: anything else running on the cores is in the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    # name: (stage, options)
    "reference": ("classifier", {}),
    "bf16 autocast": ("classifier", {"amp": "on"}),
    "1 thread": ("classifier", {"threads": 1}),
    "2 processes x 1 thread": ("classifier", {"threads": 1, "processes": 2}),
    "batch 20 (samples/s)": ("classifier", {"batch": 20}),
    "torch.compile": ("classifier", {"compile": "on"}),
    "generator reference": ("generator", {}),
    "generator bf16 autocast": ("generator", {"amp": "on"}),
    "generator 2 processes x 1 thread": ("generator", {"threads": 1, "processes": 2}),
}


def one(stage: str, opts: dict, data: str, spc: int, warmup: int, steps: int) -> dict:
    """Steps/s of one variant in this process (median of 3 blocks after warm-up)."""
    import statistics

    import torch

    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config, resolve_classifier, resolve_generator
    from chimeramix.data import make_split, open_source
    from chimeramix.data.device import DeviceData
    from chimeramix.methods import build_method
    from chimeramix.speed import SpeedOptions
    from chimeramix.train.classifier import ClassifierTrainer
    from chimeramix.train.generator import GeneratorTrainer, device_data

    src = open_source(data)
    train = src.load("train")
    sub = make_split(train, src.name, spc, 0).apply(train)
    dev = torch.device("cpu")
    speed = SpeedOptions.resolve(dev, opts.get("amp", "auto"), "auto", "auto", opts.get("compile", "off"))
    if stage == "classifier":
        cfg = make_config(ClassifierConfig, "cpu", data=data, spc=spc, device="cpu", steps=10**9, batch_size=opts.get("batch"))
        cfg = resolve_classifier(cfg, sub.image_size[0], len(sub))
        tr = ClassifierTrainer(cfg, DeviceData(sub, dev, 0), torch.Generator().manual_seed(0), build_method("none"), speed=speed)
        step, batch = tr.step, cfg.batch_size
    else:
        cfg = resolve_generator(make_config(GeneratorConfig, "cpu", data=data, spc=spc, device="cpu", mask="seg"),
                                sub.image_size[0], len(sub))
        tr = GeneratorTrainer(cfg, device_data(cfg, sub, dev, 0), torch.Generator().manual_seed(0), speed=speed)
        step, batch = (lambda i: tr.step(i, 10**9)), cfg.batch_size
    for i in range(warmup):
        step(i)
    blocks = []
    k = warmup
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            out = step(k)
            k += 1
        float(next(iter(out.values())))  # the losses stay lazy: one sync per block
        blocks.append(steps / (time.perf_counter() - t))
    rate = statistics.median(blocks)
    return {"steps_per_second": rate, "samples_per_second": rate * batch, "blocks": blocks, "batch": batch}


def run_variant(name: str, a) -> dict:
    stage, opts = VARIANTS[name]
    cmd = [sys.executable, "-m", "benchmarks.levers", "--one", name, "--data", a.data, "--spc", str(a.spc),
           "--warmup", str(a.warmup), "--steps", str(a.steps)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(int(opts.get("processes", 1)))]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"steps_per_second": sum(o["steps_per_second"] for o in outs),
            "samples_per_second": sum(o["samples_per_second"] for o in outs), "per_process": outs, "stage": stage}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/cifar10", help="data source (default: ../shared/data/cifar10)")
    p.add_argument("--spc", type=int, default=10, help="samples per class (default: 10)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (default: 20; compile needs them)")
    p.add_argument("--steps", type=int, default=60, help="steps per timed block (default: 60)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variant names (default: all)")
    p.add_argument("--out", default="benchmarks/out/levers-cpu.json", help="JSON output")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        stage, opts = VARIANTS[a.one]
        print(json.dumps(one(stage, opts, a.data, a.spc, a.warmup, a.steps)))
        return
    names = [n.strip() for n in a.variants.split(",") if n.strip()]
    res = {}
    for n in ["reference", *[n for n in names if n != "reference"], "reference again"]:
        res[n] = run_variant("reference" if n == "reference again" else n, a)
        print(f"{n}: {res[n]['steps_per_second']:.2f} steps/s", file=sys.stderr)
    print("| lever | steps/s | samples/s | vs plain step (same run) |")
    print("| --- | ---: | ---: | ---: |")
    for n, r in res.items():
        ref = res["generator reference"] if r["stage"] == "generator" and "generator reference" in res else res["reference"]
        key = "samples_per_second" if "samples" in n else "steps_per_second"
        print(f"| {n} | {r['steps_per_second']:.2f} | {r['samples_per_second']:.0f} | {r[key] / ref[key]:.2f}x |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"cpu_count": os.cpu_count(), "results": res}, indent=2))


if __name__ == "__main__":
    main()
