"""<prefix>.html: an experiment's tables, chart, sample grids, per-class figures and the Baseline's errors on one page.

The page is self-contained (pictures inline as data URIs, the style in the page, no script) and its content
security policy forbids loading anything else, so it reads the same from a laptop, a mail attachment or paper.
The figures come from what the runs recorded: the tables are report.py's own cells and notes, the pictures the
PNGs the runs wrote, the per-image predictions their result.json (runs from before these were recorded leave
that section out, saying why).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .errors import ChimeraMixError
from .fileio import write_text
from .report import BASELINE, Row, Table, chart_paths, table_cells, table_notes

MAX_ERRORS_PER_CLASS = 8  # test images shown per class in the Baseline's errors: enough to see a pattern, a page stays short
THUMB_MAX = 64  # thumbnails larger than this are scaled down before they are embedded

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; max-width: 1180px;
       margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.6em; }
nav ul { columns: 2; margin: .3em 0; }
.wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .5em 0; font-size: .88em; }
th, td { border: 1px solid #d0d0d0; padding: .2em .5em; text-align: right; white-space: nowrap; vertical-align: top; }
th { background: #f3f3f3; }
th:first-child, td:first-child { text-align: left; }
td:first-child { white-space: normal; min-width: 7em; }  /* a long method name wraps, the numbers stay whole */
p.note { color: #555; font-size: .88em; margin: .3em 0; max-width: 60em; }
img { max-width: 100%; height: auto; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 1em; }
.figures.wide { grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); }
figure { margin: 0; break-inside: avoid; }
figcaption { font-size: .82em; color: #444; word-break: break-word; }
img.thumb { width: 48px; height: 48px; image-rendering: pixelated; vertical-align: middle; margin-right: .3em; }
.ok { color: #17703a; } .bad { color: #b3261e; font-weight: 600; }
@page { margin: 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 9pt; }
  nav { display: none; }
  .wrap { overflow: visible; }
  table { font-size: 7.5pt; }
  th, td { white-space: normal; overflow-wrap: anywhere; }
  tr, figure { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  .figures { grid-template-columns: repeat(3, 1fr); }
  .figures.wide { grid-template-columns: repeat(2, 1fr); }
  img.thumb { width: 32px; height: 32px; }
}
"""

# Nothing but the page itself and its inline pictures may load: a page that would need the network or another
# file breaks here, visibly, instead of on the reader's machine.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

SAMPLES_NOTE = ("Each row: the parents, their reconstructions, then three masks, each followed by the composition it "
                "makes (a pair's mask is white where the first parent is kept).")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _file_uri(path: Path) -> str | None:
    """A PNG file as a data URI; None where it is missing or not a PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return _png_uri(data) if data.startswith(PNG_MAGIC) else None


def _thumb_uri(image) -> str:
    """A uint8 3 x H x W tensor as a small PNG data URI."""
    from PIL import Image

    im = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    if max(im.size) > THUMB_MAX:
        im.thumbnail((THUMB_MAX, THUMB_MAX))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return _png_uri(buf.getvalue())


def _figure(uri: str, caption: str, alt: str, title: str = "") -> str:
    t = f' title="{_e(title)}"' if title else ""
    return f'<figure><img src="{uri}" alt="{_e(alt)}"{t}><figcaption>{_e(caption)}</figcaption></figure>'


def _table(head: list[str], cells: list[list[str]], raw: bool = False) -> str:
    """An HTML table; cells are text (escaped here) unless `raw` says they are markup already."""
    out = ['<div class="wrap"><table><thead><tr>', *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for line in cells:
        out.append("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in line) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


class _Runs:
    """The result.json of every run a table's rows name, read once; what could not be read is remembered."""

    def __init__(self):
        self.cache: dict[str, dict | None] = {}
        self.unreadable: dict[str, str] = {}

    def get(self, run_dir: str) -> dict | None:
        if run_dir not in self.cache:
            from .runs import read_result

            try:
                self.cache[run_dir] = read_result(run_dir)
            except ChimeraMixError as e:
                self.cache[run_dir] = None
                self.unreadable[run_dir] = str(e)
        return self.cache[run_dir]

    def of(self, row: Row) -> dict[int, dict]:
        """seed -> result of the row's runs that could be read."""
        out = {}
        for seed, d in zip(row.seeds, row.run_dirs):
            r = self.get(d) if d else None
            if r is not None:
                out[seed] = r
        return out


def _accuracy_section(table: Table, chart: Path | None) -> str:
    head, cells = table_cells(table.rows)
    parts = [_table(head, cells), *(_note(n) for n in table_notes(table.rows))]
    if chart is not None:
        uri = _file_uri(chart)
        parts.append(_figure(uri, f"Mean test accuracy per method, std over seeds as error bars, each seed a dot ({Path(chart).name}).",
                             "accuracy per method") if uri else _note(f"The chart {chart} could not be read."))
    return "".join(parts)


def _samples_section(table: Table, runs: _Runs) -> str:
    gens: dict[str, list[str]] = {}  # generator run -> the rows that used it
    for row in table.rows:
        for r in runs.of(row).values():
            if r.get("generator_run"):
                users = gens.setdefault(r["generator_run"], [])
                if row.method not in users:
                    users.append(row.method)
    if not gens:
        return ""
    figures, missing = [], []
    for g, users in gens.items():
        uri = _file_uri(Path(g) / "samples.png")
        if uri is None:
            missing.append(g)
        else:
            figures.append(_figure(uri, f"{Path(g).name} (used by {', '.join(users)})", "generator sample grid", title=g))
    parts = [_note(SAMPLES_NOTE)] if figures else []
    parts += [f'<div class="figures wide">{"".join(figures)}</div>'] if figures else []
    if missing:
        parts.append(_note(f"No samples.png in {', '.join(missing)} (the folder was moved, or the run stopped before "
                           "its sample grid was written)."))
    return "".join(parts)


def _per_class_section(table: Table, runs: _Runs) -> str:
    classes, support, columns = None, None, []
    for row in table.rows:
        found = {s: r for s, r in runs.of(row).items() if r.get("per_class") and r.get("classes")}
        if found:
            first = found[min(found)]
            classes = classes or list(first["classes"])
            support = support or [int(c.get("support", 0)) for c in first["per_class"]]
        columns.append((row, found))
    if classes is None:
        return _note("The runs' result.json files hold no per-class figures.")
    head = ["class", "test images"] + [f"{row.method} ({len(found)} seed{'s' if len(found) != 1 else ''})" for row, found in columns]
    cells = []
    for i, c in enumerate(classes):
        line = [c, str(support[i]) if i < len(support) else "-"]
        for _, found in columns:
            vals = [r["per_class"][i]["recall"] for r in found.values() if len(r["per_class"]) == len(classes)]
            line.append(f"{100 * sum(vals) / len(vals):.1f}" if vals else "-")
        cells.append(line)
    line = ["mean over classes", str(sum(support))]
    for _, found in columns:
        vals = [r["mean_class_accuracy"] for r in found.values() if isinstance(r.get("mean_class_accuracy"), (int, float))]
        line.append(f"{100 * sum(vals) / len(vals):.1f}" if vals else "-")
    cells.append(line)
    return _table(head, cells) + _note("Per-class accuracy (recall: the share of a class's test images predicted as "
                                       "that class) in percent, averaged over each method's seeds.")


def _confusion_section(table: Table, runs: _Runs) -> str:
    parts, missing = [], []
    for row in table.rows:
        figures = []
        for seed, d in zip(row.seeds, row.run_dirs):
            uri = _file_uri(Path(d) / "confusion.png") if d else None
            acc = dict(zip(row.seeds, row.accuracies))[seed]
            if uri is None:
                missing.append(f"{row.method} seed {seed}")
            else:
                figures.append(_figure(uri, f"{row.method}, seed {seed}: {acc:.2f}%", f"confusion matrix of {row.method} seed {seed}",
                                       title=d))
        if figures:
            parts.append(f'<div class="figures">{"".join(figures)}</div>')
    if not parts:
        return _note("No confusion.png in the runs' folders.")
    if missing:
        parts.append(_note(f"No confusion.png for {', '.join(missing)}."))
    return _note("Rows: the true class, columns: the predicted one; shading is the share of the row, numbers are counts.") + "".join(parts)


def _test_set(result: dict):
    """The test set a run was evaluated on, read through its data source (never downloaded); (images, why not)."""
    from .data.sources import open_source

    cfg, split = result.get("config", {}), result.get("split", {})
    try:
        return open_source(split.get("source") or cfg.get("data"), cfg.get("data_dir"), cfg.get("image_size"),
                           download=False).load("test"), ""
    except (ChimeraMixError, OSError, ValueError) as e:
        return None, f"its test set could not be read from {split.get('source')} ({str(e).splitlines()[0] if str(e) else type(e).__name__})"


def _predictions(r: dict, n: int, fingerprint: str) -> list[int] | None:
    p = r.get("test_predictions")
    if p is None or len(p) != n or r.get("test_fingerprint") != fingerprint:
        return None
    return p


def _errors_section(table: Table, runs: _Runs) -> str:
    base = next((r for r in table.rows if r.method == BASELINE), None)
    if base is None:
        return _note(f"Left out: this table has no {BASELINE} row to compare with.")
    base_runs = {s: r for s, r in runs.of(base).items() if r.get("test_predictions") is not None}
    if not base_runs:
        return _note(f"Left out: the {BASELINE} runs' result.json files hold no per-image test predictions (they were "
                     "trained before chimeramix recorded them; retrain them with --force to see this section).")
    test, why = _test_set(next(iter(base_runs.values())))
    if test is None:
        return _note(f"Left out: {why}.")
    fp = test.fingerprint
    base_preds = {s: p for s, r in sorted(base_runs.items()) if (p := _predictions(r, len(test), fp)) is not None}
    if not base_preds:
        return _note(f"Left out: the test set read now ({len(test)} images, fingerprint {fp}) is not the one the "
                     f"{BASELINE} runs were evaluated on.")
    seeds = sorted(base_preds)
    labels = test.labels.tolist()
    # every method's predictions on the same seeds, where it ran them and recorded them
    preds: list[tuple[Row, dict[int, list[int]]]] = []
    for row in table.rows:
        found = runs.of(row)
        preds.append((row, {s: p for s in seeds if s in found and (p := _predictions(found[s], len(test), fp)) is not None}))
    classes = list(test.classes)
    wrong = [sum(base_preds[s][i] != y for s in seeds) for i, y in enumerate(labels)]

    # how many of the Baseline's errors (a test image in a seed) each method gets right in the same seed
    summary = []
    for row, p in preds:
        if row is base:
            continue
        pairs = [(s, i) for s in p for i, y in enumerate(labels) if base_preds[s][i] != y]
        right = sum(p[s][i] == labels[i] for s, i in pairs)
        summary.append([row.method, str(len(pairs)), str(right), f"{100 * right / len(pairs):.1f}" if pairs else "-"])
    seed_text = ", ".join(map(str, seeds))
    parts = [_note(f"Test images the {BASELINE} gets wrong (seed{'s' if len(seeds) != 1 else ''} {seed_text}), most often wrong "
                   f"first, up to {MAX_ERRORS_PER_CLASS} per class, and what every method predicts for them in the same "
                   "seeds (one mark per seed, in seed order: ✓ right, ✗ wrong).")]
    if summary:
        parts.append(_table(["method", f"{BASELINE} errors (image, seed)", "it gets right", "%"], summary))
    lacking = [row.method for row, p in preds if len(p) < len(seeds)]
    if lacking:
        parts.append(_note(f"No recorded predictions for some of these seeds of: {', '.join(lacking)} (shown as -)."))
    head = ["test image"] + [row.method for row, _ in preds]
    for c, name in enumerate(classes):
        idx = sorted((i for i, y in enumerate(labels) if y == c and wrong[i]), key=lambda i: (-wrong[i], i))
        n_class = labels.count(c)
        title = f"{_e(name)}: the {BASELINE} gets {len(idx)} of {n_class} test images wrong in at least one seed"
        if not idx:
            parts.append(f"<h4>{title}</h4>")
            continue
        shown = idx[:MAX_ERRORS_PER_CLASS]
        cells = []
        for i in shown:
            line = [f'<img class="thumb" src="{_thumb_uri(test.images[i])}" alt="test image {i}">#{i}']
            for _, p in preds:
                marks = []
                for s in seeds:
                    if s not in p:
                        marks.append(f'<span title="seed {s}">-</span>')
                    else:
                        k = p[s][i]
                        ok = k == c
                        label = classes[k] if k < len(classes) else str(k)
                        marks.append(f'<span class="{"ok" if ok else "bad"}" title="seed {s}">{"✓" if ok else "✗"} {_e(label)}</span>')
                line.append(" ".join(marks))
            cells.append(line)
        more = f" (showing {len(shown)})" if len(idx) > len(shown) else ""
        parts.append(f"<h4>{title}{more}</h4>" + _table(head, cells, raw=True))
    return "".join(parts)


def report_html(tables: list[Table], title: str = "", charts: list[Path] | None = None) -> str:
    """The page: for each table its accuracies and paired statistics, chart, sample grids, per-class accuracy,
    confusion matrices and the Baseline's errors; `charts` one PNG per table (report.chart_paths)."""
    charts = list(charts or [None] * len(tables))
    heading = title or (tables[0].name if len(tables) == 1 else "chimeramix results")
    runs = _Runs()
    nav, body = [], []
    for n, (t, chart) in enumerate(zip(tables, charts), 1):
        sid = f"t{n}"
        sections = [("Accuracy", _accuracy_section(t, chart))]
        if any(d for r in t.rows for d in r.run_dirs):
            sections += [("Generator sample grids", _samples_section(t, runs)),
                         ("Per-class accuracy", _per_class_section(t, runs)),
                         ("Confusion matrices", _confusion_section(t, runs)),
                         (f"Test images the {BASELINE} gets wrong", _errors_section(t, runs))]
        else:  # a recorded table (report.load_recorded) keeps the accuracies per seed, nothing of the runs
            sections.append(("Runs", _note(f"This table was read from {t.setting.get('recorded', 'a recorded result')}, which keeps "
                                           "accuracies only: report the classifier run folders to see their figures.")))
        nav.append(f'<li><a href="#{sid}">{_e(t.name)}</a></li>')
        body.append(f'<section id="{sid}"><h2>{_e(t.name)}</h2>')
        body += [f"<h3>{_e(h)}</h3>{content}" for h, content in sections if content]
        body.append("</section>")
    if runs.unreadable:
        body.append(_note("Unreadable run results, left out: " + "; ".join(runs.unreadable.values())))
    toc = f'<nav><ul>{"".join(nav)}</ul></nav>' if len(tables) > 1 else ""
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>{_e(heading)}</title><style>{CSS}</style></head>\n<body><h1>{_e(heading)}</h1>{toc}\n"
            + "\n".join(body)
            + "\n<footer>" + _note("Written by chimeramix from the runs' result.json files and pictures; the tables are "
                                   "the same numbers as the .md and .csv beside this page.") + "</footer></body></html>\n")


def grid_html(head: list[str], rows: list[list[str]], pages: list[tuple[str, str]], title: str) -> str:
    """The sweep's Table-1 page: the grid of mean ± std per method and cell, and a link to each cell's own page
    (`pages`: (caption, file name beside this one)), where its paired statistics and pictures are."""
    links = "".join(f'<li><a href="{_e(f)}">{_e(c)}</a></li>' for c, f in pages)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body><h1>{_e(title)}</h1>\n"
            + _table(head, rows)
            + _note("Mean ± sample standard deviation over the seeds each cell ran (n). Each cell's page has its "
                    "per-seed values, the paired differences to the baseline and the runs' figures:")
            + f"<nav><ul>{links}</ul></nav>\n</body></html>\n")


def write_grid_html(path: str | Path, head: list[str], rows: list[list[str]], pages: list[tuple[str, str]],
                    title: str) -> Path:
    return _write_page(Path(path), grid_html(head, rows, pages, title), "--out")


def _write_page(path: Path, text: str, option: str) -> Path:
    # character references for everything beyond ASCII (±, Δ, ✓): the page reads the same whatever the locale wrote it
    text = text.encode("ascii", "xmlcharrefreplace").decode("ascii")
    try:
        write_text(path, text)
    except OSError as e:
        raise ChimeraMixError(f"cannot write {path} ({e.strerror}): choose a writable {option}") from None
    return path


def write_html(tables: list[Table], stem: str | Path, title: str = "", charts: list[Path] | None = None) -> Path:
    """<stem>.html (see `report_html`), written atomically; `charts` default to the ones report.write_tables wrote."""
    stem = Path(stem)
    path = stem.with_suffix(".html")
    return _write_page(path, report_html(tables, title, chart_paths(stem, tables) if charts is None else charts),
                       "--out-prefix")
