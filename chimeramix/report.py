"""Metrics of one run, and tables over many runs (mean +- std over seeds, grouped by method)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ChimeraMixError
from .fileio import read_json, write_text


def classification_metrics(pred: torch.Tensor, true: torch.Tensor, classes: list[str]) -> dict:
    """Top-1 accuracy, mean per-class accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true)."""
    k = len(classes)
    cm = torch.bincount(true.long() * k + pred.long(), minlength=k * k).reshape(k, k).double()
    tp = cm.diag()
    support, predicted = cm.sum(1), cm.sum(0)
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), torch.zeros_like(tp))
    present = support > 0
    return {
        "accuracy": float(tp.sum() / cm.sum().clamp_min(1)),
        "mean_class_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "test_size": int(cm.sum()),
        "per_class": [
            {"class": c, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        ],
        "confusion": cm.long().tolist(),
    }


def run_markdown(result: dict) -> str:
    """report.md of one classifier run."""
    lines = [
        f"# {result['label']}: {result['split']['source']} (spc {result['split']['spc']}, seed {result['split']['seed']})",
        "",
        f"- top-1 accuracy: **{100 * result['accuracy']:.2f}%** on {result['test_size']} test images",
        f"- mean per-class accuracy: {100 * result['mean_class_accuracy']:.2f}%",
        f"- architecture {result['config']['arch']}, {result['config']['steps']} steps of batch {result['config']['batch_size']}, "
        f"preset {result['config']['preset']}, device {result['device']}",
        f"- training {result['train_seconds']:.0f} s, evaluation {result['eval_seconds']:.1f} s",
    ]
    if result.get("generator_run"):
        lines.append(f"- generator run: `{result['generator_run']}`")
    lines += ["", "| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in result["per_class"]:
        lines.append(f"| {r['class']} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {100 * r['f1']:.1f} | {r['support']} |")
    lines += ["", "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)


@dataclass
class Row:
    method: str
    accuracies: list[float]  # percent, one per seed, in seed order
    seeds: list[int]

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single run."""
        n = len(self.accuracies)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((a - m) ** 2 for a in self.accuracies) / (n - 1))


def load_results(run_dirs: list[str | Path]) -> list[dict]:
    if not run_dirs:
        raise ChimeraMixError("no runs to report on: pass classifier run folders (e.g. checkpoints/clf-*)")
    out = []
    for d in run_dirs:
        f = Path(d) / "result.json"
        if not f.is_file():
            raise ChimeraMixError(f"{d} holds no result.json: is it a finished classifier run?")
        r = read_json(f)
        r["run_dir"] = str(d)
        out.append(r)
    return out


def group_by_method(results: list[dict]) -> list[Row]:
    """One row per method label, runs sorted by seed; the baseline first, then in order of appearance."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        groups.setdefault(r["label"], []).append((r["split"]["seed"], 100 * r["accuracy"]))
    rows = [Row(m, [a for _, a in sorted(v)], [s for s, _ in sorted(v)]) for m, v in groups.items()]
    rows.sort(key=lambda r: r.method != "Baseline")
    return rows


def table_markdown(rows: list[Row], title: str = "") -> str:
    seeds = sorted({s for r in rows for s in r.seeds})
    head = "| method | mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |"
    lines = ([f"## {title}", ""] if title else []) + [head, "| --- | ---: |" + " ---: |" * len(seeds)]
    for r in rows:
        per = dict(zip(r.seeds, r.accuracies))
        cells = " | ".join(f"{per[s]:.2f}" if s in per else "-" for s in seeds)
        lines.append(f"| {r.method} | {r.mean:.2f} ± {r.std:.2f} | {cells} |")
    lines += ["", f"Test accuracy in percent; std is the sample standard deviation over seeds (n - 1); n = {len(seeds)} seeds."]
    return "\n".join(lines) + "\n"


def table_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "mean", "std", "n", "seeds", "accuracies"])
    for r in rows:
        w.writerow([r.method, f"{r.mean:.4f}", f"{r.std:.4f}", len(r.accuracies), " ".join(map(str, r.seeds)),
                    " ".join(f"{a:.4f}" for a in r.accuracies)])
    return buf.getvalue()


def write_tables(rows: list[Row], stem: str | Path, title: str = "") -> tuple[Path, Path]:
    """<stem>.md and <stem>.csv, plus <stem>.png (a chart of the same numbers)."""
    from .plots import save_results_plot

    stem = Path(stem)
    md, cs = stem.with_suffix(".md"), stem.with_suffix(".csv")
    write_text(md, table_markdown(rows, title) + f"\n![accuracy per method]({stem.name}.png)\n")
    write_text(cs, table_csv(rows))
    save_results_plot(stem.with_suffix(".png"), rows, title)
    return md, cs
