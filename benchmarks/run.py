"""Speed benchmark: training steps/s of both stages, segmentation time, evaluation images/s.

Every figure is the median of several timed repeats after warm-up, on the
device it runs on. Each training step is measured twice in the same run:
'optimised' (the speed switches as `auto` picks them for the device, plus
--compile if asked) and 'reference' (plain eager fp32, no channels_last,
unfused optimizers, and a host sync per step as a typical loop has), so a
speed-up is a measured ratio. Results: a table on stdout and a JSON file.

    python -m benchmarks.run --device cuda --out benchmarks/out/h100.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from chimeramix import masks
from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config, resolve_classifier, resolve_generator
from chimeramix.data import make_split, open_source
from chimeramix.data.device import DeviceData, resolve_device
from chimeramix.methods import build_method
from chimeramix.models import MixingGenerator
from chimeramix.speed import SpeedOptions
from chimeramix.train.classifier import ClassifierTrainer
from chimeramix.train.generator import GeneratorTrainer, device_data


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, steps: int, repeats: int) -> dict:
    """Median seconds per call over `repeats` timed blocks of `steps` calls, after `warmup` calls."""
    for i in range(warmup):
        fn(i)
    _sync(device)
    per_call = []
    k = warmup
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            fn(k)
            k += 1
        _sync(device)
        per_call.append((time.perf_counter() - t) / steps)
    med = statistics.median(per_call)
    return {"seconds_per_call": med, "per_second": 1 / med, "repeats": [round(x, 6) for x in per_call]}


def _subset(data: str, spc: int):
    src = open_source(data)
    train = src.load("train")
    split = make_split(train, src.name, spc, 0)
    return split.apply(train), src


def generator_trainer(preset: str, speed, device, subset, mask: str, data_name: str, spc: int) -> GeneratorTrainer:
    """The generator stage's trainer at a preset's config, on `subset` (what fit-generator would build)."""
    cfg = make_config(GeneratorConfig, preset, data=data_name, spc=spc, mask=mask, device=str(device))
    cfg = resolve_generator(cfg, subset.image_size[0], len(subset))
    data = device_data(cfg, subset, device, 0)
    return GeneratorTrainer(cfg, data, torch.Generator(device=device).manual_seed(0), speed=speed)


def bench_generator(preset, speed, sync_each_step, device, subset, mask, a) -> dict:
    tr = generator_trainer(preset, speed, device, subset, mask, a.data, a.spc)
    cfg = tr.cfg

    def step(i):
        losses = tr.step(i, 10**9)
        if sync_each_step:
            [v.item() for v in losses.values()]

    r = timed(step, device, a.warmup, a.steps, a.repeats)
    r.update(batch=cfg.batch_size, work_size=cfg.work_size, ngf=cfg.ngf, images_per_second=r["per_second"] * cfg.batch_size)
    return r


def classifier_trainer(preset: str, speed, device, subset, method_name: str, data_name: str, spc: int) -> ClassifierTrainer:
    """The classifier stage's trainer at a preset's config, on `subset`; 'chimeramix' with an untrained generator of
    the preset's size (a step costs the same whatever its weights) and the subset's segmentations."""
    cfg = make_config(ClassifierConfig, preset, data=data_name, spc=spc, device=str(device), steps=10**9)
    cfg = resolve_classifier(cfg, subset.image_size[0], len(subset))
    G = None
    segments = None
    opts, context = {}, {"seed": 0}
    if method_name == "chimeramix":
        gcfg = resolve_generator(make_config(GeneratorConfig, preset, spc=spc), subset.image_size[0], len(subset))
        G = MixingGenerator(gcfg.ngf).to(device).eval().requires_grad_(False)
        G = speed.prepare_module(G)
        opts.update(mask="seg")
        context.update(work_size=gcfg.work_size)
        from chimeramix.augment import resize_uint8

        maps = masks.compute_segments(resize_uint8(subset.images, gcfg.work_size), gcfg.seg_scale, gcfg.seg_min_size)
        segments = torch.nn.functional.interpolate(maps[:, None].float(), size=subset.image_size, mode="nearest")[:, 0].int()
    data = DeviceData(subset, device, 0, segments)
    return ClassifierTrainer(cfg, data, torch.Generator(device=device).manual_seed(0), build_method(method_name, opts, context),
                             G, speed=speed)


def bench_classifier(preset, speed, sync_each_step, device, subset, method_name, a) -> dict:
    tr = classifier_trainer(preset, speed, device, subset, method_name, a.data, a.spc)
    cfg = tr.cfg

    def step(i):
        out = tr.step(i)
        if sync_each_step:
            out["loss"].item()

    r = timed(step, device, a.warmup, a.steps, a.repeats)
    r.update(batch=cfg.batch_size, arch=cfg.arch)
    return r


def bench_eval(preset, device, subset, speed, a) -> dict:
    cfg = resolve_classifier(make_config(ClassifierConfig, preset, spc=a.spc, device=str(device)), subset.image_size[0], len(subset))
    data = DeviceData(subset, device, 0)
    tr = ClassifierTrainer(cfg, data, torch.Generator(device=device).manual_seed(0), build_method("none"), speed=speed)
    n = a.eval_images
    images = subset.images[torch.arange(n) % len(subset)]
    r = timed(lambda i: tr.predict(images, 500), device, 1, 1, a.repeats)
    r.update(images=n, arch=cfg.arch, images_per_second=n * r["per_second"])
    return r


def bench_segmentation(subset, a) -> dict:
    from chimeramix.augment import resize_uint8

    imgs = resize_uint8(subset.images, 2 * subset.image_size[0])
    r = timed(lambda i: masks.compute_segments(imgs, 60, 60), torch.device("cpu"), 1, 1, a.repeats)
    r.update(images=len(imgs), size=imgs.shape[-1], images_per_second=len(imgs) * r["per_second"])
    return r


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--data", default="digits", help="data source for realistic images and segmentations (default: digits)")
    p.add_argument("--spc", type=int, default=5, help="samples per class of the benchmarked subset (default: 5)")
    p.add_argument("--presets", default="paper,fast", help="presets to measure (default: paper,fast)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    p.add_argument("--steps", type=int, default=5, help="calls per timed repeat (default: 5)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported (default: 5)")
    p.add_argument("--eval-images", type=int, default=2000, help="images per evaluation pass (default: 2000)")
    p.add_argument("--compile", default="off", help="torch.compile in the optimised variant: off, on or graphs (default: off)")
    p.add_argument("--amp", default="auto", help="bf16 autocast in the optimised variant: auto/on/off (default: auto = CUDA only)")
    p.add_argument("--channels-last", default="auto", help="channels_last in the optimised variant: auto/on/off (default: auto)")
    p.add_argument("--fused", default="auto", help="fused optimizers in the optimised variant: auto/on/off (default: auto)")
    p.add_argument("--skip-reference", action="store_true", help="measure only the optimised variant")
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/out/bench-<device>.json)")
    a = p.parse_args(argv)

    device = resolve_device(a.device)
    torch.manual_seed(0)
    subset, _ = _subset(a.data, a.spc)
    fast = SpeedOptions.resolve(device, amp=a.amp, channels_last=a.channels_last, fused=a.fused, compile=a.compile)
    variants = [("optimised", fast, False)] + ([] if a.skip_reference else [("reference", SpeedOptions.reference(), True)])
    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
        "torch": torch.__version__, "data": a.data, "spc": a.spc, "optimised_switches": asdict(fast),
        "settings": {k: getattr(a, k) for k in ("warmup", "steps", "repeats")}, "results": {},
    }
    rows = []
    for preset in a.presets.split(","):
        for name, fn, arg in [("generator seg", bench_generator, "seg"), ("generator grid", bench_generator, "grid"),
                              ("classifier baseline", bench_classifier, "none"), ("classifier chimeramix", bench_classifier, "chimeramix")]:
            figures = {}
            for vname, speed, sync in variants:
                figures[vname] = fn(preset, speed, sync, device, subset, arg, a)
            if "reference" in figures:
                figures["speedup"] = figures["optimised"]["per_second"] / figures["reference"]["per_second"]
            res["results"][f"{preset} {name}"] = figures
            rows.append((f"{preset} {name}", figures))
        ev = {"optimised": bench_eval(preset, device, subset, fast, a)}
        if not a.skip_reference:
            ev["reference"] = bench_eval(preset, device, subset, SpeedOptions.reference(), a)
            ev["speedup"] = ev["optimised"]["per_second"] / ev["reference"]["per_second"]
        res["results"][f"{preset} evaluation"] = ev
    res["results"]["segmentation"] = {"optimised": bench_segmentation(subset, a)}

    return write_result(a.out or f"benchmarks/out/bench-{device.type}.json", res, format_table(res))


def write_result(path, res: dict, table: str) -> dict:
    """A benchmark's figures as JSON at `path`, and its table on stdout."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(table)
    print(f"wrote {out}")
    return res


def format_table(res: dict) -> str:
    lines = [f"device: {res['device']}  torch {res['torch']}  switches: {res['optimised_switches']}", "",
             "| measurement | optimised | reference | speed-up |", "| --- | ---: | ---: | ---: |"]
    for name, f in res["results"].items():
        unit = "img/s" if name == "segmentation" or name.endswith("evaluation") else "steps/s"
        key = "images_per_second" if unit == "img/s" else "per_second"
        opt = f["optimised"][key]
        ref = f.get("reference", {}).get(key)
        sp = f.get("speedup")
        lines.append(f"| {name} | {opt:.3g} {unit} | {f'{ref:.3g} {unit}' if ref else '-'} | {f'{sp:.2f}x' if sp else '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
