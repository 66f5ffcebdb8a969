"""The step loop both stages share: logging, NaN guard, periodic checkpoints, resume, clean interrupts."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .. import checkpoint as ckpt
from ..errors import ChimeraMixError
from ..plots import read_metrics
from ..progress import Progress
from ..runs import METRICS_FILE, STATE_FILE, RunDir

# fit-* need --resume to continue; experiment (and the make targets) resume unfinished runs by themselves.
AGAIN = "run the same command with --resume to continue (`chimeramix experiment` and make targets: just run them again)"


class RunInterrupted(ChimeraMixError):
    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):  # keeps the exit code when a worker process of `experiment --jobs N` sends it back
        return type(self), (str(self), self.exit_code)


class NonFiniteLoss(ChimeraMixError):
    pass


@dataclass
class TrainState:
    """Everything a resumed run needs to continue bit for bit: weights, optimizer moments, RNG states."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    rng: torch.Generator
    extra: dict = field(default_factory=dict)

    def save(self, path, step: int) -> None:
        tensors, meta = {}, {"step": step, "optimizers": {}, "extra": self.extra}
        for name, m in self.modules.items():
            tensors.update(ckpt.module_tensors(f"model.{name}", m))
        for name, opt in self.optimizers.items():
            t, m = ckpt.optimizer_tensors(f"optim.{name}", opt)
            tensors.update(t)
            meta["optimizers"][name] = m
        tensors["rng.gen"] = self.rng.get_state()  # key kept from before the rename, so older checkpoints resume
        tensors["rng.cpu"] = torch.get_rng_state()
        if torch.cuda.is_available() and self.rng.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.rng.device)
        ckpt.save_tensors(path, tensors, meta)

    def load(self, path) -> int:
        tensors, meta = ckpt.load_tensors(path)
        for name, m in self.modules.items():
            ckpt.load_module(f"model.{name}", m, tensors)
        for name, opt in self.optimizers.items():
            ckpt.load_optimizer(f"optim.{name}", opt, tensors, meta["optimizers"][name])
        self.rng.set_state(tensors["rng.gen"])
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.rng.device)
        self.extra.update(meta.get("extra", {}))
        return int(meta["step"])


# SIGTERM is how schedulers (Slurm, Kubernetes, systemd) and `kill` stop a job, usually with a grace period
# before SIGKILL: it is handled like Ctrl-C, so the run saves a resumable checkpoint on the way out.
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as a shell reports a killed job
REPEAT_GRACE_S = 1.0  # a second stop signal sooner than this after the first is the same request


@contextmanager
def _stop_signals_as_flag(flag: dict):
    """A first Ctrl-C or SIGTERM asks the loop to stop after the current step; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        now = time.monotonic()
        if flag.get("stop"):
            if now - flag["since"] < REPEAT_GRACE_S:
                # one stop arriving twice: a terminal's Ctrl-C reaches `experiment --jobs` workers and their
                # parent, which forwards a SIGTERM; only a later second signal means "stop inside the step"
                return
            raise KeyboardInterrupt
        flag.update(stop=True, signal=signum, since=now)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _truncate_metrics(path, step: int) -> None:
    if not path.is_file():
        return
    keep = [text for text, row in read_metrics(path, lines=True) if row["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def run_steps(
    run: RunDir,
    info: dict,
    state: TrainState,
    step_fn: Callable[[int], dict[str, torch.Tensor]],
    total: int,
    *,
    task: str,
    progress: Progress,
    log_every: int = 25,
    checkpoint_every: int = 500,
    checkpoint_minutes: float | None = None,
    record: str = "step",
    tb=None,
) -> dict[str, float]:
    """Run step_fn for steps [start, total); returns the mean losses of the last logged interval.

    Losses stay on the device between logs (no per-step sync); every
    `log_every` steps they are fetched once, checked for NaN/inf, written to
    metrics.jsonl (each step, or the interval mean if record='mean') and shown.
    A resumable checkpoint is saved every `checkpoint_every` steps, and at the
    first log point after `checkpoint_minutes` without one (slow devices).
    `tb` (a tblog.TBLog) gets the same rows and the optimizers' learning rates.
    """
    start = 0
    state_path, metrics_path = run.file(STATE_FILE), run.file(METRICS_FILE)
    if run.resumed:
        start = state.load(state_path)
        _truncate_metrics(metrics_path, start)
        progress.message(f"resuming {run.path} from step {start} of {total}")
    else:
        metrics_path.write_text("")
    info.update(step=start, total_steps=total)
    run.write_info(info)
    if tb is not None:
        tb.begin(start, run.resumed)

    checkpoint_every = max(log_every, (checkpoint_every // log_every) * log_every)
    flag: dict = {}
    buffer: list[dict[str, torch.Tensor]] = []
    last = {}
    done = start
    progress.start(task, total, start)

    def flush() -> dict[str, float]:
        if not buffer:
            return last
        keys = list(buffer[0])
        tkeys = [k for k in keys if torch.is_tensor(buffer[0][k])]
        # one device->host copy for the whole interval; host-side numbers (plain floats) need none
        dev = torch.stack([torch.stack([b[k].detach().float() for k in tkeys]) for b in buffer]).cpu() if tkeys else None
        values = torch.empty(len(buffer), len(keys), dtype=torch.float32)
        for j, k in enumerate(keys):
            values[:, j] = dev[:, tkeys.index(k)] if k in tkeys else torch.tensor([float(b[k]) for b in buffer])
        first = done - len(buffer) + 1
        bad = ~torch.isfinite(values)
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            good = info.get("checkpoint_step", 0)
            if not good:  # the folder goes with the failed start (runs.RunDir.close): nothing is kept
                raise NonFiniteLoss(f"{keys[col]} became {values[row, col].item()} at step {first + row}; stopped before "
                                    f"the first checkpoint, so nothing is kept: run again with a lower --lr")
            raise NonFiniteLoss(
                f"{keys[col]} became {values[row, col].item()} at step {first + row}; stopped. "
                f"The last good checkpoint (step {good}) is kept in {run.path}: run again with a lower --lr and --force (a resumed run must keep its config)"
            )
        if record == "step":
            rows = [{"step": first + i, **dict(zip(keys, r))} for i, r in enumerate(values.tolist())]
        else:
            rows = [{"step": done, **dict(zip(keys, values.mean(0).tolist()))}]
        with open(metrics_path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        if tb is not None:
            tb.rows(rows)
            tb.learning_rates(done, state.optimizers)
            tb.flush()
        buffer.clear()
        return dict(zip(keys, values.mean(0).tolist()))

    last_save = time.monotonic()

    def checkpoint() -> None:
        nonlocal last_save
        last_save = time.monotonic()
        state.save(state_path, done)
        info.update(step=done, checkpoint_step=done)
        run.write_info(info)

    in_step = False
    try:
        with _stop_signals_as_flag(flag):
            for step in range(start, total):
                in_step = True
                buffer.append(step_fn(step))
                in_step = False
                done = step + 1
                if done % log_every == 0 or done == total or flag.get("stop"):
                    last = flush()
                    progress.update(task, done, last)
                    if flag.get("stop"):
                        raise KeyboardInterrupt
                    overdue = checkpoint_minutes is not None and time.monotonic() - last_save >= 60 * checkpoint_minutes
                    if (done % checkpoint_every == 0 or overdue) and done < total:
                        checkpoint()
                else:
                    progress.update(task, done)  # the bar moves from step 1; losses come at the log points (no sync here)
    except KeyboardInterrupt:
        sig = flag.get("signal", signal.SIGINT)
        what = STOP_SIGNALS[sig]
        if in_step:  # stopped inside a step: the modules may be half-updated, keep the last checkpoint
            raise RunInterrupted(
                f"{what} during step {done + 1}; the checkpoint of step {info.get('checkpoint_step', 0)} in {run.path} "
                f"is kept: {AGAIN}", exit_code=EXIT_CODES[sig]
            ) from None
        flush()
        checkpoint()
        raise RunInterrupted(
            f"{what} at step {done} of {total}; state saved in {run.path}: {AGAIN}", exit_code=EXIT_CODES[sig]
        ) from None
    finally:
        progress.end(task)
    return {k: v for k, v in last.items() if math.isfinite(v)}
