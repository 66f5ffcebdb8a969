"""Accuracy against classifier budget: a table and a chart from run sets named on the command line.

    python scripts/budget_chart.py --out results/cpu-cifar10-spc10-budget \
        --point "2000:fp32:checkpoints/budget/clf-*-none-cpu:checkpoints/budget/clf-*-chimeramix-seg-cpu" \
        --point "4000:bf16:checkpoints/envelope/clf-*-none-cpu:checkpoints/envelope/clf-*-chimeramix-seg-cpu" ...

Each --point is STEPS:SERIES:BASELINE_GLOB:METHOD_GLOB; SERIES names the run set the point belongs to (the
precision, and e.g. "bf16, gen 4k" for ChimeraMix runs with another generator budget), one line per series.
Runs pair by seed (report.paired_difference), as `report` would if the runs were one setting; `report` keeps
other budgets and precisions apart, so the pairing across them is explicit here. Writes <out>.md (one row per
point) and <out>.png (both accuracies, and the paired difference with its 95% interval, against steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from chimeramix.report import paired_difference
from paired_runs import accuracies  # scripts/ is on the path when this runs as a script


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--point", action="append", required=True, help="STEPS:SERIES:BASELINE_GLOB:METHOD_GLOB")
    p.add_argument("--method", default="ChimeraMix+Seg", help="name of the method runs in the table and chart")
    p.add_argument("--out", required=True, help="file prefix: <out>.md and <out>.png")
    args = p.parse_args(argv)
    rows = []
    for spec in args.point:
        steps, run_set, base_glob, meth_glob = spec.split(":", 3)
        base, meth = accuracies(base_glob), accuracies(meth_glob)
        seeds = sorted(set(base) & set(meth))
        if len(seeds) < 2:
            raise SystemExit(f"{spec}: fewer than 2 seeds in both sets (baseline {sorted(base)}, method {sorted(meth)})")
        b, m = [base[k] for k in seeds], [meth[k] for k in seeds]
        rows.append((int(steps), run_set, seeds, sum(b) / len(b), sum(m) / len(m), paired_difference(m, b)))
    rows.sort(key=lambda r: (r[0], r[1]))

    lines = ["| classifier steps | run set | seeds | Baseline | " + args.method + " | Δ [95% CI] | p |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: |"]
    for steps, run_set, seeds, b, m, s in rows:
        mark = " *" if s.excludes_zero else ""
        lines.append(f"| {steps:,} | {run_set} | {','.join(map(str, seeds))} | {b:.2f} | {m:.2f} | "
                     f"{s.mean:+.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}]{mark} | {s.p:.3f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    series = sorted({r[1] for r in rows})
    shift = {name: 1 + 0.04 * (i - (len(series) - 1) / 2) for i, name in enumerate(series)}  # apart, not on top
    for i, name in enumerate(series):
        pts = [r for r in rows if r[1] == name]
        marker, style = "os^Dv"[i % 5], ("-", "--", ":", "-.")[i % 4]
        x = [r[0] for r in pts]
        ax1.plot(x, [r[3] for r in pts], marker=marker, linestyle=style, color="tab:gray", label=f"Baseline ({name})")
        ax1.plot(x, [r[4] for r in pts], marker=marker, linestyle=style, color="tab:blue", label=f"{args.method} ({name})")
        ax2.errorbar([v * shift[name] for v in x], [r[5].mean for r in pts],
                     yerr=[[r[5].mean - r[5].ci_low for r in pts], [r[5].ci_high - r[5].mean for r in pts]],
                     marker=marker, capsize=3, linestyle="none", label=name)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.minorticks_off()  # log axes label minor ticks ("3x10^3"), which read as data points here
        ax.set_xticks(sorted({r[0] for r in rows}))
        ax.set_xticklabels([f"{r // 1000}k" for r in sorted({r[0] for r in rows})])
        ax.set_xlabel("classifier steps")
    ax1.legend(fontsize=7, loc="lower right")  # accuracies rise with steps: the lower right stays empty
    ax2.legend(fontsize=8)
    ax1.set_ylabel("test accuracy (%), mean over seeds")
    ax2.axhline(0, color="black", linewidth=0.8)
    ax2.set_ylabel(f"{args.method} - Baseline (points), 95% CI")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
