"""The paper's protocol as one call: for each seed, fit the generator(s), fit every classifier, tabulate."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from .config import MAX_SEED, TABLE_PRESET, ClassifierConfig, GeneratorConfig, make_config
from .errors import ChimeraMixError
from .fileio import check_writable, write_json
from .html_report import write_html
from .methods import build_method, known_methods
from .progress import SILENT, Progress
from .report import TABLE_NAMES_EXTRA, Row, Table, group_by_setting, load_results, write_tables


MAX_SEEDS = 1000  # a run per seed and method: more is a typo, not a plan


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,5' -> [0, 2, 5]; '3' -> [3]."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                a, b = int(a), int(b)
                if b - a + 1 > MAX_SEEDS:  # before the list is built: '0-4000000000' would fill the memory
                    raise ChimeraMixError(f"--seeds '{text}' asks for {b - a + 1:,} seeds: at most {MAX_SEEDS:,} in one command")
                seeds.extend(range(a, b + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise ChimeraMixError(f"--seeds '{text}' is not a list of seeds: use e.g. 0-4 or 0,1,2") from None
    if not seeds:
        raise ChimeraMixError("--seeds is empty: use e.g. 0-4")
    if len(seeds) > MAX_SEEDS:
        raise ChimeraMixError(f"--seeds '{text}' asks for {len(seeds):,} seeds: at most {MAX_SEEDS:,} in one command")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ChimeraMixError(f"--seeds '{text}' holds {bad[0]}: seeds go from 0 to {MAX_SEED}")
    return list(dict.fromkeys(seeds))


def expand_methods(spec: str, masks: list[str]) -> list[tuple[str, str | None]]:
    """Method names (and, for generator methods, the mask kind of their generator) to run."""
    names = known_methods() if spec.strip() == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    if not names:
        raise ChimeraMixError(f"--methods '{spec}' names no method: give a comma-separated list, e.g. "
                              "--methods none,mixup,chimeramix (see `chimeramix methods`)")
    plan = []
    for name in names:
        method = build_method(name)  # validates the name
        if method.needs_generator:
            plan.extend((name, m) for m in masks)
        else:
            plan.append((name, None))
    return plan


def _checkpoints_advice(message: str) -> str:
    return message.replace("choose another --out", "choose another --checkpoints")


def check_launcher(launcher: str, slurm) -> None:
    """A launcher other than 'local' needs submitit and sound --slurm-* values; refused before anything runs."""
    from .launch import LAUNCHERS, SlurmOptions, require_submitit

    if launcher not in LAUNCHERS:
        raise ChimeraMixError(f"unknown --launcher '{launcher}': choose one of {', '.join(LAUNCHERS)}")
    if launcher != "local":
        require_submitit()
        (slurm or SlurmOptions()).check()
    if launcher == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise ChimeraMixError("--launcher slurm needs Slurm's sbatch and srun, which this machine lacks: run it on the "
                              "cluster's login node (or try the job graph here with --launcher submitit-local)")


def check_plan(seeds, plan, gen_overrides: dict, clf_overrides: dict, jobs: int, out, launcher: str = "local", slurm=None) -> None:
    """Refuse bad values before the first run trains: a bad classifier option must not wait for the generators."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ChimeraMixError(f"--jobs must be a whole number of at least 1 (got {jobs})")
    check_launcher(launcher, slurm)
    for name, opts in (("--gen-steps", gen_overrides), ("--clf-steps", clf_overrides)):
        steps = opts.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ChimeraMixError(f"{name} must be a whole number of at least 1 (got {steps})")
    for seed in seeds:
        for name, mask in plan:
            if mask is not None:
                make_config(GeneratorConfig, **{**gen_overrides, "seed": seed, "mask": mask})
            make_config(ClassifierConfig, **{**clf_overrides, "seed": seed, "method": name})
    if out:
        check_writable(Path(out).with_suffix(".md"), "--out-prefix", TABLE_NAMES_EXTRA)


@dataclass
class ExperimentResult:
    rows: list[Row]  # every table's rows, in table order (one table unless reused runs differ in setting)
    results: list[dict]
    generator_runs: list[str]
    tables: list[Table] = field(default_factory=list)
    table_md: Path | None = None
    table_csv: Path | None = None
    table_html: Path | None = None  # the same tables with the runs' pictures, one self-contained page
    charts: list[Path] = field(default_factory=list)
    summary_json: Path | None = None
    seconds: dict = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # jobs submitted and not waited for (--no-wait)
    submitted: dict = field(default_factory=dict)  # run folder -> job id, for a launcher other than 'local'


class _Relay(Progress):
    """A worker process's progress, sent to the parent that owns the terminal (at most ~2 updates a second)."""

    def __init__(self, q, prefix: str):
        self.q, self.prefix, self.last, self.total = q, prefix, {}, {}

    def start(self, task, total, completed=0):
        self.total[task] = total
        self.q.put(("start", self.prefix + task, total, completed))

    def update(self, task, completed, metrics=None):
        now = time.monotonic()
        # the last one and every log point (losses) always: the loop reports each step's count in between
        if metrics or now - self.last.get(task, 0.0) >= 0.5 or completed >= self.total.get(task, 0):
            self.last[task] = now
            self.q.put(("update", self.prefix + task, completed, metrics))

    def end(self, task):
        self.q.put(("end", self.prefix + task))

    def message(self, text):
        self.q.put(("message", self.prefix.strip() + ": " + text))


def _replay(event: tuple, progress: Progress) -> None:
    kind, *args = event
    getattr(progress, kind)(*args)


_STOP = None  # in a --jobs worker: the parent's stop event (set when the experiment is interrupted)


def _worker_init(stop) -> None:
    # An Event can reach a spawned worker only as a process argument (the initializer's), not through submit().
    global _STOP
    _STOP = stop


def _check_stop(seed: int) -> None:
    if _STOP is not None and _STOP.is_set():
        from .train.loop import RunInterrupted

        raise RunInterrupted(f"seed {seed}: not started, the experiment was interrupted", exit_code=143)


def _run_seed(seed: int, plan, gen_overrides: dict, clf_overrides: dict, root: str, force: bool, progress: Progress,
              threads: int | None = None, relay=None):
    """Both stages for one seed; returns (generator run folders, classifier run folders, seconds per stage)."""
    import torch

    from .train.classifier import fit_classifier
    from .train.generator import fit_generator

    if threads:  # parallel workers share the CPU cores instead of each claiming all of them
        torch.set_num_threads(threads)
    if relay is not None:
        progress = _Relay(relay, f"seed {seed} ")

    gens: dict[str, str] = {}
    clfs: list[str] = []
    secs = {"generator": 0.0, "classifier": 0.0}
    for name, mask in plan:
        gen_dir = None
        if mask is not None:
            if mask not in gens:
                _check_stop(seed)
                t = time.perf_counter()
                cfg = make_config(GeneratorConfig, **{**gen_overrides, "seed": seed, "mask": mask})
                gens[mask] = str(fit_generator(cfg, resume="auto", force=force, progress=progress, root=root).run_dir)
                secs["generator"] += time.perf_counter() - t
            gen_dir = gens[mask]
        _check_stop(seed)
        t = time.perf_counter()
        cfg = make_config(ClassifierConfig, **{**clf_overrides, "seed": seed, "method": name, "generator": gen_dir})
        clfs.append(str(fit_classifier(cfg, resume="auto", force=force, progress=progress, root=root).run_dir))
        secs["classifier"] += time.perf_counter() - t
    return list(gens.values()), clfs, secs


def _stop_workers(pool: ProcessPoolExecutor, stop, futures) -> None:
    """Ctrl-C, SIGTERM or a failed seed: every worker saves a checkpoint and stops, and no queued seed starts.

    Without this the pool's shutdown waits for the running seeds to finish training (SIGTERM reaches only this
    process), and a worker whose run was stopped would go on with the next seed.
    """
    stop.set()
    for f in futures:
        f.cancel()
    # the pool keeps its worker processes in a private dict; there is no public way to signal them
    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGTERM)  # the training loop turns it into a checkpoint and a clean stop
            except ProcessLookupError:
                pass


def _drain(relay, progress: Progress) -> None:
    while True:
        try:
            _replay(relay.get_nowait(), progress)
        except queue.Empty:
            return


def run_experiment(
    data: str,
    spc: int,
    seeds: list[int],
    *,
    preset: str = TABLE_PRESET,
    masks: list[str] = ("seg",),
    methods: str = "none,chimeramix",
    device: str = "auto",
    out: str | Path | None = None,
    root: str | Path = "checkpoints",
    gen_options: dict | None = None,
    clf_options: dict | None = None,
    jobs: int = 1,
    force: bool = False,
    progress: Progress = SILENT,
    title: str = "",
    launcher: str = "local",
    slurm=None,
    wait_for_jobs: bool = True,
    job_progress=None,
    poll_s: float = 5.0,
) -> ExperimentResult:
    """Run every (seed, method) pair and write <out>.md, <out>.csv, <out>.json and <out>.html; finished runs are reused.

    launcher 'local' trains here (`jobs` seeds in parallel processes); 'slurm' and 'submitit-local' make each
    run one job of a graph (chimeramix/launch.py) with `slurm`'s resources (a `launch.SlurmOptions`).
    """
    plan = expand_methods(methods, list(masks))
    common = {"data": data, "spc": spc, "preset": preset, "device": device}
    gen_overrides = {**common, **(gen_options or {})}
    clf_overrides = {**common, **(clf_options or {})}
    # Every setting (mask rules included) is checked before the first run trains: a typo must not cost a baseline.
    check_plan(seeds, plan, gen_overrides, clf_overrides, jobs, out, launcher, slurm)
    if preset == "paper" and launcher == "local":  # jobs elsewhere pick their own device
        from .data.device import resolve_device

        if resolve_device(device).type == "cpu":
            progress.message("preset paper on the CPU: days per seed on 2 cores (docs/benchmarks.md: ~13 s a generator "
                             "step, ~0.5 s a classifier step); --preset cpu is the protocol sized for a CPU")
    t0 = time.perf_counter()
    gen_runs, clf_runs = [], []
    secs = {"generator": 0.0, "classifier": 0.0}
    submitted: dict = {}
    try:
        if launcher != "local":
            from .launch import build_graph, launch

            graph = build_graph(seeds, plan, gen_overrides, clf_overrides, root)
            done = launch(graph, launcher, slurm=slurm, root=root, parallel=jobs, force=force, wait=wait_for_jobs,
                          progress=progress, job_progress=job_progress, poll_s=poll_s)
            submitted = done.submitted
            if done.failed:
                first = next(iter(done.failed.items()))
                raise ChimeraMixError(f"{len(done.failed)} of {len(graph)} runs failed, e.g. {first[0]}: {first[1]}")
            if done.pending:
                return ExperimentResult([], [], [], seconds={"wall": time.perf_counter() - t0}, pending=done.pending,
                                        submitted=submitted)
            gen_runs = [done.run_dirs[j.run_dir] for j in graph if j.kind == "generator"]
            clf_runs = [done.run_dirs[j.run_dir] for j in graph if j.kind == "classifier"]
            secs = {}  # the jobs' own times are in their logs
        elif jobs <= 1:
            for seed in seeds:
                progress.message(f"seed {seed}: {', '.join(n + (f' ({m})' if m else '') for n, m in plan)}")
                g, c, s = _run_seed(seed, plan, gen_overrides, clf_overrides, str(root), force, progress)
                gen_runs += g
                clf_runs += c
                for k in secs:
                    secs[k] += s[k]
        else:
            # Seeds in parallel processes: one small-batch run cannot fill a large GPU (or all CPU cores).
            # Each worker relays its progress hooks through a queue, so every running job keeps its own bar here.
            ctx = get_context("spawn")
            stop = ctx.Event()
            with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                                               initargs=(stop,)) as pool:
                relay = manager.Queue()
                threads = max(1, (os.cpu_count() or 1) // jobs)
                futures = {pool.submit(_run_seed, s, plan, gen_overrides, clf_overrides, str(root), force, SILENT, threads, relay): s
                           for s in seeds}
                left = set(futures)
                try:
                    while left:
                        finished, left = wait(left, timeout=0.2, return_when=FIRST_COMPLETED)
                        _drain(relay, progress)
                        for fut in finished:
                            g, c, s = fut.result()
                            progress.message(f"seed {futures[fut]} done")
                            gen_runs += g
                            clf_runs += c
                            for k in secs:
                                secs[k] += s[k]
                    _drain(relay, progress)
                except BaseException:
                    _stop_workers(pool, stop, futures)
                    raise
    except ChimeraMixError as e:
        # a run's refusal names fit-*'s --out; here the run folders come from --checkpoints
        e.args = (_checkpoints_advice(str(e)),)
        raise
    secs["wall"] = time.perf_counter() - t0
    results = load_results(clf_runs)
    tables = group_by_setting(results)
    res = ExperimentResult([r for t in tables for r in t.rows], results, sorted(set(gen_runs)), tables, seconds=secs,
                           submitted=submitted)
    if out:
        out = Path(out)
        title = title or f"{data}, {spc} samples per class, preset {preset}"
        res.table_md, res.table_csv, res.charts = write_tables(tables, out, title)
        res.summary_json = out.with_suffix(".json")
        write_json(res.summary_json, {
            "data": data, "spc": spc, "seeds": list(seeds), "preset": preset, "methods": [f"{n}:{m}" if m else n for n, m in plan],
            "table": [{"setting": t.name, **r.to_dict()} for t in tables for r in t.rows],
            "classifier_runs": clf_runs, "generator_runs": res.generator_runs, "seconds": secs,
        })
        res.table_html = write_html(tables, out, title, res.charts)  # last: a page that fails must not cost the records
    return res
