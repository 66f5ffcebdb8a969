"""Metrics of one run, and tables over many runs: mean +- std over seeds per method, paired differences to the
baseline, one table per setting (runs that computed different things are never averaged)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import records as R
from .config import RUNTIME_FIELDS
from .errors import ChimeraMixError
from .fileio import check_writable, read_json, write_text


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
    lines += ["", "![confusion matrix](confusion.png)", "",
              "What the classifier looks at (class activation maps of test images it gets right, then wrong):", "",
              "![class activation maps](cams.png)", ""]
    return "\n".join(lines)


BASELINE = "Baseline"
NA = "n/a"


@dataclass
class PairedStats:
    """A method minus the baseline over the seeds both ran, in accuracy points; None where n < 2 leaves nothing to say."""

    diffs: list[float]
    mean: float
    ci_low: float | None
    ci_high: float | None
    p: float | None
    n: int
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """Whether the confidence interval lies wholly on one side of 0 (the table marks it with *)."""
        return self.ci_low is not None and (self.ci_low > 0 or self.ci_high < 0)


def paired_difference(a: list[float], b: list[float], level: float = 0.95) -> PairedStats:
    """Mean of a[i] - b[i] with its confidence interval from the paired t distribution (df = n - 1) and the two-sided p."""
    if len(a) != len(b):
        raise ChimeraMixError(f"paired values need one of each per seed: got {len(a)} and {len(b)} values")
    if not a:
        raise ChimeraMixError("no paired values: the two lists share no seed")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return PairedStats(diffs, mean, None, None, None, n, level)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) / math.sqrt(n)
    if se == 0:
        # every seed moved by exactly the same amount: no spread, so the interval is a point and any shift is certain
        return PairedStats(diffs, mean, mean, mean, 0.0 if mean else 1.0, n, level)
    from scipy import stats  # imported here: every classifier run imports this module, few need scipy

    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return PairedStats(diffs, mean, mean - half, mean + half, p, n, level)


@dataclass
class Row:
    method: str
    accuracies: list[float]  # percent, one per seed, in seed order
    seeds: list[int]
    run_dirs: list[str] = field(default_factory=list)
    vs_baseline: PairedStats | None = None  # None for the baseline itself and in tables without one

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single run, which has no spread to measure."""
        n = len(self.accuracies)
        if n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((a - m) ** 2 for a in self.accuracies) / (n - 1))

    def to_dict(self) -> dict:
        """The row as JSON: percent, and null where a figure cannot be computed."""
        d = {"method": self.method, "mean": self.mean, "std": self.std, "seeds": self.seeds, "accuracies": self.accuracies}
        s = self.vs_baseline
        if s is not None:
            d.update(diffs=s.diffs, diff_mean=s.mean if s.n else None, ci_low=s.ci_low, ci_high=s.ci_high, p=s.p, n_paired=s.n)
        return d


@dataclass
class Table:
    """Runs that computed the same thing except for method and seed: one row per method."""

    name: str  # what sets it apart, e.g. "source cifar10, spc 5, preset fast, 1000 steps"
    setting: dict
    rows: list[Row]


# What a generator's compositions depend on besides its data split (which the classifier's split already fixes):
# two ChimeraMix runs whose generators differ here (e.g. 1,000 vs 4,000 generator steps) are different rows.
_NOT_RECIPE = frozenset(RUNTIME_FIELDS) | {"seed", "data", "spc", "image_size", "fingerprint", "mask"}


def generator_recipe(config: dict) -> dict:
    """The training config of a generator run (its run.json "config") that a classifier's result records."""
    return {k: v for k, v in sorted(config.items()) if k not in _NOT_RECIPE}


def _recipe_from_disk(result: dict) -> dict | None:
    # results written before classifiers recorded their generator's recipe: read it from the generator's run.json
    from .runs import read_run

    try:
        return generator_recipe(read_run(result["generator_run"], "generator")["config"])
    except (ChimeraMixError, OSError):  # gone, damaged or not a generator run
        return None


def load_results(run_dirs: list[str | Path]) -> list[dict]:
    if not run_dirs:
        raise ChimeraMixError("no runs to report on: pass classifier run folders (e.g. checkpoints/clf-*)")
    from .runs import read_result

    out = []
    for d in run_dirs:
        r = read_result(d)
        r["run_dir"] = str(d)
        if r.get("generator_run") and r.get("generator_config") is None:
            recipe = _recipe_from_disk(r)
            if recipe is not None:
                r["generator_config"] = recipe
        out.append(r)
    return out


# Config fields that do not make a table: the seed varies within one, runtime fields change no number, and the
# method's own fields tell rows apart. Data, spc and image size come from the split, which records what was used
# (the config holds what was asked for: a path, or None for the native size).
_NOT_SETTING = frozenset(RUNTIME_FIELDS) | {"seed", "data", "spc", "image_size", "fingerprint", "method", "method_options",
                                            "generator", "mask", "p_generated", "parents"}


def precision_of(result: dict) -> str:
    """The arithmetic a run trained in: 'bf16' (autocast) or 'fp32', as SpeedOptions resolved its --amp."""
    cfg = result.get("config", {})
    amp = cfg.get("amp", "auto")
    if amp == "auto":  # auto is bf16 on CUDA only
        return "bf16" if str(result.get("device") or cfg.get("device") or "cpu").startswith("cuda") else "fp32"
    return "bf16" if amp == "on" else "fp32"


def setting_of(result: dict) -> dict:
    """What a run's accuracy depends on besides its method and seed: runs that differ here are never averaged.

    The device and the speed switches are not part of it, except the precision: bf16 and fp32 runs are kept
    apart until a paired run shows they agree (docs/results.md).
    """
    split = result.get("split", {})
    setting = {k: split.get(k) for k in ("source", "spc", "image_size", "fingerprint")}
    # the data as the user named it (a folder's resolved path names the machine that ran it, not the data); the
    # fingerprint beside it says which images those were
    setting["source"] = result.get("config", {}).get("data") or split.get("source")
    setting.update({k: v for k, v in sorted(result.get("config", {}).items()) if k not in _NOT_SETTING})
    setting["precision"] = precision_of(result)
    return setting


def _method_key(result: dict) -> tuple[str, str]:
    # method_options repeats the run's seed, which must not split a method's row
    opts = {k: v for k, v in result.get("config", {}).get("method_options", {}).items() if k != "seed"}
    # generators trained differently (steps, size, loss weights) make different compositions: their own rows
    opts.update({f"generator {k}": v for k, v in (result.get("generator_config") or {}).items()})
    return result["label"], json.dumps(opts, sort_keys=True, default=str)


def _value(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def _rows(results: list[dict]) -> list[Row]:
    """Rows of one setting: runs sorted by seed, the baseline first, paired differences to it."""
    groups: dict[tuple[str, str], dict[int, tuple[float, str]]] = {}
    for r in results:
        per_seed = groups.setdefault(_method_key(r), {})
        seed = r["split"]["seed"]
        if seed in per_seed:
            raise ChimeraMixError(
                f"{per_seed[seed][1]} and {r.get('run_dir', '?')} are both {r['label']} seed {seed} in the same setting: "
                f"report only one of them"
            )
        per_seed[seed] = (100 * r["accuracy"], r.get("run_dir", ""))
    # a label run with different method options gets a row per variant, named by the options that differ
    variants: dict[str, list[dict]] = {}
    for label, opts in groups:
        variants.setdefault(label, []).append(json.loads(opts))
    rows = []
    for (label, opts), per_seed in groups.items():
        name = label
        if len(variants[label]) > 1:
            mine = json.loads(opts)
            differ = sorted({k for v in variants[label] for k in set(v) | set(mine) if v.get(k) != mine.get(k)})
            name += " (" + ", ".join(f"{k}={_value(mine[k]) if k in mine else '-'}" for k in differ) + ")"
        seeds = sorted(per_seed)
        rows.append(Row(name, [per_seed[s][0] for s in seeds], seeds, [per_seed[s][1] for s in seeds]))
    return _pair_with_baseline(rows)


def _pair_with_baseline(rows: list[Row]) -> list[Row]:
    """The baseline first, and every other row's paired difference to it over the seeds both ran."""
    rows.sort(key=lambda r: r.method != BASELINE)
    base = rows[0] if rows and rows[0].method == BASELINE else None
    for r in rows[1:] if base else []:
        b = dict(zip(base.seeds, base.accuracies))
        shared = [s for s in r.seeds if s in b]
        if shared:
            mine = dict(zip(r.seeds, r.accuracies))
            r.vs_baseline = paired_difference([mine[s] for s in shared], [b[s] for s in shared])
        else:
            r.vs_baseline = PairedStats([], math.nan, None, None, None, 0)  # no seed in common: nothing to pair
    return rows


def _describe(settings: list[dict]) -> list[str]:
    """Names for tables: data, spc, preset and steps always, then whatever else differs between them."""
    always = ("source", "spc", "preset", "steps")
    keys = list(dict.fromkeys(k for s in settings for k in s))
    differ = [k for k in keys if k not in (*always, "fingerprint") and len({_value(s.get(k)) for s in settings}) > 1]
    names = []
    for s in settings:
        parts = [f"{k} {_value(s[k])}" for k in always[:3] if s.get(k) is not None]
        if s.get("fingerprint") and parts and parts[0].startswith("source "):
            parts[0] += f" (fingerprint {s['fingerprint']})"
        if s.get("steps") is not None:
            parts.append(f"{s['steps']} steps")
        parts += [f"{k.replace('_', ' ')} {_value(s.get(k, '-'))}" for k in differ]
        names.append(", ".join(parts))
    return names


def group_by_setting(results: list[dict]) -> list[Table]:
    """One table per setting (data, spc, preset, steps, architecture, ...), in order of appearance; see `setting_of`."""
    by: dict[str, tuple[dict, list[dict]]] = {}
    for r in results:
        s = setting_of(r)
        # one data set named two ways (a relative and an absolute path) is one setting: its fingerprint decides
        key = {k: v for k, v in s.items() if not (k == "source" and s.get("fingerprint"))}
        by.setdefault(json.dumps(key, sort_keys=True, default=str), (s, []))[1].append(r)
    settings = [s for s, _ in by.values()]
    return [Table(name, s, _rows(rs)) for name, (s, rs) in zip(_describe(settings), by.values())]


def load_recorded(path: str | Path) -> list[Table]:
    """The tables of a recorded result (experiment's <prefix>.json, or `report --json`'s output), statistics recomputed.

    What a table held is the accuracies per seed; the differences, intervals and p-values follow from them, so they
    are computed again rather than trusted, and a recorded table reads exactly as it did when it was made.
    """
    path = Path(path)
    try:
        data = read_json(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ChimeraMixError(f"{path} cannot be read as a recorded result ({e.__class__.__name__}): "
                              f"pass a JSON that `chimeramix experiment --out-prefix` or `report --json` wrote") from None
    rows = data.get("table") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        raise ChimeraMixError(f"{path} holds no result table (rows with setting, method, seeds and accuracies): "
                              f"pass a JSON that `chimeramix experiment --out-prefix` or `report --json` wrote")
    R.check_fields(path, {"table": rows}, R.RECORDED_FIELDS, R.RECORDED_FIELDS.keys(),
                   "it is not a table `chimeramix experiment --out-prefix` or `report --json` wrote: pass one of those")
    by: dict[str, list[Row]] = {}
    for r in rows:
        by.setdefault(r["setting"], []).append(Row(r["method"], [float(a) for a in r["accuracies"]], [int(s) for s in r["seeds"]]))
    return [Table(name, {"recorded": str(path)}, _pair_with_baseline(rs)) for name, rs in by.items()]


def load_tables(paths: list[str | Path]) -> list[Table]:
    """What `chimeramix report` shows: run folders grouped by setting, or the tables of recorded .json results.

    The two are not mixed: a recorded table holds accuracies only, so runs could not be grouped with it by setting.
    """
    recorded = [Path(p) for p in paths if Path(p).suffix == ".json" and Path(p).is_file()]
    if recorded and len(recorded) < len(paths):
        raise ChimeraMixError("report either run folders or recorded .json results, not both: "
                              "report the folders with --json and pass that file instead")
    if recorded:
        return [t for p in recorded for t in load_recorded(p)]
    return group_by_setting(load_results(paths))


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return NA if v is None else format(v, spec)


def _fmt_p(p: float | None) -> str:
    return NA if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _fmt_delta(s: PairedStats) -> str:
    if s.n == 0:
        return NA
    ci = f"[{s.ci_low:.2f}, {s.ci_high:.2f}]" if s.ci_low is not None else f"[{NA}]"
    return f"{s.mean:+.2f} {ci}" + (" *" if s.excludes_zero else "")


def table_cells(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of a table as text (the markdown table and the terminal's share them)."""
    seeds = sorted({s for r in rows for s in r.seeds})
    paired = any(r.vs_baseline is not None for r in rows)
    base_row = next((r for r in rows if r.method == BASELINE), None)
    base = dict(zip(base_row.seeds, base_row.accuracies)) if base_row else {}
    head = ["method", "mean ± std"] + (["Δ vs baseline [95% CI]", "p", "paired n"] if paired else [])
    head += [f"seed {s}" for s in seeds]
    cells = []
    for r in rows:
        line = [r.method, f"{r.mean:.2f} ± {_fmt(r.std)}"]
        s = r.vs_baseline
        if paired:
            line += ["-", "-", "-"] if s is None else [_fmt_delta(s), _fmt_p(s.p), str(s.n)]
        per = dict(zip(r.seeds, r.accuracies))
        # each seed's difference to the baseline beside the accuracy, where both ran it
        diff = {x: a - base[x] for x, a in per.items() if x in base} if s is not None else {}
        line += [("-" if x not in per else f"{per[x]:.2f}" + (f" ({diff[x]:+.2f})" if x in diff else "")) for x in seeds]
        cells.append(line)
    return head, cells


def table_markdown(rows: list[Row], title: str = "") -> str:
    """One table in markdown, with a note on what its figures are."""
    head, cells = table_cells(rows)
    lines = ([f"## {title}", ""] if title else []) + ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    lines += [""] + table_notes(rows)
    return "\n".join(lines) + "\n"


def table_notes(rows: list[Row]) -> list[str]:
    """What a table's figures are, a sentence a line (below the markdown table and the HTML one)."""
    n = len({s for r in rows for s in r.seeds})
    notes = [f"Test accuracy in percent; std is the sample standard deviation over seeds (n - 1, {NA} for one seed); "
             f"n = {n} seed{'s' if n != 1 else ''}."]
    if any(r.vs_baseline is not None for r in rows):
        notes.append("Δ: method minus Baseline in accuracy points (each seed's in parentheses beside it), averaged over the "
                     "paired n seeds both ran; 95% confidence interval from the paired t distribution (df = n - 1), p from "
                     f"the two-sided paired t-test, both {NA} below 2 pairs; * marks an interval that excludes 0.")
    return notes


CSV_COLUMNS = ["setting", "method", "mean", "std", "n", "seeds", "accuracies", "diffs", "diff_mean", "ci_low", "ci_high", "p",
               "n_paired"]


def _csv_rows(rows: list[Row], setting: str) -> list[list[str]]:
    out = []
    for r in rows:
        line = [setting, r.method, f"{r.mean:.4f}", _fmt(r.std, ".4f"), len(r.accuracies), " ".join(map(str, r.seeds)),
                " ".join(f"{a:.4f}" for a in r.accuracies)]
        s = r.vs_baseline
        if s is None:  # the baseline itself, or no baseline to compare with
            line += [""] * 6
        else:
            line += [" ".join(f"{d:.4f}" for d in s.diffs), NA if s.n == 0 else f"{s.mean:.4f}", _fmt(s.ci_low, ".4f"),
                     _fmt(s.ci_high, ".4f"), _fmt(s.p, ".6f"), s.n]
        out.append(line)
    return out


def report_csv(tables: list[Table]) -> str:
    """Every table in one CSV, told apart by the setting column."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for t in tables:
        w.writerows(_csv_rows(t.rows, t.name))
    return buf.getvalue()


# How much longer than <stem>.md the other names of a table get (<stem>-12.png, <stem>.json)
TABLE_NAMES_EXTRA = len("-99.png") - len(".md")


def chart_paths(stem: str | Path, tables: list[Table]) -> list[Path]:
    """<stem>.png for one table, <stem>-1.png, <stem>-2.png, ... for several."""
    stem = Path(stem)
    if len(tables) == 1:
        return [stem.with_suffix(".png")]
    return [stem.with_name(f"{stem.name}-{i}.png") for i in range(1, len(tables) + 1)]


def report_markdown(tables: list[Table], title: str = "", charts: list[Path] | None = None) -> str:
    """Every table in markdown: one titled by `title` (else its setting), several each under its setting."""
    if len(tables) == 1:
        parts = [table_markdown(tables[0].rows, title or tables[0].name)]
    else:
        parts = [f"# {title}\n"] if title else []
        parts += [table_markdown(t.rows, t.name) for t in tables]
    if charts:
        first = 1 if len(tables) > 1 and title else 0
        for i, c in enumerate(charts):
            parts[first + i] += f"\n![accuracy per method]({Path(c).name})\n"
    return "\n".join(parts)


def write_tables(tables: list[Table], stem: str | Path, title: str = "") -> tuple[Path, Path, list[Path]]:
    """<stem>.md and <stem>.csv, plus a chart of the same numbers per table (see `chart_paths`)."""
    from .plots import save_results_plot

    stem = Path(stem)
    md, cs = stem.with_suffix(".md"), stem.with_suffix(".csv")
    check_writable(md, "--out-prefix", TABLE_NAMES_EXTRA)
    charts = chart_paths(stem, tables)
    try:
        write_text(md, report_markdown(tables, title, charts))
        write_text(cs, report_csv(tables))
        for t, c in zip(tables, charts):
            save_results_plot(c, t.rows, title if len(tables) == 1 and title else t.name)
    except OSError as e:  # e.g. the disk filled up after the check
        raise ChimeraMixError(f"cannot write the tables to {stem}.* ({e.strerror}): choose a writable --out") from None
    return md, cs, charts
