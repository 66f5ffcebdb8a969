"""TensorBoard event files in a run folder, beside metrics.jsonl: the same steps and values, for people who watch
runs in TensorBoard (`tensorboard --logdir checkpoints` shows every run under its folder name).

torch's SummaryWriter does the writing (it needs the `tensorboard` package: the optional extra
`chimeramix[tensorboard]`). Two things it does not do are done here: the run's config goes in as hyperparameters
of the same run (SummaryWriter.add_hparams would make a second run in a subfolder), and a resumed run hides what
the interrupted one logged after its last checkpoint (`purge_step`), so no step is shown twice.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from .errors import ChimeraMixError

SETTINGS = ("auto", "on", "off")
EVENTS_PREFIX = "events.out.tfevents."
EXTRA = "pip install 'chimeramix[tensorboard]' (or pip install tensorboard)"


def available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def resolve(setting: str) -> bool:
    """Whether a run writes event files: 'auto' when the package is installed, 'on' always (refused without it)."""
    if setting not in SETTINGS:
        raise ChimeraMixError(f"unknown --tensorboard setting '{setting}': choose one of {', '.join(SETTINGS)}")
    if setting == "on" and not available():
        raise ChimeraMixError(f"--tensorboard needs the tensorboard package, which is not installed: {EXTRA}; "
                              "or pass --no-tensorboard")
    return setting == "on" or (setting == "auto" and available())


def is_event_file(name: str) -> bool:
    return name.startswith(EVENTS_PREFIX)


def _hparam(v):
    # TensorBoard's hparams take numbers, strings and booleans; lists, dicts and None are shown as text
    if isinstance(v, bool) or isinstance(v, (int, float, str)):
        return v
    return json.dumps(v, default=str, sort_keys=True)


class TBLog:
    """The event files of one run folder; `begin` at the run's first (or resumed) step, `close` when done."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.writer = None

    def begin(self, start: int, resumed: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if not resumed:  # a fresh start (or --force): the old run's curves are not this run's
            for p in self.folder.glob(EVENTS_PREFIX + "*"):
                p.unlink()
        # steps after `start` that the interrupted process logged are hidden: the resumed run logs them again
        self.writer = SummaryWriter(str(self.folder), purge_step=start + 1 if resumed else None, flush_secs=3600)

    def rows(self, rows: list[dict]) -> None:
        """metrics.jsonl's rows (each with its "step") as scalars train/<name>."""
        for r in rows:
            for k, v in r.items():
                if k != "step":
                    self.writer.add_scalar(f"train/{k}", v, r["step"])

    def learning_rates(self, step: int, optimizers: dict) -> None:
        for name, opt in optimizers.items():
            groups = opt.param_groups
            for i, g in enumerate(groups):  # several groups (a pretrained backbone and its head): lr/<name>/<i>
                self.writer.add_scalar(f"lr/{name}" if len(groups) == 1 else f"lr/{name}/{i}", g["lr"], step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, picture: torch.Tensor, step: int) -> None:
        """A (3, H, W) picture with values in [0, 1] (a diverging run's NaN pixels shown black)."""
        self.writer.add_image(tag, picture.float().nan_to_num(0.0).clamp(0, 1).cpu(), step)

    def hparams(self, config: dict, metrics: dict[str, float]) -> None:
        """The run's config as hyperparameters of this run (metrics: tags already logged as scalars)."""
        from torch.utils.tensorboard.summary import hparams

        flat = {k: _hparam(v) for k, v in sorted(config.items())}
        for summary in hparams(flat, metrics):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        # at every log point: what metrics.jsonl holds after a kill -9, the event files hold too
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
