"""The paper's grid in one call: every (dataset, spc) cell's experiment, a table per cell and one like Table 1."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import TABLE_PRESET
from .errors import ChimeraMixError
from .experiment import check_plan, expand_methods, run_experiment
from .fileio import check_writable, write_json, write_text
from .progress import SILENT, Progress
from .html_report import write_grid_html, write_html
from .report import BASELINE, Table, group_by_setting, load_results, write_tables


def parse_ints(text: str, flag: str) -> list[int]:
    """'5,10,20' -> [5, 10, 20] (each a whole number of at least 1)."""
    try:
        values = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise ChimeraMixError(f"{flag} '{text}' is not a list of whole numbers: use e.g. 5,10,20") from None
    if not values or any(v < 1 for v in values):
        raise ChimeraMixError(f"{flag} '{text}' needs whole numbers of at least 1, e.g. 5,10,20")
    return list(dict.fromkeys(values))


def parse_names(text: str, flag: str) -> list[str]:
    names = [p.strip() for p in str(text).split(",") if p.strip()]
    if not names:
        raise ChimeraMixError(f"{flag} is empty: use e.g. cifair10,stl10")
    return list(dict.fromkeys(names))


@dataclass
class Cell:
    data: str
    spc: int
    stem: str  # <out>/<data>-spc<N>: where its table went
    tables: list[Table] = field(default_factory=list)
    missing: int = 0  # classifier runs without a result (failed, or not waited for)


@dataclass
class SweepResult:
    cells: list[Cell]
    combined_md: Path | None = None
    combined_csv: Path | None = None
    combined_html: Path | None = None  # the grid, linking each cell's <data>-spc<N>.html
    summary_json: Path | None = None
    submitted: dict = field(default_factory=dict)  # run folder -> job id
    pending: list[str] = field(default_factory=list)
    failed: dict = field(default_factory=dict)  # run folder -> why
    seconds: float = 0.0


def _label(data: str) -> str:
    from .train.setup import source_label

    return source_label(data)


def combined_rows(cells: list[Cell]) -> tuple[list[str], list[list[str]]]:
    """Table 1's shape: a row per method, a column per (dataset, spc), mean ± std over seeds in each cell."""
    columns, values, methods = [], [], []
    for c in cells:
        for t in c.tables:
            columns.append(f"{_label(c.data)} spc {c.spc}" + (f" ({t.name})" if len(c.tables) > 1 else ""))
            values.append({r.method: r for r in t.rows})
            methods += [r.method for r in t.rows if r.method not in methods]
    methods.sort(key=lambda m: m != BASELINE)
    cells_out = []
    for m in methods:
        line = [m]
        for v in values:
            r = v.get(m)
            line.append("-" if r is None else f"{r.mean:.2f} ± {'n/a' if r.std is None else f'{r.std:.2f}'} (n={len(r.seeds)})")
        cells_out.append(line)
    return ["method", *columns], cells_out


def combined_markdown(cells: list[Cell], title: str = "") -> str:
    head, rows = combined_rows(cells)
    lines = [f"## {title or 'Test accuracy (%) per dataset and samples per class'}", "",
             "| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Mean ± sample standard deviation over the seeds each cell ran (n); each cell's own table "
                  "(<data>-spc<N>.md) has the per-seed values and the paired differences to the baseline."]
    return "\n".join(lines) + "\n"


def combined_csv(cells: list[Cell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["data", "spc", "setting", "method", "mean", "std", "n", "seeds", "accuracies"])
    for c in cells:
        for t in c.tables:
            for r in t.rows:
                w.writerow([_label(c.data), c.spc, t.name, r.method, f"{r.mean:.4f}", "" if r.std is None else f"{r.std:.4f}",
                            len(r.seeds), " ".join(map(str, r.seeds)), " ".join(f"{a:.4f}" for a in r.accuracies)])
    return buf.getvalue()


def run_sweep(
    datasets: list[str],
    spcs: list[int],
    seeds: list[int],
    *,
    out: str | Path,
    preset: str = TABLE_PRESET,
    masks: list[str] = ("seg",),
    methods: str = "none,chimeramix",
    device: str = "auto",
    root: str | Path = "checkpoints",
    gen_options: dict | None = None,
    clf_options: dict | None = None,
    jobs: int = 1,
    force: bool = False,
    launcher: str = "local",
    slurm=None,
    wait_for_jobs: bool = True,
    job_progress=None,
    poll_s: float = 5.0,
    progress: Progress = SILENT,
    title: str = "",
) -> SweepResult:
    """Every (dataset, spc) cell over `seeds`; writes <out>/<data>-spc<N>.{md,csv,png} and <out>/table1.{md,csv}.

    With launcher 'slurm' (or 'submitit-local') the whole grid is one job graph, submitted at once; 'local' runs
    the cells one after another here. Finished runs are reused, so the same command again resumes the grid.
    """
    out = Path(out)
    plan = expand_methods(methods, list(masks))
    settings = []
    for data in datasets:
        for spc in spcs:
            common = {"data": data, "spc": spc, "preset": preset, "device": device}
            settings.append((data, spc, {**common, **(gen_options or {})}, {**common, **(clf_options or {})}))
    # the whole grid is checked before the first job: a bad value in the last cell must not wait for the first
    for _, _, g, c in settings:
        check_plan(seeds, plan, g, c, jobs, None, launcher, slurm)
    check_writable(out / "table1.md", "--out")
    t0 = time.perf_counter()
    cells = [Cell(d, n, str(out / f"{_label(d)}-spc{n}")) for d, n, _, _ in settings]
    res = SweepResult(cells)
    if launcher == "local":
        for cell in cells:
            progress.message(f"{cell.data}, {cell.spc} per class")
            r = run_experiment(cell.data, cell.spc, seeds, preset=preset, masks=masks, methods=methods, device=device,
                               root=root, gen_options=gen_options, clf_options=clf_options, jobs=jobs, force=force,
                               progress=progress)
            cell.tables = r.tables
    else:
        from .launch import build_graph, launch

        graphs = [build_graph(seeds, plan, g, c, root) for _, _, g, c in settings]
        done = launch([j for g in graphs for j in g], launcher, slurm=slurm, root=root, parallel=jobs, force=force,
                      wait=wait_for_jobs, progress=progress, job_progress=job_progress, poll_s=poll_s)
        res.submitted, res.pending, res.failed = done.submitted, done.pending, done.failed
        for cell, graph in zip(cells, graphs):
            runs = [done.run_dirs.get(j.run_dir) for j in graph if j.kind == "classifier"]
            cell.missing = sum(r is None for r in runs)
            if not cell.missing:
                cell.tables = group_by_setting(load_results(runs))
    res.seconds = time.perf_counter() - t0
    ready = [c for c in cells if c.tables]
    for c in ready:
        name = f"{c.data}, {c.spc} samples per class, preset {preset}"
        _, _, charts = write_tables(c.tables, c.stem, name)
        write_html(c.tables, c.stem, name, charts)
    if ready:
        res.combined_md, res.combined_csv = out / "table1.md", out / "table1.csv"
        write_text(res.combined_md, combined_markdown(ready, title))
        write_text(res.combined_csv, combined_csv(ready))
        head, rows = combined_rows(ready)
        res.combined_html = write_grid_html(out / "table1.html", head, rows,
                                            [(f"{_label(c.data)}, {c.spc} per class", Path(c.stem).name + ".html") for c in ready],
                                            title or "Test accuracy (%) per dataset and samples per class")
        res.summary_json = out / "sweep.json"
        write_json(res.summary_json, {
            "datasets": list(datasets), "spcs": list(spcs), "seeds": list(seeds), "preset": preset,
            "methods": [f"{n}:{m}" if m else n for n, m in plan], "launcher": launcher,
            "cells": [{"data": c.data, "spc": c.spc, "table": [{"setting": t.name, **r.to_dict()} for t in c.tables for r in t.rows]}
                      for c in ready],
        })
    if res.failed:
        first = next(iter(res.failed.items()))
        where = f"; tables of the {len(ready)} complete cells are in {out}" if ready else ""
        raise ChimeraMixError(f"{len(res.failed)} runs failed, e.g. {first[0]}: {first[1]}{where}; "
                              "run the same command again to retry them")
    return res
