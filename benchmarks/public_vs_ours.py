"""The public ChimeraMix code against ours, seed by seed: per-seed accuracies and paired differences with their CIs.

    python benchmarks/public_vs_ours.py --public OUT/results.json [more results.json ...] \\
        --ours RUNS_DIR --out results/public-vs-ours-cifar10-spc10

--public: results.json files written by benchmarks/public_reference.py (several runs of it, e.g. seeds 0-1 on one
day and 2-4 on another, are merged; a seed and method given twice must agree). --ours: a folder whose subfolders
are our classifier runs of the same settings (fit-classifier's result.json; the method none, mixup and chimeramix
map to baseline, mixup and chimeramix-seg). Only seeds both have enter the paired statistics.

Writes <out>.md and <out>.json: the per-seed table, then for each implementation the paired contrasts
(MixUp - ChimeraMix+Seg, ChimeraMix+Seg - Baseline, MixUp - Baseline) and ours - public per method and per contrast
(a gain of one implementation against the other's on the same seeds), each as the
mean over seeds with its 95% paired-t interval (chimeramix.report.paired_difference).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chimeramix.report import paired_difference

METHODS = ("baseline", "mixup", "chimeramix-seg")
LABELS = {"baseline": "Baseline", "mixup": "MixUp", "chimeramix-seg": "ChimeraMix+Seg"}
OURS = {"none": "baseline", "mixup": "mixup", "chimeramix": "chimeramix-seg"}
CONTRASTS = (("mixup", "chimeramix-seg"), ("chimeramix-seg", "baseline"), ("mixup", "baseline"))


def public_accuracies(paths: list[Path]) -> dict[tuple[int, str], float]:
    """(seed, method) -> test accuracy in points from one or more public_reference results.json files."""
    acc: dict[tuple[int, str], float] = {}
    for path in paths:
        for run in json.loads(Path(path).read_text())["runs"].values():
            if "test_accuracy" not in run:
                continue  # the generator runs
            key, value = (int(run["seed"]), run["method"]), 100 * float(run["test_accuracy"])
            if key in acc and abs(acc[key] - value) > 1e-9:
                raise SystemExit(f"{path}: seed {key[0]} {key[1]} is {value:.2f} here and {acc[key]:.2f} in another file")
            acc[key] = value
    return acc


def our_accuracies(root: Path) -> dict[tuple[int, str], float]:
    """(seed, method) -> test accuracy in points of the finished classifier runs under `root`."""
    acc: dict[tuple[int, str], float] = {}
    for path in sorted(root.glob("*/result.json")):
        r = json.loads(path.read_text())
        if r.get("kind") != "classifier" or r["method"] not in OURS:
            continue
        acc[(int(r["config"]["seed"]), OURS[r["method"]])] = 100 * float(r["accuracy"])
    return acc


def _stat(s) -> dict:
    return {"mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high, "p": s.p, "n": s.n, "diffs": s.diffs}


def _fmt(s: dict) -> str:
    if s["ci_low"] is None:
        return f"{s['mean']:+.2f} (n = {s['n']})"
    return f"{s['mean']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}] (n = {s['n']}, p = {s['p']:.3f})"


def compare(public: dict, ours: dict) -> dict:
    seeds = sorted({s for s, _ in public} | {s for s, _ in ours})
    both = [s for s in seeds if all((s, m) in public and (s, m) in ours for m in METHODS)]
    out = {"seeds": seeds, "paired_seeds": both, "public": {}, "ours": {}, "ours_minus_public": {}}
    for name, acc in (("public", public), ("ours", ours)):
        full = [s for s in seeds if all((s, m) in acc for m in METHODS)]
        for a, b in CONTRASTS:
            st = paired_difference([acc[(s, a)] for s in full], [acc[(s, b)] for s in full]) if full else None
            out[name][f"{a} - {b}"] = {**_stat(st), "seeds": full} if st else None
    for m in METHODS:
        st = paired_difference([ours[(s, m)] for s in both], [public[(s, m)] for s in both]) if both else None
        out["ours_minus_public"][m] = {**_stat(st), "seeds": both} if st else None
    for a, b in CONTRASTS:  # does one implementation's gain differ from the other's, seed by seed?
        gain = lambda acc: [acc[(s, a)] - acc[(s, b)] for s in both]  # noqa: E731
        st = paired_difference(gain(ours), gain(public)) if both else None
        out["ours_minus_public"][f"{a} - {b}"] = {**_stat(st), "seeds": both} if st else None
    out["per_seed"] = {str(s): {f"{who} {m}": acc.get((s, m)) for who, acc in (("public", public), ("ours", ours))
                                for m in METHODS} for s in seeds}
    return out


def markdown(res: dict, title: str) -> str:
    L = [f"# {title}", "", "## Test accuracy (%) per seed", "",
         "| seed | run | " + " | ".join(LABELS[m] for m in METHODS) + " | MixUp - ChimeraMix+Seg | ChimeraMix+Seg - Baseline |",
         "| --- | --- | " + " | ".join("---:" for _ in METHODS) + " | ---: | ---: |"]
    for s in res["seeds"]:
        for who in ("public", "ours"):
            v = [res["per_seed"][str(s)][f"{who} {m}"] for m in METHODS]
            cells = ["-" if x is None else f"{x:.2f}" for x in v]
            d1 = "-" if None in (v[1], v[2]) else f"{v[1] - v[2]:+.2f}"
            d2 = "-" if None in (v[2], v[0]) else f"{v[2] - v[0]:+.2f}"
            L.append(f"| {s} | {'public code' if who == 'public' else 'ours'} | " + " | ".join(cells) + f" | {d1} | {d2} |")
    L += ["", "## Paired differences (points; mean [95% paired-t interval])", "",
          "| contrast | public code | ours |", "| --- | --- | --- |"]
    for a, b in CONTRASTS:
        k = f"{a} - {b}"
        cell = lambda who: "-" if res[who][k] is None else _fmt(res[who][k])  # noqa: E731
        L.append(f"| {LABELS[a]} - {LABELS[b]} | {cell('public')} | {cell('ours')} |")
    L += ["", f"## Ours - public code, per method (seeds {', '.join(map(str, res['paired_seeds']))})", "",
          "| method | ours - public |", "| --- | --- |"]
    for m in METHODS:
        s = res["ours_minus_public"][m]
        L.append(f"| {LABELS[m]} | {'-' if s is None else _fmt(s)} |")
    for a, b in CONTRASTS:
        s = res["ours_minus_public"][f"{a} - {b}"]
        L.append(f"| gain {LABELS[a]} - {LABELS[b]} | {'-' if s is None else _fmt(s)} |")
    return "\n".join(L) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--public", type=Path, nargs="+", required=True, help="public_reference.py results.json file(s)")
    p.add_argument("--ours", type=Path, required=True, help="folder of our classifier run folders")
    p.add_argument("--out", type=Path, required=True, help="output stem: writes <out>.md and <out>.json")
    p.add_argument("--title", default="The public ChimeraMix code and ours, same settings, seed by seed")
    a = p.parse_args(argv)
    res = compare(public_accuracies(a.public), our_accuracies(a.ours))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{a.out}.json").write_text(json.dumps(res, indent=2) + "\n")
    text = markdown(res, a.title)
    Path(f"{a.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
