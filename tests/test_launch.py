"""The job graph: submitit's local executor runs it on tiny data; Slurm's sbatch scripts are checked as written."""

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chimeramix.errors import ChimeraMixError
from chimeramix.experiment import expand_methods, run_experiment
from chimeramix.launch import SlurmOptions, build_graph, launch, slurm_minutes
from chimeramix.progress import Progress
from conftest import cli_process, reaped, wait_until

from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config
from chimeramix.train.setup import config_overrides, config_tag

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[1]
GEN = {"steps": 6, "ngf": 4, "ndf": 4, "batch_size": 4, "log_every": 1, "checkpoint_every": 2}
CLF = {"steps": 6, "batch_size": 4, "log_every": 1, "checkpoint_every": 2}
# the config tags of these settings (away from the fast preset), as the run folders' names end
G_TAG = config_tag(config_overrides(make_config(GeneratorConfig, "fast", **GEN)))
C_TAG = config_tag(config_overrides(make_config(ClassifierConfig, "fast", **CLF)))
KW = dict(preset="fast", masks=["grid"], methods="none,chimeramix", device="cpu", gen_options=GEN, clf_options=CLF)


class Log(Progress):
    def __init__(self):
        self.lines, self.started = [], []

    def message(self, text):
        self.lines.append(text)

    def start(self, task, total, completed=0):
        self.started.append(task)


@pytest.fixture
def folder(make_image_folder):
    return str(make_image_folder(classes=("ant", "bee"), train=4, test=2, size=16))


@pytest.fixture(autouse=True)
def job_env(monkeypatch):
    # the jobs are fresh processes: they import this checkout and stay on one thread on a busy machine
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # ... and the plain runs in this process use one thread too, or their float sums differ from the jobs' in the
    # last bits (torch reads OMP_NUM_THREADS only when it starts)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def graph(folder, root, methods="none,chimeramix"):
    common = {"data": folder, "spc": 2, "preset": "fast", "device": "cpu"}
    return build_graph([0], expand_methods(methods, ["grid"]), {**common, **GEN}, {**common, **CLF}, root)


def test_graph_is_generators_then_classifiers_that_point_at_them(folder, tmp_path):
    jobs = graph(folder, tmp_path / "ck", "none,mixup,chimeramix")
    assert [(j.kind, j.name) for j in jobs] == [
        ("classifier", f"clf-data-spc2-seed0-none-fast-c{C_TAG}"), ("classifier", f"clf-data-spc2-seed0-mixup-fast-c{C_TAG}"),
        ("generator", f"gen-data-spc2-seed0-grid-fast-c{G_TAG}"),
        ("classifier", f"clf-data-spc2-seed0-chimeramix-grid-g{G_TAG}-fast-c{C_TAG}")]
    gen = jobs[2]
    assert jobs[3].after == gen.run_dir and jobs[3].options["generator"] == gen.run_dir
    assert jobs[0].after is None and jobs[1].after is None
    assert not (tmp_path / "ck").exists()  # pure: nothing written


def test_two_generator_budgets_share_one_checkpoints_folder_and_the_baseline_trains_once(folder, tmp_path):
    """The same experiment with another --gen-steps into the same --checkpoints: its own generator and ChimeraMix
    runs beside the first ones (not a refusal), the baseline reused, and the job graph names what the runs did."""
    root = str(tmp_path / "ck")
    first = run_experiment(folder, 2, [0], root=root, **KW)
    more = {**KW, "gen_options": {**GEN, "steps": 8}}
    second = run_experiment(folder, 2, [0], root=root, **more)
    assert first.generator_runs != second.generator_runs
    runs = {r["label"]: r["run_dir"] for r in first.results}, {r["label"]: r["run_dir"] for r in second.results}
    assert runs[0]["Baseline"] == runs[1]["Baseline"]
    assert runs[0]["ChimeraMix+Grid"] != runs[1]["ChimeraMix+Grid"]
    assert json.loads((Path(second.generator_runs[0]) / "run.json").read_text())["config"]["steps"] == 8
    again = run_experiment(folder, 2, [0], root=root, **KW)  # the first budget's runs are still there, untouched
    assert [r.accuracies for r in again.rows] == [r.accuracies for r in first.rows]
    common = {"data": folder, "spc": 2, "preset": "fast", "device": "cpu"}
    jobs = build_graph([0], expand_methods("none,chimeramix", ["grid"]), {**common, **GEN, "steps": 8}, {**common, **CLF}, root)
    assert sorted(j.run_dir for j in jobs) == sorted([*second.generator_runs, *runs[1].values()])


def test_local_executor_runs_the_graph_like_a_plain_experiment(folder, tmp_path):
    plain = run_experiment(folder, 2, [0], root=str(tmp_path / "plain"), **KW)
    log = Log()
    root = str(tmp_path / "jobs")
    res = run_experiment(folder, 2, [0], root=root, launcher="submitit-local", jobs=2, progress=log, poll_s=0.2, **KW)
    assert [(r.method, r.accuracies) for r in res.rows] == [(r.method, r.accuracies) for r in plain.rows]
    # each run was one job, in the folder the graph predicted, with its log there
    ran = sorted(res.generator_runs + [r["run_dir"] for r in res.results])
    assert sorted(res.submitted) == ran and len(ran) == 3
    for d, job_id in res.submitted.items():
        assert (Path(d) / "logs" / f"{job_id}_0_log.out").is_file()
        assert {p.name.split("_")[0] for p in (Path(d) / "logs").iterdir()} == {job_id}
        assert json.loads((Path(d) / "run.json").read_text())["status"] == "finished"
    # the classifier that needs the generator was submitted only after the generator job finished
    gen, clf = f"gen-data-spc2-seed0-grid-fast-c{G_TAG}", f"clf-data-spc2-seed0-chimeramix-grid-g{G_TAG}-fast-c{C_TAG}"
    order = [line.split(" ")[0] + " " + line.split(" ")[1] for line in log.lines]
    assert order.index(f"finished {gen}") < order.index(f"submitted {clf}")
    # the same metrics, step for step, as the plain run
    for name in (gen, clf):
        assert (tmp_path / "plain" / name / "metrics.jsonl").read_text() == (Path(root) / name / "metrics.jsonl").read_text()

    again = run_experiment(folder, 2, [0], root=root, launcher="submitit-local", progress=log, poll_s=0.2, **KW)
    assert again.submitted == {}  # every run finished: nothing submitted
    assert "3 of 3 runs finished already: not submitted again" in log.lines
    assert [r.accuracies for r in again.rows] == [r.accuracies for r in plain.rows]


def dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(p.stdout)


def test_resubmission_after_a_killed_job_resumes_it(folder, tmp_path):
    from chimeramix.config import ClassifierConfig, make_config
    from chimeramix.train.classifier import fit_classifier
    from chimeramix.train.loop import RunInterrupted

    class StopAt(Progress):
        def update(self, task, completed, metrics=None):
            if completed == 4:
                raise KeyboardInterrupt

    root = tmp_path / "jobs"
    (job,) = graph(folder, root, "none")
    with pytest.raises(RunInterrupted):
        fit_classifier(make_config(ClassifierConfig, **job.options), resume="auto", progress=StopAt(), root=str(root))
    # what a SIGKILLed Slurm job leaves: its checkpoint (step 4) and its lock, naming a process that is gone
    lock = {"pid": dead_pid(), "host": socket.gethostname(), "since": "2020-01-01T00:00:00", "job": "4242"}
    (Path(job.run_dir) / "run.lock").write_text(json.dumps(lock))
    assert json.loads((Path(job.run_dir) / "run.json").read_text())["step"] == 4

    res = launch([job], "submitit-local", root=str(root), poll_s=0.2)
    assert not res.failed and list(res.submitted) == [job.run_dir]
    info = json.loads((Path(job.run_dir) / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == 6 and not (Path(job.run_dir) / "run.lock").exists()
    # resumed at 4, not started over: the same log, line for line, as an uninterrupted run of the same settings
    plain = fit_classifier(make_config(ClassifierConfig, **job.options), root=str(tmp_path / "plain"))
    assert (Path(job.run_dir) / "metrics.jsonl").read_text() == (plain.run_dir / "metrics.jsonl").read_text()
    assert json.loads((Path(job.run_dir) / "result.json").read_text())["accuracy"] == plain.accuracy


def test_a_job_stopped_by_sigterm_saves_a_checkpoint_and_the_next_launch_resumes_it(folder, tmp_path):
    """What scancel or a scheduler's stop does: SIGTERM to the job (the local executor forwards it to the task)."""
    import signal

    class Scancel(Log):  # the driver's progress shows the run's steps; past step 3 the job gets SIGTERM, once
        def __init__(self):
            super().__init__()
            self.job, self.sent = None, None

        def message(self, text):
            super().message(text)
            if text.startswith("submitted "):
                self.job = int(text.rsplit(" ", 1)[1])

        def update(self, task, completed, metrics=None):
            if self.sent is None and completed >= 3:
                self.sent = completed
                os.kill(self.job, signal.SIGTERM)

    root = tmp_path / "jobs"
    common = {"data": folder, "spc": 2, "preset": "fast", "device": "cpu"}
    (job,) = build_graph([0], expand_methods("none", []), {}, {**common, **CLF, "steps": 80}, root)
    log = Scancel()
    res = launch([job], "submitit-local", root=str(root), progress=log, poll_s=0.1)
    info = json.loads((Path(job.run_dir) / "run.json").read_text())
    assert log.sent is not None and list(res.failed) == [job.run_dir], (log.lines, info)
    assert "terminated (SIGTERM) at step" in res.failed[job.run_dir]
    stopped = info["step"]
    assert info["status"] == "running" and log.sent <= stopped < 80 and info["checkpoint_step"] == stopped
    assert not (Path(job.run_dir) / "run.lock").exists()  # released on the way out

    again = launch([job], "submitit-local", root=str(root), poll_s=0.1)
    assert not again.failed and list(again.submitted) == [job.run_dir]
    from chimeramix.config import ClassifierConfig, make_config
    from chimeramix.train.classifier import fit_classifier

    plain = fit_classifier(make_config(ClassifierConfig, **job.options), root=str(tmp_path / "plain"))
    assert (Path(job.run_dir) / "metrics.jsonl").read_text() == (plain.run_dir / "metrics.jsonl").read_text()


HOLDER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from chimeramix.lock import RunLock
lock = RunLock(sys.argv[2]).acquire()
print("held", flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
lock.release()
"""


def test_a_folder_in_use_is_not_submitted_again_but_waited_for(folder, tmp_path):
    root = tmp_path / "jobs"
    jobs = graph(folder, root, "none")
    held_dir = jobs[0].run_dir
    Path(held_dir).mkdir(parents=True)
    go = tmp_path / "go"
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), held_dir, str(go)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"

        class ReleaseWhenSeen(Log):  # the other process lets go once this launch said it waits for it
            def message(self, text):
                super().message(text)
                if "is in use by" in text:
                    threading.Timer(1.0, go.write_text, args=("",)).start()

        log = ReleaseWhenSeen()
        res = launch(jobs, "submitit-local", root=str(root), progress=log, poll_s=0.2)
    finally:
        go.write_text("")
        other.wait(timeout=30)
    held = [line for line in log.lines if "is in use by" in line]
    assert len(held) == 1 and f"pid {other.pid} on {socket.gethostname()}" in held[0]
    assert not res.failed and sorted(res.submitted) == sorted(j.run_dir for j in jobs)  # submitted once it was free
    steps = [json.loads(ln)["step"] for ln in (Path(held_dir) / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # trained once


def test_a_duplicate_job_waits_for_the_holder_then_takes_the_folder_as_it_was_left(folder, tmp_path):
    """Two submissions of one grid: the second job of a folder waits for the holder, then goes on from what it left
    (here an empty folder, so it trains the run, once; a finished run would be reused, an unfinished one resumed)."""
    import signal

    from chimeramix.launch import run_job

    root = tmp_path / "jobs"
    (job,) = graph(folder, root, "none")
    Path(job.run_dir).mkdir(parents=True)
    go = tmp_path / "go"
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), job.run_dir, str(go)], stdout=subprocess.PIPE, text=True)
    old = signal.getsignal(signal.SIGUSR2)
    seen = []

    class Waiting(Progress):
        def message(self, text):
            seen.append(text)
            go.write_text("")  # the holder lets go once the job said it waits

    try:
        assert other.stdout.readline().strip() == "held"
        out = run_job(job.kind, job.options, str(root), progress_factory=Waiting, poll_s=0.2)
    finally:
        signal.signal(signal.SIGUSR2, old)
        go.write_text("")
        other.wait(timeout=30)
    assert out == job.run_dir
    assert seen[0].endswith(": waiting for it") and f"in use by pid {other.pid}" in seen[0]
    steps = [json.loads(ln)["step"] for ln in (Path(job.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


FAKE_SBATCH = """#!/bin/sh
n=$(cat "{counter}" 2>/dev/null || echo 100)
n=$((n + 1))
echo $n > "{counter}"
{{ echo "### job $n"; cat "$1"; }} >> "{record}"
echo "Submitted batch job $n"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch and srun stand-ins on PATH: sbatch records each script it is given and answers with a job id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch.txt"
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(counter=tmp_path / "counter", record=record))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def scripts(record: Path) -> dict[str, str]:
    parts = record.read_text().split("### job ")[1:]
    return {p.split("\n", 1)[0]: p.split("\n", 1)[1] for p in parts}


def test_slurm_scripts_carry_the_resources_and_afterok_dependencies(folder, tmp_path, fake_slurm):
    root = tmp_path / "jobs"
    jobs = graph(folder, root)
    opts = SlurmOptions(partition="gpu", gpus_per_job=2, cpus_per_job=8, mem="32G", time="02:00:00")
    res = launch(jobs, "slurm", slurm=opts, root=str(root), wait=False)
    assert res.submitted == {jobs[0].run_dir: "101", jobs[1].run_dir: "102", jobs[2].run_dir: "103"}
    assert sorted(res.pending) == sorted(res.submitted)
    sb = scripts(fake_slurm)
    for job_id, text in sb.items():
        for flag in ("--partition=gpu", "--gpus-per-node=2", "--cpus-per-task=8", "--mem=32G", "--time=02:00:00",
                     "--nodes=1", "--ntasks-per-node=1"):
            assert f"#SBATCH {flag}\n" in text, (flag, text)
        run_dir = next(d for d, i in res.submitted.items() if i == job_id)
        assert f"#SBATCH --output={Path(run_dir).absolute()}/logs/%j_0_log.out" in text  # logs in the run folder
    assert "--dependency" not in sb["101"] and "--dependency" not in sb["102"]  # baseline and generator start at once
    assert "#SBATCH --dependency=afterok:102\n" in sb["103"]  # the ChimeraMix classifier waits for its generator
    assert "#SBATCH --kill-on-invalid-dep=yes\n" in sb["103"]
    assert f"#SBATCH --job-name=cmx-gen-data-spc2-seed0-grid-fast-c{G_TAG}\n" in sb["102"]


def test_slurm_parallelism_limit_and_experiment_without_waiting(folder, tmp_path, fake_slurm):
    log = Log()
    res = run_experiment(folder, 2, [0, 1], root=str(tmp_path / "jobs"), launcher="slurm", wait_for_jobs=False, progress=log,
                         slurm=SlurmOptions(gpus_per_job=0, array_parallelism=2), **KW)
    assert res.rows == [] and len(res.pending) == 6 and len(res.submitted) == 6
    sb = scripts(fake_slurm)
    names = [next(ln for ln in t.splitlines() if "--job-name" in ln) for t in sb.values()]
    assert sorted(names) == sorted(["#SBATCH --job-name=chimeramix-0", "#SBATCH --job-name=chimeramix-1"] * 3)
    assert all("singleton" in t and "--gpus-per-node" not in t and "--partition" not in t for t in sb.values())
    clf = [t for t in sb.values() if "clf-data-spc2-seed1-chimeramix" in t][0]
    gen_id = res.submitted[next(d for d in res.submitted if "gen-data-spc2-seed1" in d)]
    assert f"--dependency=afterok:{gen_id},singleton\n" in clf


@pytest.mark.parametrize("bad, message", [
    ({"time": "soon"}, "--slurm-time 'soon' is not a Slurm time"),
    ({"mem": "lots"}, "--slurm-mem 'lots' is not a Slurm memory size"),
    ({"cpus_per_job": 0}, "--slurm-cpus-per-job must be a whole number of at least 1"),
    ({"array_parallelism": -1}, "--slurm-array-parallelism must be a whole number of at least 0"),
])
def test_bad_slurm_options_are_refused_before_anything_is_made(folder, tmp_path, bad, message):
    with pytest.raises(ChimeraMixError, match=message):
        run_experiment(folder, 2, [0], root=str(tmp_path / "jobs"), launcher="slurm", slurm=SlurmOptions(**bad), **KW)
    assert not (tmp_path / "jobs").exists()


def test_slurm_launcher_off_a_cluster_says_where_to_run_it(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ChimeraMixError, match="needs Slurm's sbatch and srun, which this machine lacks"):
        run_experiment(folder, 2, [0], root=str(tmp_path / "jobs"), launcher="slurm", **KW)
    assert not (tmp_path / "jobs").exists()


def test_slurm_time_in_minutes():
    assert [slurm_minutes(t) for t in ("90", "90:30", "12:00:00", "1-00", "1-02:30", "2-00:00:30")] == \
        [90, 90.5, 720, 1440, 1590, 2880.5]


def test_without_submitit_the_launcher_says_how_to_install_it(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # an import of it now fails as if it were not installed
    with pytest.raises(ChimeraMixError, match=r"^--launcher slurm needs submitit, which is not installed: pip install 'chimeramix\[slurm\]'$"):
        run_experiment(folder, 2, [0], root=str(tmp_path / "jobs"), launcher="slurm", **KW)
    assert not (tmp_path / "jobs").exists()


@pytest.mark.parametrize("method,extra", [
    ("segmix", {"seg_view": "generator"}),  # a method that needs segments: its -genseg tag
    ("mixup", {"method_options": {"alpha": 0.4}}),  # method options: their -o<hash> tag
    ("gridmix", {"p_generated": 0.25}),
])
def test_the_launcher_names_a_classifier_folder_as_fit_classifier_does(tmp_path, method, extra):
    from chimeramix.config import ClassifierConfig, make_config
    from chimeramix.train.classifier import fit_classifier
    from chimeramix.train.setup import classifier_identity, run_path

    cfg = make_config(ClassifierConfig, "fast", data="digits", spc=2, device="cpu", steps=1, batch_size=4, method=method,
                      **extra)
    predicted = run_path(cfg, "clf", classifier_identity(cfg, None).suffix, tmp_path, config_overrides(cfg))
    assert fit_classifier(cfg, root=tmp_path).run_dir == predicted


@pytest.mark.parametrize("gen_extra,clf_extra", [
    ({"mask": "seg"}, {"seg_view": "generator"}),  # seg masks with the generator's view: -seg-genseg
    ({"mask": "seg", "seg_mask": "bernoulli", "parents": 3}, {}),  # generator variants: -seg-k3-bern, "(3 parents, ...)"
    ({"mask": "grid"}, {"method_options": {"grid_offset": "sample"}}),  # an -o override of the generator's mask rules
])
def test_the_job_graph_names_a_chimeramix_run_as_fit_classifier_does(tmp_path, gen_extra, clf_extra):
    from chimeramix.config import ClassifierConfig, make_config

    """The launcher names classifier folders before their generator has trained (from its GeneratorConfig);
    fit-classifier names them from the generator's run.json: one rule, the same folder."""
    from chimeramix.config import GeneratorConfig
    from chimeramix.launch import build_graph
    from chimeramix.train.classifier import fit_classifier
    from chimeramix.train.generator import fit_generator

    base = dict(data="digits", spc=4, device="cpu", preset="fast")
    gen_over = {**base, "steps": 1, "ngf": 4, "ndf": 4, "batch_size": 4, **{k: v for k, v in gen_extra.items() if k != "mask"}}
    clf_over = {**base, "steps": 1, "batch_size": 4, "arch": "wrn16-2", **clf_extra}
    jobs = build_graph([0], [("chimeramix", gen_extra["mask"])], gen_over, clf_over, tmp_path)
    gen_job, clf_job = jobs
    g = fit_generator(make_config(GeneratorConfig, **gen_job.options), root=tmp_path)
    assert str(g.run_dir) == gen_job.run_dir
    r = fit_classifier(make_config(ClassifierConfig, **clf_job.options), root=tmp_path)
    assert str(r.run_dir) == clf_job.run_dir


def _session(sid: int) -> list[str]:
    """Command lines of the processes left in session `sid` (Linux /proc; the experiment leads its own session)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int(d.name) != sid and os.getsid(int(d.name)) == sid:
                found.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc")
def test_sigterm_to_experiment_stops_its_local_jobs_in_one_line_and_the_same_command_resumes(folder, tmp_path):
    """SIGTERM reaches only `experiment` (a scheduler's stop, a kill): its submitit-local jobs must stop with it,
    with their checkpoints, instead of training on as orphans, and the submitit controllers print no traceback."""
    import signal

    args = ["experiment", "--data", folder, "--spc", 2, "--seeds", 0, "--methods", "none", "--preset", "fast",
            "--clf-steps", 150, "--launcher", "submitit-local", "--device", "cpu", "--checkpoints", "ck", "--quiet"]
    a = cli_process(args, tmp_path, start_new_session=True)
    with reaped(a):
        wait_until(a, lambda: any(m.stat().st_size for m in (tmp_path / "ck").glob("clf-*/metrics.jsonl")),
                   "the job did not start training", timeout=120)
        os.kill(a.pid, signal.SIGTERM)
        _, err = a.communicate(timeout=90)
    assert a.returncode == 143 and "Traceback" not in err, err
    assert [ln for ln in err.splitlines() if ln.strip()] == ["terminated"], err
    assert _session(a.pid) == []  # stop_local_jobs waited for the controller and its job
    (run,) = (tmp_path / "ck").glob("clf-*")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "running" and 0 < info["checkpoint_step"] == info["step"] < 150, info
    assert not (run / "run.lock").exists()

    again = cli_process(args, tmp_path)
    with reaped(again):
        _, err = again.communicate(timeout=180)
    assert again.returncode == 0 and "Traceback" not in err, err
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    # resumed where it stopped: each log point once (the stop logged its step too), none trained twice
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted({50, 100, 150, info["step"]}), steps
