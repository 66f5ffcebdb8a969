"""Run folders: what lands in checkpoints/<run>/, and the rules that keep finished work safe."""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ChimeraMixError
from .fileio import read_json, write_json

RUN_FILE = "run.json"
STATE_FILE = "state.safetensors"
METRICS_FILE = "metrics.jsonl"
SPLIT_FILE = "split.json"
DEFAULT_ROOT = Path("checkpoints")


def versions() -> dict:
    import kornia
    import numpy
    import safetensors
    import skimage
    import torch
    import torchvision

    from . import __version__

    return {
        "chimeramix": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "kornia": kornia.__version__, "scikit-image": skimage.__version__, "safetensors": safetensors.__version__,
        "numpy": numpy.__version__, "python": platform.python_version(),
    }


def config_diff(old: dict, new: dict, ignore=()) -> list[str]:
    """Field names whose values differ, with both values, for a one-line message."""
    keys = [k for k in dict.fromkeys([*old, *new]) if k not in ignore]
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


@dataclass
class RunDir:
    path: Path
    resumed: bool = False
    already_finished: bool = False

    def file(self, name: str) -> Path:
        return self.path / name

    def info(self) -> dict:
        return read_json(self.file(RUN_FILE))

    def write_info(self, info: dict) -> None:
        write_json(self.file(RUN_FILE), info)


def read_run(path: str | Path, kind: str | None = None) -> dict:
    """run.json of a run folder, checked to be of the expected kind ('generator' or 'classifier')."""
    path = Path(path)
    f = path / RUN_FILE
    if not f.is_file():
        what = f"a {kind} run" if kind else "a chimeramix run"
        raise ChimeraMixError(f"{path} is not {what} (no {RUN_FILE}): pass the folder that fit-{kind or 'generator'} wrote")
    try:
        info = read_json(f)
    except ValueError:
        raise ChimeraMixError(f"{f} is not valid JSON; the run folder is damaged") from None
    if kind and info.get("kind") != kind:
        raise ChimeraMixError(f"{path} is a {info.get('kind')} run, not a {kind} run")
    return info


def prepare(path: str | Path, kind: str, config: dict, resume: bool | str, force: bool, ignore=()) -> RunDir:
    """Decide what to do with the output folder before any work starts.

    finished + same config -> already_finished (nothing to redo); finished +
    other config -> refuse unless force; unfinished -> resume if asked (the
    config must match), else refuse unless force; a foreign folder -> refuse.
    resume="auto" resumes an unfinished run and starts one where there is none
    (what `experiment` does, so a rerun of an interrupted chain goes on).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ChimeraMixError(f"--out {path} is a file, not a folder: choose another --out")
    info = None
    if (path / RUN_FILE).is_file():
        info = read_run(path)
    elif path.is_dir() and any(path.iterdir()) and not force:
        if resume is True:
            raise ChimeraMixError(f"nothing to resume in {path}: it holds no {RUN_FILE}")
        raise ChimeraMixError(f"{path} exists and is not a chimeramix run: choose another --out (or --force to reuse it)")
    elif resume is True:
        raise ChimeraMixError(f"nothing to resume in {path}: no run was started there")

    if info is not None:
        if info.get("kind") != kind:
            raise ChimeraMixError(f"{path} holds a {info.get('kind')} run: choose another --out for this {kind} run")
        diff = config_diff(info.get("config", {}), config, ignore)
        finished = info.get("status") == "finished"
        if force:
            shutil.rmtree(path)
        elif finished and not diff:
            return RunDir(path, already_finished=True)
        elif finished:
            raise ChimeraMixError(
                f"a finished {kind} run with another config is in {path} ({'; '.join(diff[:4])}); "
                "choose another --out, or --force to overwrite it"
            )
        elif not resume:
            raise ChimeraMixError(
                f"an unfinished {kind} run is in {path} (step {info.get('step', 0)} of {info.get('total_steps', '?')}): "
                "--resume to continue it, or --force to start over"
            )
        elif diff:
            raise ChimeraMixError(f"cannot resume {path}: its config differs ({'; '.join(diff[:6])}); drop the changed options or use --force")
        elif not (path / STATE_FILE).is_file():
            shutil.rmtree(path)  # started but interrupted before the first checkpoint: nothing to keep
        else:
            return RunDir(path, resumed=True)

    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ChimeraMixError(f"cannot write to {path} ({e.strerror}): choose a writable --out") from None
    return RunDir(path)


def new_info(kind: str, config: dict, split: dict, total_steps: int) -> dict:
    return {
        "kind": kind, "status": "running", "config": config, "split": split, "step": 0, "total_steps": total_steps,
        "versions": versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
