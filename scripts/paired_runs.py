"""Paired difference between two sets of classifier runs that `chimeramix report` keeps in separate tables.

    python scripts/paired_runs.py "checkpoints/envelope/clf-*-none-cpu" "checkpoints/evidence/clf-*-none-cpu" \
        --label "bf16 - fp32, baseline"

`report` never pairs runs across settings (another precision, another budget, ...), on purpose: it would mix
them into one row. This pairs them explicitly, by seed: A minus B per seed, the mean with its paired-t 95%
interval and p (report.paired_difference). Only finished runs count; seeds missing on either side are left out.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from chimeramix.report import paired_difference


def accuracies(pattern: str) -> dict[int, float]:
    out = {}
    for d in sorted(glob.glob(pattern)):
        f = Path(d) / "result.json"
        if f.is_file():
            r = json.loads(f.read_text())
            seed = r["split"]["seed"]
            if seed in out:
                raise SystemExit(f"two runs of seed {seed} match {pattern}: narrow the pattern")
            out[seed] = 100 * r["accuracy"]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="glob of run folders (A)")
    p.add_argument("b", help="glob of run folders (B)")
    p.add_argument("--label", default="A - B", help="row label (default: A - B)")
    args = p.parse_args(argv)
    a, b = accuracies(args.a), accuracies(args.b)
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise SystemExit(f"need at least 2 shared seeds (A has {sorted(a)}, B has {sorted(b)})")
    s = paired_difference([a[k] for k in seeds], [b[k] for k in seeds])
    per_seed = ", ".join(f"{k}: {a[k]:.2f} vs {b[k]:.2f} ({a[k] - b[k]:+.2f})" for k in seeds)
    mark = " *" if s.excludes_zero else ""
    print(f"| {args.label} | {s.mean:+.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}]{mark} | {s.p:.3f} | {s.n} | {per_seed} |")


if __name__ == "__main__":
    main()
