"""The skeleton both stages share: a run folder's life from its lock to `status: finished`.

    with open_stage("generator", "gen", suffix, cfg, config, prep, root, resume, force, progress) as stage:
        if stage.already_finished: ...        # nothing to train: return what run.json holds
        stage.begin()                         # split.json; run.json of a new run, or the resumed one's
        losses = stage.train(trainer.state(), trainer.step, record="step")
        ...                                   # the stage's own outputs (weights, pictures, results)
        stage.finish(losses=losses)           # losses.png, run.json finished, checkpoint removed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import RUNTIME_FIELDS
from ..errors import ChimeraMixError
from ..fileio import check_name_fits
from ..plots import read_metrics, save_loss_curves
from ..progress import Progress
from ..runs import METRICS_FILE, SPLIT_FILE, STATE_FILE, RunDir, new_info, prepare
from ..tblog import TBLog
from ..tblog import resolve as resolve_tensorboard
from .loop import TrainState, run_steps
from .setup import StageData, run_folder


@dataclass
class Stage:
    kind: str  # 'generator' or 'classifier': run.json's kind and the progress task
    cfg: object  # the resolved config (steps, log and checkpoint intervals)
    config: dict  # what run.json records and a rerun is compared with
    prep: StageData
    run: RunDir
    progress: Progress
    config_tag: str = ""  # what the folder name carries of the run's settings away from its preset (setup.config_tag)
    info: dict = field(default_factory=dict)
    tb: TBLog | None = None  # TensorBoard event files in the run folder (cfg.tensorboard)

    @property
    def out(self) -> Path:
        return self.run.path

    @property
    def already_finished(self) -> bool:
        return self.run.already_finished

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tb is not None:
            self.tb.close()
        self.run.__exit__(exc_type, exc, tb)  # releases the lock; a run that never wrote run.json leaves nothing

    def begin(self) -> dict:
        """run.json's record of a new run (written first: what a kill -9 leaves is then provably ours), or the
        resumed run's own; then the split manifest."""
        if self.run.resumed:
            self.info = self.run.info()
        else:  # the tag is recorded so that a classifier of this generator can name its own folder after it
            self.info = {**new_info(self.kind, self.config, self.prep.split.to_dict(), self.cfg.steps),
                         "config_tag": self.config_tag}
        self.info.setdefault("precision", _precision(self.config, self.prep.device))
        if not self.run.resumed:
            self.run.fresh = True
            self.run.write_info(self.info)
        self.prep.split.save(self.run.file(SPLIT_FILE))
        return self.info

    def train(self, state: TrainState, step_fn: Callable, record: str) -> dict[str, float]:
        """All steps of the run (from its checkpoint when resumed) with the config's log and checkpoint intervals."""
        c = self.cfg
        return run_steps(self.run, self.info, state, step_fn, c.steps, task=self.kind, progress=self.progress,
                         log_every=c.log_every, checkpoint_every=c.checkpoint_every,
                         checkpoint_minutes=c.checkpoint_minutes, record=record, tb=self.tb)

    def finish(self, **record) -> None:
        """Loss curves, then run.json says finished (with `record`), then the resumable checkpoint goes."""
        save_loss_curves(self.run.file("losses.png"), read_metrics(self.run.file(METRICS_FILE)), title=self.out.name)
        self.info.update(status="finished", step=self.cfg.steps, **record)
        self.run.write_info(self.info)
        self.run.file(STATE_FILE).unlink(missing_ok=True)


def open_stage(kind: str, tag: str, suffix: str, cfg, config: dict, prep: StageData, root, resume: bool | str, force: bool,
               progress: Progress, overrides: dict | None = None) -> Stage:
    """Lock and check the run folder (setup.run_folder: cfg.out, else <root>/<tag>-<data>-spc<N>-seed<S>-<suffix>-<preset>
    and -c<hash> of `overrides`, the unresolved config's settings away from its preset)."""
    out, config_tag = run_folder(cfg, tag, suffix, root, overrides)
    if cfg.out is None:  # the name is made from --data and the options, under --checkpoints
        check_name_fits(out, "the run folder", fix="give a shorter --checkpoints or --out, or a --data folder with a shorter name")
    run = prepare(out, kind, config, resume, force, ignore=RUNTIME_FIELDS)
    try:
        _check_precision(run, config, prep.device)
    except BaseException:
        run.close()
        raise
    tb = TBLog(out) if resolve_tensorboard(cfg.tensorboard) and not run.already_finished else None
    return Stage(kind, cfg, config, prep, run, progress, config_tag, tb=tb)


def _precision(config: dict, device) -> str:
    from ..report import precision_of

    return precision_of({"config": config, "device": str(device)})


def _check_precision(run: RunDir, config: dict, device) -> None:
    """--amp is a speed switch and not in the folder name, but bf16 and fp32 runs are different measurements
    (reports keep them apart): a finished or unfinished run of the other precision is refused, never reused or
    continued. Runs from before run.json recorded its precision are checked when their config tells it."""
    if not (run.already_finished or run.resumed):
        return
    info = run.info()
    old = info.get("precision")
    if old is None:
        cfg = info.get("config", {})
        device_known = (info.get("result") or {}).get("device") or (cfg.get("device") if cfg.get("device") != "auto" else None)
        if cfg.get("amp", "auto") == "auto" and not device_known:
            return  # auto on an unknown device: cannot tell
        from ..report import precision_of

        old = precision_of({"config": cfg, "device": device_known})
    new = _precision(config, device)
    if old != new:
        state = "finished" if run.already_finished else "unfinished"
        raise ChimeraMixError(
            f"the {state} run in {run.path} trained in {old}; this one asks for {new} (--amp {config.get('amp', 'auto')} on "
            f"{device}): choose another --out or --checkpoints, or --force to replace it"
        )
