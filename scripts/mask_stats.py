"""Mask statistics of each mask rule on real images: connected regions and the area taken from the first image.

    python scripts/mask_stats.py --data ../shared/data/cifar10 --spc 30 --seed 0

Segments are computed as the stages compute them (generator: 32 px data at 64 px; classifier: its own 32 px
view), partners are same-class images drawn with replacement, masks are reduced to the 16 x 16 feature map.
Prints a markdown table (docs/results.md records it).
"""

from __future__ import annotations

import argparse

import torch

from chimeramix import masks as M
from chimeramix.data import make_split, open_source
from chimeramix.data.device import DeviceData


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/cifar10", help="data source (default: ../shared/data/cifar10)")
    p.add_argument("--spc", type=int, default=30, help="images per class (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="split and sampling seed (default: 0)")
    p.add_argument("--draws", type=int, default=5, help="masks drawn per image (default: 5)")
    a = p.parse_args(argv)

    src = open_source(a.data)
    train = src.load("train")
    sub = make_split(train, src.name, a.spc, a.seed).apply(train)
    size = sub.images.shape[-1]
    work, feat = 2 * size if size <= 32 else size, (2 * size if size <= 32 else size) // 4
    seg = {
        "generator view (64 px), float input": M.segments_at(sub.images, work, work, 60, 60),
        "generator view (64 px), uint8 input": M.segments_at(sub.images, work, work, 60, 60, as_float=False),
        "classifier view (32 px), float input": M.compute_segments(sub.images, 60, 60),
    }
    rows = []
    for name, maps in seg.items():
        data = DeviceData(sub, torch.device("cpu"), a.seed, maps)
        rng = torch.Generator().manual_seed(a.seed)
        counts = torch.tensor([len(m.unique()) for m in maps]).float().mean().item()
        for rule, resize in (("range", "nearest"), ("bernoulli", "nearest"), ("bernoulli", "majority")):
            spec = M.MaskSpec("seg", seg_rule=rule, resize=resize)
            stats = []
            for _ in range(a.draws):
                idx = torch.arange(data.n)
                i2 = data.partners(idx, rng)
                stats.append(M.mask_statistics(spec.sample(data.n, feat, rng, "cpu", [maps[idx], maps[i2]], data.num_segments)[:, :1]))
            rows.append((name, f"{counts:.1f}", f"seg {rule}, {resize}", *_mean(stats)))
    rng = torch.Generator().manual_seed(a.seed)
    for offset in ("batch", "sample"):
        spec = M.MaskSpec("grid", grid_offset=offset)
        stats = [M.mask_statistics(spec.sample(64, feat, rng, "cpu")[:, :1]) for _ in range(a.draws * 5)]
        rows.append(("-", "-", f"grid {offset} offset", *_mean(stats)))
    print(f"{src.name}: {len(sub)} images ({a.spc} per class), seed {a.seed}, masks at {feat} x {feat} features, "
          f"{a.draws} draws per image\n")
    print("| segmentation | segments per image | rule, reduction | regions from x1 | area from x1 |")
    print("| --- | ---: | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {100 * r[4]:.0f}% |")


def _mean(stats):
    return (sum(s["regions"] for s in stats) / len(stats), sum(s["area_first"] for s in stats) / len(stats))


if __name__ == "__main__":
    main()
