"""How the library reports progress without printing: the caller passes a Progress."""

from __future__ import annotations


class Progress:
    """Hooks the training and evaluation code calls; every method is a no-op here.

    The CLI subclasses it with rich progress bars. A hook may raise
    KeyboardInterrupt to stop a run cleanly between steps (state is saved).
    """

    def start(self, task: str, total: int, completed: int = 0) -> None:
        pass

    def update(self, task: str, completed: int, metrics: dict[str, float] | None = None) -> None:
        pass

    def end(self, task: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass


SILENT = Progress()
