"""Run folders: what lands in checkpoints/<run>/, and the rules that keep finished work safe."""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import records as R
from .errors import ChimeraMixError
from .fileio import check_name_fits, write_json
from .lock import LOCK_FILE, TAKEOVER_FILE, RunLock

RUN_FILE = "run.json"
STATE_FILE = "state.safetensors"
METRICS_FILE = "metrics.jsonl"
SPLIT_FILE = "split.json"
RESULT_FILE = "result.json"
DEFAULT_ROOT = Path("checkpoints")
# Where a launcher's job (chimeramix/launch.py) keeps its scheduler files and logs: made before the run starts,
# kept when a run starts over (the job writing it is the one starting over).
LOG_DIR = "logs"


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
    """A run folder this process holds (its lock is released by close(), or on leaving a `with` block)."""

    path: Path
    resumed: bool = False
    already_finished: bool = False
    lock: RunLock | None = None
    created: list[Path] = field(default_factory=list)  # folders prepare made for this run
    fresh: bool = False  # a new run this process began (Stage.begin): until its first checkpoint it is disposable

    def file(self, name: str) -> Path:
        return self.path / name

    def info(self) -> dict:
        return read_run(self.path)

    def write_info(self, info: dict) -> None:
        write_json(self.file(RUN_FILE), info)

    def close(self, failed: bool = False) -> None:
        """Release the folder; a run that failed before its first checkpoint leaves nothing behind (its run.json,
        written first so a kill -9 leaves proof of whose files these are, goes with the rest)."""
        started = self.file(RUN_FILE).is_file() and not (self.fresh and not self.file(STATE_FILE).is_file())
        if failed and not started and self.lock is not None and self.lock.held:
            _clear(self.path)
        if self.lock is not None:
            self.lock.release()
        if failed and not started:
            _remove_dirs(self.created)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def read_run(path: str | Path, kind: str | None = None) -> dict:
    """run.json of a run folder, checked field by field and to be of the expected kind ('generator' or 'classifier')."""
    path = Path(path)
    f = path / RUN_FILE
    if not f.is_file():
        what = f"a {kind} run" if kind else "a chimeramix run"
        raise ChimeraMixError(f"{path} is not {what} (no {RUN_FILE}): pass the folder that fit-{kind or 'generator'} wrote")
    info = R.read_record(f, "a run description", R.RUN_FIELDS, R.RUN_REQUIRED, RUN_DAMAGED)
    if info.get("schema", 1) > R.RUN_SCHEMA:
        from . import __version__

        raise ChimeraMixError(f"{f} was written by a newer chimeramix (run record schema {info['schema']}; chimeramix "
                              f"{__version__} reads up to {R.RUN_SCHEMA}): upgrade chimeramix to use this run")
    if kind and info.get("kind") != kind:
        raise ChimeraMixError(f"{path} is a {info.get('kind')} run, not a {kind} run")
    return info


def read_result(path: str | Path) -> dict:
    """result.json of a finished classifier run, checked field by field (what report and experiment read)."""
    path = Path(path)
    f = path / RESULT_FILE
    if not f.is_file():
        raise ChimeraMixError(f"{path} holds no {RESULT_FILE}: is it a finished classifier run?")
    return R.read_record(f, "a run result", R.RESULT_FIELDS, R.RESULT_REQUIRED, result_damaged(path))


RUN_DAMAGED = ("the run record is damaged: pass another run folder, or train that run again with its fit-generator or "
               "fit-classifier command and --force")


def result_damaged(path: Path) -> str:
    """The way out of a damaged result.json, followed literally: the run is trained again."""
    return (f"the run's result record is damaged: delete {path} and run the command that trained it again "
            "(fit-classifier, or experiment, which then retrains it)")


# What chimeramix itself writes into a run folder; a folder's files with these names are taken for ours only when
# its run.json says it is a run (a user's own report.md in some folder is not). Without run.json only what
# `prepare` itself leaves (LEFTOVERS: the lock, a launcher's logs, temporary files) is ours.
OWN_FILES = frozenset({
    RUN_FILE, STATE_FILE, METRICS_FILE, SPLIT_FILE, LOCK_FILE, TAKEOVER_FILE, "generator.safetensors",
    "classifier.safetensors", "samples.png", "losses.png", "confusion.png", "cams.png", RESULT_FILE, "report.md", LOG_DIR,
})


LEFTOVERS = frozenset({LOCK_FILE, TAKEOVER_FILE, LOG_DIR})
# What a run stopped before its first checkpoint left when run.json was written only then (before 2026-12-03)
EARLY_FILES = frozenset({SPLIT_FILE, METRICS_FILE, "samples.png"})


def _leftover(name: str) -> bool:
    # atomic writes' temporary files (.<name>.<random>.tmp) and the old write probes also count as ours
    return name in LEFTOVERS or (name.startswith(".") and name.endswith(".tmp")) or name.startswith(".write-test-")


def _ours(name: str) -> bool:
    # TensorBoard's event files (chimeramix/tblog.py) carry a timestamp and host name in their names
    return name in OWN_FILES or _leftover(name) or name.startswith("events.out.tfevents.")


def _clear(path: Path) -> None:
    """Empty a run folder for a new start of files chimeramix writes (a user's own files in it stay, --force
    included); the lock stays (this process holds it), the launcher's logs too (the running job writes them)."""
    for p in path.iterdir():
        if p.name in LEFTOVERS or not _ours(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _make_dirs(path: Path) -> list[Path]:
    """Create `path` and missing parents; returns those it created (outermost first) so a refusal can remove them."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    missing.reverse()
    try:
        for p in missing:
            p.mkdir()
    except FileExistsError:  # made by another process in the meantime
        pass
    except OSError as e:
        _remove_dirs(missing)
        raise ChimeraMixError(f"cannot write to {path} ({e.strerror}): choose a writable --out") from None
    return missing


def _remove_dirs(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:  # not empty (another process uses it) or gone: leave it
            return


def prepare(path: str | Path, kind: str, config: dict, resume: bool | str, force: bool, ignore=()) -> RunDir:
    """Decide what to do with the output folder before any work starts, and lock it for this process.

    finished + same config -> already_finished (nothing to redo); finished +
    other config -> refuse unless force; unfinished with a checkpoint -> resume
    if asked (the config must match), else refuse unless force; unfinished
    without a checkpoint, or only leftovers of a failed start -> start over
    (nothing to lose); a foreign folder -> refuse. resume="auto" resumes an
    unfinished run and starts one where there is none (what `experiment` does,
    so a rerun of an interrupted chain goes on).

    The folder's lock (chimeramix/lock.py) is taken before the folder is read, so two processes cannot both
    decide to train in it; another process holding it is refused in one line. The caller closes the RunDir
    (or uses it in a `with` block) when the run ends; on a refusal here the lock is released and folders
    made for it are removed again.
    """
    path = Path(path)
    check_name_fits(path, "--out")  # first: stat itself fails on a name too long
    if path.exists() and not path.is_dir():
        raise ChimeraMixError(f"--out {path} is a file, not a folder: choose another --out")
    if resume is True and not path.is_dir():
        raise ChimeraMixError(f"nothing to resume in {path}: no run was started there")
    created = _make_dirs(path)
    lock = RunLock(path)
    try:
        lock.acquire()
        run = _decide(path, kind, config, resume, force, ignore)
    except BaseException:
        lock.release()
        _remove_dirs(created)
        raise
    run.lock, run.created = lock, created
    return run


def _decide(path: Path, kind: str, config: dict, resume: bool | str, force: bool, ignore) -> RunDir:
    if not (path / RUN_FILE).is_file():
        names = sorted(p.name for p in path.iterdir())
        foreign = [n for n in names if not _leftover(n)]
        if foreign:  # --force too: without run.json nothing here is provably ours, so nothing here is replaced
            if all(n in EARLY_FILES for n in foreign):  # what a stop left before run.json came first (older versions)
                raise ChimeraMixError(
                    f"{path} holds {foreign[0]} but no {RUN_FILE}, so chimeramix cannot tell that it wrote it: if the "
                    "folder is what a stopped chimeramix run left, delete it; otherwise choose another --out"
                )
            raise ChimeraMixError(
                f"{path} exists and is not a chimeramix run (it holds {foreign[0]}): choose another --out (a new or empty folder)"
            )
        if resume is True:
            raise ChimeraMixError(f"nothing to resume in {path}: it holds no {RUN_FILE}; run without --resume to start a run there")
        _clear(path)  # a lock or logs of a start that failed before it began
        return RunDir(path)

    try:
        info = read_run(path)
    except ChimeraMixError:
        if not force:
            raise
        _clear(path)  # a damaged run.json: --force starts over
        return RunDir(path)
    if info.get("kind") != kind:
        raise ChimeraMixError(f"{path} holds a {info.get('kind')} run: choose another --out for this {kind} run")
    diff = config_diff(info.get("config", {}), config, ignore)
    finished = info.get("status") == "finished"
    if force:
        _clear(path)
        return RunDir(path)
    if finished and not diff:
        if not _weights_readable(path, kind):
            # its weights are lost or damaged: retraining is the only way back, and the same command asks for it
            _clear(path)
            return RunDir(path)
        return RunDir(path, already_finished=True)
    if finished:
        raise ChimeraMixError(
            f"a finished {kind} run with another config is in {path} ({'; '.join(diff[:4])}); "
            "choose another --out, or --force to overwrite it"
        )
    if not (path / STATE_FILE).is_file():
        # started but stopped before its first checkpoint: starting over loses nothing
        _clear(path)
        return RunDir(path)
    if not resume:
        raise ChimeraMixError(
            f"an unfinished {kind} run is in {path} (step {info.get('step', 0)} of {info.get('total_steps', '?')}): "
            "--resume to continue it, or --force to start over"
        )
    if diff:
        raise ChimeraMixError(f"cannot resume {path}: its config differs ({'; '.join(diff[:6])}); drop the changed options or use --force")
    return RunDir(path, resumed=True)


def weights_file(kind: str) -> str:
    return f"{kind}.safetensors"


def _weights_readable(path: Path, kind: str) -> bool:
    from .checkpoint import readable

    return readable(path / weights_file(kind))


def retrain_advice(kind: str) -> str:
    """The way out for a finished run whose weights are lost; `prepare` makes it true (see _decide)."""
    return f"run the fit-{kind} command that trained it again (it retrains a finished run whose weights are lost)"


def lost_weights(path: Path, kind: str) -> str:
    """The one-line refusal for a finished run whose weights file is missing or damaged, with the way out."""
    return f"the {kind} run in {path} finished but its weights ({weights_file(kind)}) are missing or damaged: {retrain_advice(kind)}"


def finished_run(path: str | Path, kind: str) -> dict:
    """run.json of a finished run of `kind` whose weights are readable; anything else is refused in one line that
    says how to get there (every reader of a finished run goes through here)."""
    path = Path(path)
    if not path.exists():
        raise ChimeraMixError(f"{kind} run folder {path} does not exist: pass the folder that fit-{kind} wrote "
                              f"(e.g. checkpoints/{'gen' if kind == 'generator' else 'clf'}-*)")
    info = read_run(path, kind)
    if info.get("status") != "finished":
        raise ChimeraMixError(f"the {kind} run in {path} has not finished: finish it with "
                              f"`chimeramix fit-{kind} --resume --out {path}` (and the options it was started with)")
    if not _weights_readable(path, kind):
        raise ChimeraMixError(lost_weights(path, kind))
    return info


def new_info(kind: str, config: dict, split: dict, total_steps: int) -> dict:
    return {
        "schema": R.RUN_SCHEMA, "kind": kind, "status": "running", "config": config, "split": split, "step": 0,
        "total_steps": total_steps,
        "versions": versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
