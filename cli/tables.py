"""Small rich layouts the commands share (a module of its own so cli/curate.py need not import cli.app)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def summary_table(title: str) -> Table:
    """A two-column key/value table whose values (paths) stay whole on a narrow terminal."""
    t = Table(title=title, show_header=False)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")
    return t


def note_reused(console: Console, folder) -> None:
    """What export and curate say when the folder already holds a finished result of the same request."""
    console.print(f"[yellow]{folder} is already finished with these settings; nothing to do (--force rewrites it)[/yellow]",
                  highlight=False, soft_wrap=True)
