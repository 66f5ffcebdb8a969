"""Fréchet distances in a classifier's features: real subset, compositions and pixel mixes vs the full training set.

    python scripts/set_distances.py --generator SEG_RUN --generator GRID_RUN --classifier CLF_RUN \
        --sizes 10,100 --draws 3 --out results/set-distances-cifar10-spc10

For each generator run: `export_dataset` writes its compositions (and the real subset); the pixel mixes
(SegMix / GridMix) use the same parents and the same mask draw as each composition (the manifest's draw seed,
the mask drawn again at the image's resolution instead of the feature map's), so the generator and direct
pixel mixing are compared on identical pairs. A "real, not in the subset" set of the same size is the floor:
what any real sample of that size scores. Every set is compared with the whole training set in the
classifier run's penultimate features (not FID: no Inception weights here), with equally many images per row,
since the distance is biased by the set size. Prints a markdown table and writes <out>.json and <out>.md.

Take the embedding from a classifier trained on ANOTHER split than the generators': a classifier's features of
its own (memorised) training images sit apart from other real images, which would make the real subset look
unlike the training set it was drawn from.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chimeramix import masks as M
from chimeramix.data import open_source
from chimeramix.export import export_dataset
from chimeramix.fid import _features, frechet_distance_of_features, load_classifier_embedding, parse_set
from chimeramix.data.split import Split
from chimeramix.fileio import write_json
from chimeramix.progress import SILENT
from chimeramix.runs import read_run


def _embed(images: torch.Tensor, emb, batch: int = 250) -> np.ndarray:
    out = [emb(list(images[i: i + batch]), "cpu").double().numpy() for i in range(0, len(images), batch)]
    return np.concatenate(out)


def _read(files: list[Path]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])


def _pixel_mixes(manifest: dict, spec: M.MaskSpec, train_images: torch.Tensor, segments, num_segments) -> torch.Tensor:
    """x1 where the composition's mask (drawn again at full resolution from its draw seed) is 1, x2 elsewhere."""
    size = train_images.shape[-1]
    out = []
    for e in manifest["files"]:
        if e["kind"] != "generated":
            continue
        s1, s2 = e["parents"]["subset"]
        g = torch.Generator().manual_seed(int(e["draw_seed"]))
        torch.randint(1, (1,), generator=g)  # the partner draw export made first; s2 is already known
        seg1 = segments[s1: s1 + 1] if segments is not None else None
        seg2 = segments[s2: s2 + 1] if segments is not None else None
        m = spec.sample(1, size, g, "cpu", [seg1, seg2] if seg1 is not None else None, num_segments)[0, :1]
        i1, i2 = e["parents"]["train"]
        out.append((m * train_images[i1].float() + (1 - m) * train_images[i2].float()).round().to(torch.uint8))
    return torch.stack(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", action="append", required=True, help="a finished generator run (repeatable)")
    p.add_argument("--classifier", required=True, help="a finished classifier run: its features are the embedding")
    p.add_argument("--sizes", default="10,100", help="images per class in each compared set (default: 10,100)")
    p.add_argument("--draws", type=int, default=3, help="draws (export seeds / real samples) per row (default: 3)")
    p.add_argument("--out", required=True, help="writes <out>.json and <out>.md")
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]

    emb = load_classifier_embedding(a.classifier, "cpu")
    info = read_run(Path(a.generator[0]), "generator")
    cfg = info["config"]
    src = open_source(cfg["data"])
    train = src.load("train")
    ref = _features(parse_set(f"{cfg['data']}:train"), lambda imgs: emb(imgs, "cpu"), "cpu", 250, "ref", SILENT)
    rows: list[dict] = []

    def add(name: str, n: int, feats: list[np.ndarray]):
        d = [frechet_distance_of_features(f, ref) for f in feats]
        rows.append({"set": name, "images": n, "distances": d, "mean": float(np.mean(d)),
                     "std": float(np.std(d, ddof=1)) if len(d) > 1 else None})
        print(f"{name:45s} n={n:5d}  {np.mean(d):8.3f}  {d}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        subset_idx = None
        for gen in a.generator:
            ginfo = read_run(Path(gen), "generator")
            kind = ginfo["config"]["mask"]
            for per_class in sizes:
                comp, mix, real = [], [], None
                for d in range(a.draws):
                    out = Path(tmp) / f"{Path(gen).name}-{per_class}-{d}"
                    export_dataset(gen, out, per_class, with_real=True, seed=1000 + d, device="cpu")
                    man = json.loads((out / "manifest.json").read_text())
                    gen_files = [out / e["file"] for e in man["files"] if e["kind"] == "generated"]
                    comp.append(_embed(_read(gen_files), emb))
                    segments = num = None
                    if kind == "seg":
                        from chimeramix.train.classifier import _segments_at_native

                        split = Split.load(Path(gen) / "split.json")
                        segments = _segments_at_native(split.apply(train), ginfo["config"], {}, man["mask"]["seg_view"])
                        num = int(segments.max()) + 1
                    mix.append(_embed(_pixel_mixes(man, M.MaskSpec.from_config(ginfo["config"]), train.images, segments, num), emb))
                    if real is None:
                        idx = sorted({e["parents"]["train"][0] for e in man["files"] if e["kind"] == "real"})
                        real = _embed(train.images[idx], emb)
                        subset_idx = idx
                label = {"seg": ("ChimeraMix+Seg compositions", "SegMix pixel mixes (same pairs and masks)"),
                         "grid": ("ChimeraMix+Grid compositions", "GridMix pixel mixes (same pairs and masks)")}[kind]
                add(label[0], per_class * len(train.classes), comp)
                add(label[1], per_class * len(train.classes), mix)
        add("real subset (the generator run's training images)", len(subset_idx), [real])
        rest = sorted(set(range(len(train))) - set(subset_idx))
        for per_class in sizes:
            n = per_class * len(train.classes)
            feats = []
            for d in range(a.draws):
                pick = torch.randperm(len(rest), generator=torch.Generator().manual_seed(d))[:n].tolist()
                feats.append(_embed(train.images[[rest[i] for i in pick]], emb))
            add("real images not in the subset (floor)", n, feats)

    rows.sort(key=lambda r: (r["images"], r["mean"]))
    lines = ["| set | images | Fréchet distance (mean ± std over draws) | draws |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        sd = f" ± {r['std']:.2f}" if r["std"] is not None else ""
        lines.append(f"| {r['set']} | {r['images']} | {r['mean']:.2f}{sd} | {len(r['distances'])} |")
    table = "\n".join(lines)
    print(table)
    out = Path(a.out)
    write_json(out.with_suffix(".json"), {"classifier": a.classifier, "generators": a.generator, "reference": f"{cfg['data']}:train",
                                          "reference_size": len(ref), "feature_dim": int(ref.shape[1]), "rows": rows})
    out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
