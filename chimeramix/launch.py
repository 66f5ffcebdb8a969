"""An experiment's runs as a job graph, submitted through submitit: to Slurm, or to submitit's local executor.

`build_graph` trains nothing: one job per generator run and per classifier run, each with the run folder that
fit-generator / fit-classifier would pick (the same naming rule, setup.run_folder, `experiment` uses), and each classifier job
pointing at its generator job. `launch` submits the graph. On Slurm every job is submitted at once and a
classifier job waits for its generator job through an `afterok` dependency, so the grid runs as a graph, not in
waves; submitit's local executor knows no dependencies, so there a classifier job is submitted once its
generator job has succeeded. Every job trains with resume="auto": a resubmission skips finished runs and resumes
unfinished ones, and the run folder's lock (chimeramix/lock.py) keeps two jobs out of one folder. The scheduler's
files and each job's log land in `<run folder>/logs/` (`<job id>_0_log.out`, `.err`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import RUNTIME_FIELDS, ClassifierConfig, GeneratorConfig, generator_run_config, make_config, to_dict
from .errors import ChimeraMixError
from .fileio import read_json
from .lock import RunLocked, live_holder
from .progress import SILENT, Progress
from .runs import LOG_DIR, METRICS_FILE, RUN_FILE, read_result, read_run

LAUNCHERS = ("local", "slurm", "submitit-local")
INSTALL_HINT = "--launcher slurm needs submitit, which is not installed: pip install 'chimeramix[slurm]'"


def require_submitit():
    """submitit, or the one line that says how to install it."""
    try:
        import submitit
    except ImportError:
        raise ChimeraMixError(INSTALL_HINT) from None
    return submitit


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^\d+[KMGT]?B?$", re.IGNORECASE)


def slurm_minutes(text: str) -> float:
    """Minutes of a Slurm --time value: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = _TIME.match(str(text).strip())
    if not m:
        raise ChimeraMixError(f"--slurm-time '{text}' is not a Slurm time: use e.g. 12:00:00, 90 (minutes) or 2-00:00:00")
    days, a, b, c = m.groups()
    a, b, c = int(a), int(b or 0), int(c or 0)
    if days is not None:  # D-H, D-H:M, D-H:M:S
        return int(days) * 1440 + a * 60 + b + c / 60
    if m.group(4) is not None:  # H:M:S
        return a * 60 + b + c / 60
    return a + b / 60  # M or M:S


@dataclass
class SlurmOptions:
    """Resources of every job (one run each); the defaults fit one small GPU job."""

    partition: str | None = None  # None: the cluster's default partition
    gpus_per_job: int = 1
    cpus_per_job: int = 4
    mem: str = "16G"
    time: str = "12:00:00"  # a run that hits it is resumed from its last checkpoint by the next submission
    array_parallelism: int = 0  # at most N of these jobs at once (0: no limit)

    def check(self) -> None:
        for name, value, low in (("--slurm-gpus-per-job", self.gpus_per_job, 0), ("--slurm-cpus-per-job", self.cpus_per_job, 1),
                                 ("--slurm-array-parallelism", self.array_parallelism, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ChimeraMixError(f"{name} must be a whole number of at least {low} (got {value})")
        if not _MEM.match(str(self.mem)):
            raise ChimeraMixError(f"--slurm-mem '{self.mem}' is not a Slurm memory size: use e.g. 16G or 16000M")
        if slurm_minutes(self.time) <= 0:
            raise ChimeraMixError(f"--slurm-time '{self.time}' is no time at all: use e.g. 12:00:00")
        if self.partition is not None and not re.match(r"^[\w.,-]+$", self.partition):
            raise ChimeraMixError(f"--slurm-partition '{self.partition}' is not a partition name")

    def sbatch(self, name: str, after: list[str], slot: int | None) -> dict:
        """SlurmExecutor parameters of one job: its resources, name and dependencies."""
        deps = [f"afterok:{':'.join(after)}"] if after else []
        if slot is not None:
            # Jobs that each need their own dependency cannot form one array, so the limit is Slurm's singleton
            # dependency instead: at most one running job per name, and N names.
            name = f"chimeramix-{slot}"
            deps.append("singleton")
        params = {"job_name": name, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": self.cpus_per_job, "mem": self.mem,
                  "time": self.time, "additional_parameters": {}}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if deps:
            # a classifier whose generator failed is cancelled instead of waiting forever
            params["additional_parameters"] = {"dependency": ",".join(deps), "kill-on-invalid-dep": "yes"}
        return params


@dataclass(eq=False)
class Job:
    """One run: `kind` ('generator' or 'classifier'), the folder it trains, its config overrides, and for a
    classifier that needs one, the run folder of its generator job."""

    kind: str
    run_dir: str
    options: dict
    after: str | None = None

    @property
    def name(self) -> str:
        return Path(self.run_dir).name


def build_graph(seeds, plan, gen_overrides: dict, clf_overrides: dict, root: str | Path) -> list[Job]:
    """Every run of an experiment as a job, generators before the classifiers that need them; nothing is read but
    whether a run folder of the name older versions gave it holds the run (setup.run_folder)."""
    from .train.setup import classifier_identity, config_overrides, generator_tag, run_folder

    jobs: list[Job] = []
    gens: dict[tuple[int, str], tuple[str, GeneratorConfig, str]] = {}  # folder, config, the tag its name carries
    for seed in seeds:
        for name, mask in plan:
            gen = None
            if mask is not None:
                if (seed, mask) not in gens:
                    opts = {**gen_overrides, "seed": seed, "mask": mask}
                    cfg = make_config(GeneratorConfig, **opts)
                    path, tag = run_folder(cfg, "gen", generator_tag(cfg), root, config_overrides(cfg))
                    gens[seed, mask] = (str(path), cfg, tag)
                    jobs.append(Job("generator", str(path), opts))
                gen = gens[seed, mask]
            opts = {**clf_overrides, "seed": seed, "method": name, "generator": gen[0] if gen else None}
            cfg = make_config(ClassifierConfig, **opts)
            identity = classifier_identity(cfg, gen[1] if gen else None, gen[2] if gen else "")
            path, _ = run_folder(cfg, "clf", identity.suffix, root, config_overrides(cfg))
            jobs.append(Job("classifier", str(path), opts, gen[0] if gen else None))
    return jobs


def is_finished(job: Job) -> bool:
    """Whether the job's folder holds a finished run of the job's config (the values it sets; what the run
    derived from the data is left to the job, which refuses a mismatch in one line)."""
    folder = Path(job.run_dir)
    try:  # a damaged record is not finished: the job is submitted, and its run refuses it in one line
        info = read_run(folder, job.kind)
        if job.kind == "classifier":
            read_result(folder)
    except (ChimeraMixError, OSError):
        return False
    if info.get("status") != "finished":
        return False
    cls = GeneratorConfig if job.kind == "generator" else ClassifierConfig
    cfg = make_config(cls, **job.options)
    # compared as the run stores its config (a generator leaves out parents=2), not as the dataclass holds it
    want = generator_run_config(cfg) if job.kind == "generator" else to_dict(cfg)
    have = info.get("config", {})
    return all(have.get(k) == v for k, v in want.items() if v not in (None, {}, []) and k not in RUNTIME_FIELDS)


def run_job(kind: str, options: dict, root: str, force: bool = False, progress_factory: Callable | None = None,
            poll_s: float = 30.0, threads: int | None = None) -> str:
    """The body of one job: train, resume or reuse one run; returns its folder.

    A folder another live process or job holds (a second submission of the same grid) is waited for, then
    reused or resumed: a duplicate job costs its wait, and never trains the run a second time.
    """
    import torch

    from .train.classifier import fit_classifier
    from .train.generator import fit_generator

    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():  # the cores Slurm gave this job, not every core of the node
        torch.set_num_threads(int(cpus))
    elif threads and not os.environ.get("OMP_NUM_THREADS"):  # local jobs at once share the cores
        torch.set_num_threads(threads)
    if hasattr(signal, "SIGUSR2") and threading.current_thread() is threading.main_thread():
        # submitit's warning before the time limit (or a preemption) would end the job wherever it is; as SIGTERM
        # the training loop stops after its step and saves a checkpoint, which the next submission resumes
        signal.signal(signal.SIGUSR2, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))
    progress = progress_factory() if progress_factory else SILENT
    enter = getattr(progress, "__enter__", None)
    if enter:
        enter()
    try:
        while True:
            try:
                if kind == "generator":
                    r = fit_generator(make_config(GeneratorConfig, **options), resume="auto", force=force, progress=progress,
                                      root=root)
                else:
                    r = fit_classifier(make_config(ClassifierConfig, **options), resume="auto", force=force, progress=progress,
                                       root=root)
                break
            except RunLocked as e:
                progress.message(f"{e}: waiting for it")
                time.sleep(poll_s)
                while e.folder is not None and live_holder(e.folder) is not None:
                    time.sleep(poll_s)
                force = False  # what the holder finished is this job's result now
    finally:
        if enter:
            progress.__exit__(None, None, None)
    return str(r.run_dir)


def _visible_gpus() -> tuple[int, ...]:
    text = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return tuple(int(x) for x in text.split(",")) if re.match(r"^\d+(,\d+)*$", text) else ()


def make_executor(launcher: str, job: Job, slurm: SlurmOptions, after: list[str], slot: int | None):
    """The submitit executor of one job, its folder in the job's run folder (logs included)."""
    submitit = require_submitit()
    folder = Path(job.run_dir) / LOG_DIR  # submitit names each job's files by its id: <id>_0_log.out, ...
    if launcher == "slurm":
        try:
            ex = submitit.SlurmExecutor(folder=folder)
        except RuntimeError as e:  # no srun on this machine
            raise ChimeraMixError(f"--launcher slurm: {e}; run it on a cluster's login node") from None
        ex.update_parameters(**slurm.sbatch(f"cmx-{job.name}", after, slot))
        return ex
    ex = submitit.LocalExecutor(folder=folder)
    # LocalExecutor sets CUDA_VISIBLE_DEVICES to the GPUs it is given (none: no GPU at all), and stops a job
    # after timeout_min (2 by default): give it the --slurm-* GPUs and time.
    gpus = _visible_gpus()
    n = min(slurm.gpus_per_job, len(gpus)) if gpus else slurm.gpus_per_job
    ex.update_parameters(timeout_min=slurm_minutes(slurm.time), gpus_per_node=n, visible_gpus=gpus)
    return ex


_RAISED = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*): (.+)$")


def _left_the_queue(sub) -> bool:
    """Whether a Slurm job that submitit does not call done has ended all the same. Without accounting (no
    slurmdbd) submitit's sacct fails and it reports UNKNOWN forever, so a job cancelled (scancel) or killed before
    writing its result would be waited for without end; squeue says it is gone or ended. A job that ended with its
    result is done to submitit first (its result file is written before the job exits)."""
    from .lock import ENDED_STATES, slurm_job_state

    state = slurm_job_state(str(sub.job_id))
    if state is None or (state != "GONE" and state.split("+")[0] not in ENDED_STATES):
        return False
    return not sub.done()


def submission_error(e: BaseException, slurm: SlurmOptions) -> str:
    """sbatch's own complaint, and the way out where it is ours to give: a cluster (or partition) without GPUs
    refuses the default --slurm-gpus-per-job 1 as an invalid 'gres' specification (seen on Debian's Slurm 22.05)."""
    text = str(e).strip()
    line = text.splitlines()[-1] if text else type(e).__name__
    if "gres" in text.lower() and slurm.gpus_per_job:
        line += f" (asked for {slurm.gpus_per_job} GPU(s) per job: on a partition without GPUs pass --slurm-gpus-per-job 0)"
    return f"submission failed: {line}"


def job_error(e: BaseException) -> str:
    """The job's own exception line out of the traceback submitit hands back, without its module path."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for line in reversed(lines):
        m = _RAISED.match(line)
        if m and not line.startswith(("File ", "- ")):
            return m.group(2) if m.group(1) in ("ChimeraMixError", "RunInterrupted", "RunLocked") else f"{m.group(1)}: {m.group(2)}"
    return lines[-1] if lines else type(e).__name__


def _peek(run_dir: str) -> tuple[int, int] | None:
    """(step, total) of a running run, from its run.json and the last line of metrics.jsonl; None before it starts."""
    try:
        total = int(read_json(Path(run_dir) / RUN_FILE)["total_steps"])
        with open(Path(run_dir) / METRICS_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
        step = int(json.loads(lines[-1])["step"]) if lines else 0
        return step, total
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


@dataclass
class LaunchResult:
    run_dirs: dict[str, str] = field(default_factory=dict)  # job run folder -> the folder the run reported
    reused: list[str] = field(default_factory=list)  # finished before this launch: not submitted
    submitted: dict[str, str] = field(default_factory=dict)  # run folder -> job id
    failed: dict[str, str] = field(default_factory=dict)  # run folder -> why
    pending: list[str] = field(default_factory=list)  # submitted and not waited for (wait=False)


def launch(jobs: list[Job], launcher: str = "slurm", *, slurm: SlurmOptions | None = None, root: str | Path = "checkpoints",
           parallel: int = 1, force: bool = False, wait: bool = True, progress: Progress = SILENT,
           job_progress: Callable | None = None, poll_s: float = 5.0) -> LaunchResult:
    """Submit the graph's unfinished jobs and (with `wait`) follow them to the end.

    A folder whose lock a live process or Slurm job holds is not submitted again: the launch waits for that
    holder (on Slurm its dependents depend on its job id) and then takes the folder's state as it finds it.
    `parallel` bounds the local executor's concurrent jobs; on Slurm `slurm.array_parallelism` does.
    """
    if launcher not in ("slurm", "submitit-local"):
        raise ChimeraMixError(f"unknown launcher '{launcher}': choose one of {', '.join(LAUNCHERS)}")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ChimeraMixError(f"--jobs must be a whole number of at least 1 (got {parallel})")
    slurm = slurm or SlurmOptions()
    slurm.check()
    require_submitit()
    by_dir = {j.run_dir: j for j in jobs}
    res = LaunchResult()
    state: dict[str, str] = {}  # run_dir -> todo | held | running | done | failed
    running: dict[str, object] = {}  # run_dir -> submitit job
    held: dict[str, object] = {}  # run_dir -> lock holder
    ids: dict[str, str] = {}  # run_dir -> Slurm job id that dependents may wait for
    shown: set[str] = set()
    for j in jobs:
        if not force and is_finished(j):
            state[j.run_dir] = "done"
            res.reused.append(j.run_dir)
            res.run_dirs[j.run_dir] = j.run_dir
        else:
            state[j.run_dir] = "todo"
    if res.reused:
        progress.message(f"{len(res.reused)} of {len(jobs)} runs finished already: not submitted again")
    slots = 0
    threads = None if launcher == "slurm" else max(1, (os.cpu_count() or 1) // max(1, parallel))

    def finish(d: str, ok: bool, why: str = "") -> None:
        state[d] = "done" if ok else "failed"
        if not ok:
            res.failed[d] = why
            progress.message(f"failed: {Path(d).name}: {why}")
        if d in shown:
            progress.end(Path(d).name)
        done = sum(s in ("done", "failed") for s in state.values())
        progress.message(f"{'finished' if ok else 'stopped'} {Path(d).name} ({done}/{len(jobs)})")

    try:
        while True:
            for j in jobs:
                d = j.run_dir
                if state[d] != "todo":
                    continue
                dep = j.after
                if dep is not None and dep in state:
                    if state[dep] == "failed":
                        finish(d, False, f"its generator run {Path(dep).name} failed")
                        continue
                    ready = state[dep] == "done" or (launcher == "slurm" and dep in ids)
                    if not ready:
                        continue
                holder = live_holder(d)
                if holder is not None:
                    state[d], held[d] = "held", holder
                    if holder.job:
                        ids[d] = holder.job
                    progress.message(f"{Path(d).name} is in use by {holder.describe()}: not submitted again, waiting for it")
                    continue
                if launcher != "slurm" and len(running) >= parallel:
                    break
                after = [ids[dep]] if dep is not None and launcher == "slurm" and state.get(dep) != "done" and dep in ids else []
                slot = None
                if launcher == "slurm" and slurm.array_parallelism:
                    slot, slots = slots % slurm.array_parallelism, slots + 1
                ex = make_executor(launcher, j, slurm, after, slot)
                try:
                    with _submitting(local=launcher != "slurm"):
                        sub = ex.submit(run_job, j.kind, j.options, str(root), force, job_progress, 30.0, threads)
                        state[d], running[d] = "running", sub
                except Exception as e:  # sbatch refused (bad partition, account, ...): say so, go on with the rest
                    finish(d, False, submission_error(e, slurm))
                    continue
                res.submitted[d] = str(sub.job_id)
                if launcher == "slurm":
                    ids[d] = str(sub.job_id)
                progress.message(f"submitted {j.name} as job {sub.job_id}" + (f" after job {after[0]}" if after else ""))

            if not wait and all(s != "todo" for s in state.values()):
                res.pending = [d for d, s in state.items() if s in ("running", "held")]
                break
            for d, sub in list(running.items()):
                if not sub.done():
                    if launcher == "slurm" and _left_the_queue(sub):
                        del running[d]
                        if is_finished(by_dir[d]):  # ended after its run finished, before submitit wrote the result
                            res.run_dirs[d] = d
                            finish(d, True)
                        else:
                            finish(d, False, f"job {sub.job_id} ended without finishing the run (cancelled, or stopped by "
                                             f"the scheduler; log: {sub.paths.stderr}): run the same command again to "
                                             "resume it from its last checkpoint")
                    continue
                del running[d]
                try:
                    res.run_dirs[d] = sub.result()
                    finish(d, True)
                except Exception as e:  # the job's own error (e.g. a ChimeraMixError), as submitit hands it back
                    finish(d, False, f"{job_error(e)} (log: {sub.paths.stderr})")
            for d in list(held):
                if live_holder(d) is None:
                    del held[d]
                    ids.pop(d, None)
                    if is_finished(by_dir[d]):
                        res.run_dirs[d] = d
                        finish(d, True)
                    else:  # its holder stopped before the end: this launch resumes it
                        state[d] = "todo"
            if all(s in ("done", "failed") for s in state.values()):
                break
            for d in list(running) + list(held):
                seen = _peek(d)
                if seen is not None:
                    name = Path(d).name
                    if d not in shown:
                        shown.add(d)
                        progress.start(name, seen[1])
                    progress.update(name, seen[0])
            time.sleep(poll_s)
    except KeyboardInterrupt:
        if launcher != "slurm":  # local jobs are this machine's processes: Ctrl-C stops them too (each saves its state)
            stop_local_jobs(list(running.values()))
        raise
    return res


# How long a stopped local job may take to finish its step and save its checkpoint before it is killed
STOP_WAIT_S = 60.0


@contextmanager
def _submitting(local: bool):
    """Around one submission. A local job's controller (submitit's `_local` process, which runs the job as its
    child) is started here: it inherits an ignored SIGINT, so a terminal's Ctrl-C reaches this process and the
    training job but not the controller, which would print a KeyboardInterrupt traceback and kill the job a second
    later, before its checkpoint is saved; stop_local_jobs stops it instead. A SIGTERM that arrives meanwhile
    waits until the job is recorded (else it would train on, orphaned); a Ctrl-C in this instant is lost."""
    if not local or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    old = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
           signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if pending:
            signal.raise_signal(pending[0])  # now, to the handler the command set (the CLI: unwind as Ctrl-C does)


def _alive(job) -> bool:
    return job.get_info().get("jobState") == "RUNNING"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_local_jobs(jobs: list, wait_s: float = STOP_WAIT_S) -> None:
    """Stop local submitit jobs and wait until none of their processes is left.

    SIGTERM goes to each job's controller (a local job's id is its pid), which forwards it to the job: the
    training loop stops after its step and saves a checkpoint, so running the same command again resumes it. A
    second Ctrl-C or SIGTERM meanwhile is passed on too (the loop then stops inside the step); a job still alive
    after `wait_s` is killed with its children.
    """
    for job in jobs:
        _signal(int(job.job_id), signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while True:
        alive = [job for job in jobs if _alive(job)]
        if not alive:
            return
        if time.monotonic() > deadline:
            for job in alive:
                _kill_tree(int(job.job_id))
            return
        try:
            time.sleep(0.1)
        except KeyboardInterrupt:
            for job in alive:
                _signal(int(job.job_id), signal.SIGTERM)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its children (Linux lists them in /proc; elsewhere only the process itself)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        _kill_tree(int(child))
    _signal(pid, signal.SIGKILL)
