"""Generator quality against training time, for choosing a short-budget generator recipe (issue 28).

    python -m benchmarks.generator_recipe --classifier CLF_RUN --out results/generator-recipes GEN_RUN [GEN_RUN ...]

For each finished generator run: its training seconds (run.json), the reconstruction loss it logged (the
training convention, mse(rec1, x1) + mse(rec2, x2), averaged over the last tenth of its steps so one noisy
batch does not decide), its discriminator and LSGAN terms there, and the Fréchet distance of 1,000 compositions
(100 per class, export seed 1000: the first draw of scripts/set_distances.py) to the whole training set in the
penultimate features of CLF_RUN. Take a classifier trained on ANOTHER split than the generators (see
scripts/set_distances.py). Writes <out>.json and <out>.md, and <out>.png (quality against seconds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chimeramix.export import export_dataset
from chimeramix.fid import _features, frechet_distance_of_features, load_classifier_embedding, parse_set
from chimeramix.fileio import write_json
from chimeramix.progress import SILENT
from chimeramix.runs import read_run


def logged_tail(run_dir: Path, fraction: float = 0.1) -> dict:
    """Means of the logged losses over the last `fraction` of the run's steps."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = rows[-1]["step"]
    tail = [r for r in rows if r["step"] > last * (1 - fraction)]
    return {k: float(np.mean([r[k] for r in tail])) for k in ("rec", "lap", "adv", "d") if k in tail[0]}


def composition_distance(gen: Path, emb, ref: np.ndarray, per_class: int = 100, seed: int = 1000) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        export_dataset(gen, out, per_class, seed=seed, device="cpu")
        man = json.loads((out / "manifest.json").read_text())
        files = [out / e["file"] for e in man["files"] if e["kind"] == "generated"]
        imgs = [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
    feats = np.concatenate([emb(imgs[i: i + 250], "cpu").double().numpy() for i in range(0, len(imgs), 250)])
    return frechet_distance_of_features(feats, ref)


def describe(cfg: dict) -> str:
    keys = ("lr", "d_lr", "d_every", "warmup", "lr_milestones", "batch_size", "ngf", "ndf", "steps", "w_adv", "amp")
    return ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="finished generator runs")
    p.add_argument("--classifier", required=True, help="a finished classifier run (another split): the embedding")
    p.add_argument("--out", required=True, help="writes <out>.json, <out>.md and <out>.png")
    a = p.parse_args(argv)
    emb = load_classifier_embedding(a.classifier, "cpu")
    data = read_run(Path(a.runs[0]), "generator")["config"]["data"]
    ref = _features(parse_set(f"{data}:train"), lambda imgs: emb(imgs, "cpu"), "cpu", 250, "ref", SILENT)
    rows = []
    for r in a.runs:
        run = Path(r)
        info = read_run(run, "generator")
        row = {"run": str(run), "name": run.name, "config": describe(info["config"]),
               "train_seconds": info.get("train_seconds"), **logged_tail(run),
               "frechet_1000": composition_distance(run, emb, ref)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = ["| run | train s | rec (last 10%) | D loss | LSGAN | Fréchet, 1,000 compositions | recipe |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        secs = f"{r['train_seconds']:.0f}" if r["train_seconds"] else "-"
        lines.append(f"| {r['name']} | {secs} | {r['rec']:.4f} | {r['d']:.3f} | {r['adv']:.3f} | {r['frechet_1000']:.2f} | {r['config']} |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {"classifier": a.classifier, "rows": rows})
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _chart(rows, out.with_suffix(".png"))


def _chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "rec", "reconstruction loss (last 10% of steps)"),
                           (axes[1], "frechet_1000", "Fréchet distance of compositions")):
        for r in rows:
            if r["train_seconds"]:
                ax.scatter(r["train_seconds"], r[key])
                ax.annotate(r["name"], (r["train_seconds"], r[key]), fontsize=7)
        ax.set_xlabel("generator training seconds (one thread)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
