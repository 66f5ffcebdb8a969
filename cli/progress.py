"""rich progress bars with ETA and live losses, driven by the library's Progress hooks."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from chimeramix.progress import Progress as Hooks


def _fmt(metrics: dict | None) -> str:
    if not metrics:
        return ""
    return "  ".join(f"{k} {v:.4g}" if k != "generated" else f"gen {v:.2f}" for k, v in metrics.items())


class RichProgress(Hooks):
    """One bar per task (generator, classifier, evaluate), kept on screen when done."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.bars = Progress(
            TextColumn("[bold]{task.description:<10}"), BarColumn(bar_width=28), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
            console=console, transient=False, disable=quiet,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bars.__exit__(*exc)

    def start(self, task, total, completed=0):
        self.tasks[task] = self.bars.add_task(task, total=total, completed=completed, losses="")

    def update(self, task, completed, metrics=None):
        if task in self.tasks:
            kw = {"losses": _fmt(metrics)} if metrics else {}
            self.bars.update(self.tasks[task], completed=completed, **kw)

    def end(self, task):
        if task in self.tasks:
            self.bars.refresh()

    def message(self, text):
        if not self.quiet:
            self.console.print(f"[dim]{text}[/dim]")
