"""rich progress bars with ETA and live losses, driven by the library's Progress hooks.

On a terminal: live bars. Elsewhere (make logs, CI, pipes): a plain line at
every tenth of a task, so logs stay readable and short.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column

from chimeramix.progress import Progress as Hooks


def _fmt(metrics: dict | None) -> str:
    if not metrics:
        return ""
    return "  ".join(f"{k} {v:.4g}" if k != "generated" else f"gen {v:.2f}" for k, v in metrics.items())


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


class RichProgress(Hooks):
    """One bar per task (generator, classifier, evaluate), kept on screen when done."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        fixed = dict(no_wrap=True)
        self.bars = Progress(
            TextColumn("[bold]{task.description}", table_column=Column(min_width=10, **fixed)),  # wider for a job's run name
            BarColumn(bar_width=24),
            MofNCompleteColumn(table_column=Column(**fixed)),
            TimeElapsedColumn(table_column=Column(**fixed)),
            TextColumn("eta", table_column=Column(**fixed)),
            TimeRemainingColumn(table_column=Column(**fixed)),
            TextColumn("{task.fields[losses]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
            console=console, transient=False, disable=not self.live, expand=True,
        )
        self.tasks: dict[str, int] = {}
        self.plain: dict[str, dict] = {}

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bars.__exit__(*exc)

    def start(self, task, total, completed=0):
        if self.live:
            self.tasks[task] = self.bars.add_task(task, total=total, completed=completed, losses="")
        else:
            self.plain[task] = {"total": max(total, 1), "start": completed, "t0": time.perf_counter(),
                                "tenth": completed * 10 // max(total, 1)}

    def update(self, task, completed, metrics=None):
        if self.live:
            if task in self.tasks:
                kw = {"losses": _fmt(metrics)} if metrics else {}
                self.bars.update(self.tasks[task], completed=completed, **kw)
            return
        st = self.plain.get(task)
        if st is None or self.quiet:
            return
        if metrics:
            st["metrics"] = metrics
        metrics = st.get("metrics")  # between log points the line shows the last logged losses
        frac = completed / st["total"]
        tenth = completed * 10 // st["total"]  # integer tenths: one line per tenth, no float drift
        if tenth <= st["tenth"]:
            return
        st["tenth"] = tenth
        elapsed = time.perf_counter() - st["t0"]
        done = completed - st["start"]
        eta = elapsed / done * (st["total"] - completed) if done > 0 else 0.0
        self.console.print(f"{task} {completed}/{st['total']} ({100 * frac:.0f}%) {_clock(elapsed)} eta {_clock(eta)}  {_fmt(metrics)}",
                           highlight=False, soft_wrap=True)

    def end(self, task):
        if task in self.tasks:
            self.bars.refresh()

    def message(self, text):
        if not self.quiet:
            self.console.print(f"[dim]{text}[/dim]", highlight=False, soft_wrap=True)
