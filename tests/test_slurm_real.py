"""--launcher slurm against a real Slurm: slurmctld and slurmd started here on the loopback address, one node.

Debian's Slurm (slurmctld, slurmd, slurm-client; `.ci/run` installs them) runs as root without munge or
systemd: `AuthType=auth/none`, `CredType=cred/none`, daemons in the foreground (-D), state, spool and logs in a
temporary folder, ports of their own, no accounting (so submitit's sacct calls fail, it reports the state
UNKNOWN, and the launcher must still see each job end: it reads the job's result file). Where Slurm is not
installed, or this is not root, the tests skip with the reason; in CI (CI set) that is a failure instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from conftest import ROOT  # noqa: E402

from chimeramix.experiment import run_experiment  # noqa: E402
from chimeramix.launch import SlurmOptions  # noqa: E402

DAEMONS = ("slurmctld", "slurmd")
CPU_JOB = SlurmOptions(gpus_per_job=0, cpus_per_job=1, mem="1G", time="00:10:00")
GEN = {"steps": 4, "ngf": 4, "ndf": 4, "batch_size": 4}
CLF = {"steps": 4, "batch_size": 4}
KW = dict(preset="fast", masks=["grid"], methods="none,chimeramix", device="cpu", gen_options=GEN, clf_options=CLF,
          launcher="slurm", slurm=CPU_JOB, poll_s=0.5)


def _why_not() -> str | None:
    missing = [d for d in (*DAEMONS, "sbatch", "scontrol", "sinfo") if shutil.which(d) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} not found; Debian: apt-get install slurmctld slurmd slurm-client)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs as the submitting user"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _slurm_conf(d: Path) -> str:
    host = socket.gethostname()
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    ctld, slurmd = _free_ports(2)
    return "\n".join([
        "ClusterName=chimeramix-test", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld}", f"SlurmdPort={slurmd}",
        "AuthType=auth/none", "CredType=cred/none", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "MpiDefault=none", "SlurmUser=root",
        "SlurmdUser=root", "ReturnToService=2", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "SchedulerParameters=sched_interval=1",
        # finished jobs stay visible to scontrol for the tests' start and end times
        "MinJobAge=3600", "KillWait=5",
        f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}", f"SlurmctldPidFile={d / 'slurmctld.pid'}",
        f"SlurmdPidFile={d / 'slurmd.pid'}", f"SlurmctldLogFile={d / 'slurmctld.log'}", f"SlurmdLogFile={d / 'slurmd.log'}",
        # the node as slurmd sees it (a mismatch would drain it); jobs share its cores, as tiny runs can
        f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4", ""])


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running one-node Slurm for this test run; SLURM_CONF points every client (sbatch, squeue, ...) at it."""
    why = _why_not()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-Slurm tests: {why}")
        pytest.skip(why)
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    conf = d / "slurm.conf"
    conf.write_text(_slurm_conf(d))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    procs = []
    try:
        for daemon in DAEMONS:
            out = open(d / f"{daemon}.out", "w")
            procs.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], stdout=out, stderr=subprocess.STDOUT))
            time.sleep(1)
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip() == "idle":
                break
            assert all(p.poll() is None for p in procs), (d / "slurmctld.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"the node did not become idle: {r.stdout} {r.stderr}"
            time.sleep(0.5)
        yield conf
    finally:
        # jobs first, while slurmd still runs: their step daemons end with them instead of lingering
        subprocess.run(["scancel", "--full", f"--user={os.getuid()}"], capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
            time.sleep(0.5)
        for p in reversed(procs):  # by pid: nothing else on the machine is touched
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture
def folder(make_image_folder):
    return str(make_image_folder(classes=("ant", "bee"), train=4, test=2, size=16))


@pytest.fixture(autouse=True)
def job_env(monkeypatch):
    # the jobs inherit this environment (sbatch's --export=ALL): this checkout, one thread on a busy machine
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def launch_in_background(folder, root, kw):
    """run_experiment in a thread (the test cancels a job meanwhile); returns the thread and the errors it raised."""
    import threading

    from chimeramix.errors import ChimeraMixError

    failed: list[str] = []

    def run():
        try:
            run_experiment(folder, 2, [0], root=root, **kw)
        except ChimeraMixError as e:
            failed.append(str(e))

    t = threading.Thread(target=run)
    t.start()
    return t, failed


def job_times(job_id: str) -> tuple[datetime, datetime, str]:
    """Start, end and state of a job as the scheduler records them."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return datetime.fromisoformat(fields["StartTime"]), datetime.fromisoformat(fields["EndTime"]), fields["JobState"]


def queue_empty() -> bool:
    r = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True)
    return not r.stdout.strip()


def test_the_job_graph_runs_through_the_scheduler_and_a_classifier_starts_after_its_generator(slurm_cluster, folder,
                                                                                               tmp_path):
    root = tmp_path / "ck"
    res = run_experiment(folder, 2, [0], root=root, **KW)
    assert [r.method for r in res.rows] == ["Baseline", "ChimeraMix+Grid"] and all(r.seeds == [0] for r in res.rows)
    assert len(res.submitted) == 3
    ids = {Path(d).name.split("-")[0] + ("-cmx" if "chimeramix" in Path(d).name else ""): i for d, i in res.submitted.items()}
    # submitit reports a job done once its result file is written; the scheduler records the end a moment later
    deadline = time.monotonic() + 60
    while not queue_empty():
        assert time.monotonic() < deadline, "the finished jobs did not leave the queue"
        time.sleep(0.2)
    gen_start, gen_end, gen_state = job_times(ids["gen"])
    clf_start, _, clf_state = job_times(ids["clf-cmx"])
    assert gen_state == clf_state == "COMPLETED"
    assert clf_start >= gen_end >= gen_start  # Slurm's own times: the afterok dependency held it back
    for d, job_id in res.submitted.items():  # each job's log in its run folder
        assert (Path(d) / "logs" / f"{job_id}_0_log.out").is_file()

    again = run_experiment(folder, 2, [0], root=root, **KW)
    assert again.submitted == {}  # every run finished: nothing submitted a second time
    assert [r.accuracies for r in again.rows] == [r.accuracies for r in res.rows]


def test_no_wait_submits_then_the_same_command_collects_the_table_without_resubmitting(slurm_cluster, folder, tmp_path):
    root = tmp_path / "ck"
    first = run_experiment(folder, 2, [1], root=root, wait_for_jobs=False, **KW)
    assert len(first.submitted) == 3 and sorted(first.pending) == sorted(first.submitted)
    deadline = time.monotonic() + 300
    while not queue_empty():
        assert time.monotonic() < deadline, "the submitted jobs did not finish"
        time.sleep(0.5)
    collected = run_experiment(folder, 2, [1], root=root, **KW)
    assert collected.submitted == {} and collected.pending == []
    assert [r.method for r in collected.rows] == ["Baseline", "ChimeraMix+Grid"]


def test_a_gpu_request_on_a_cluster_without_gpus_is_refused_with_the_option_that_fixes_it(slurm_cluster, folder,
                                                                                         tmp_path):
    from chimeramix.errors import ChimeraMixError

    with pytest.raises(ChimeraMixError, match=r"submission failed: sbatch: error: .*gres.*--slurm-gpus-per-job 0"):
        run_experiment(folder, 2, [0], root=tmp_path / "ck", **{**KW, "slurm": SlurmOptions()})
    assert queue_empty()


def test_scancel_of_a_running_job_is_reported_and_the_same_command_resumes_it_to_the_uninterrupted_weights(
        slurm_cluster, folder, tmp_path):
    import torch
    from safetensors.torch import load_file

    clf = {"steps": 400, "batch_size": 4, "checkpoint_every": 25, "log_every": 5}
    kw = {**KW, "methods": "none", "clf_options": clf}
    root = tmp_path / "ck"
    t, failed = launch_in_background(folder, root, kw)
    deadline = time.monotonic() + 300
    # cancelled once a checkpoint is behind it, so there is something to resume
    while not list(root.glob("clf-*/state.safetensors")):
        assert t.is_alive() and time.monotonic() < deadline, "the job did not reach its first checkpoint"
        time.sleep(0.1)
    job = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()[0]
    subprocess.run(["scancel", job], check=True)
    t.join(timeout=180)
    assert not t.is_alive(), "the launcher still waits for a cancelled job"
    # scancel's SIGTERM reaches the training loop: it saves its state and the job reports that
    assert len(failed) == 1 and "terminated (SIGTERM) at step" in failed[0] and "run the same command" in failed[0], failed

    resumed = run_experiment(folder, 2, [0], root=root, **kw)
    (run,) = list(root.glob("clf-*"))
    assert resumed.submitted and (run / "classifier.safetensors").is_file()
    # the reference trains on as many threads as the Slurm job had (cpus_per_job 1): a float sum split over
    # another number of threads rounds differently, and in CI (no OMP_NUM_THREADS) this process has two
    threads = torch.get_num_threads()
    torch.set_num_threads(CPU_JOB.cpus_per_job)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OMP_NUM_THREADS", str(CPU_JOB.cpus_per_job))  # run_job leaves the count alone then
            plain = run_experiment(folder, 2, [0], root=tmp_path / "plain", **{**kw, "launcher": "local", "slurm": None})
    finally:
        torch.set_num_threads(threads)
    (ref,) = list((tmp_path / "plain").glob("clf-*"))
    a, b = load_file(run / "classifier.safetensors"), load_file(ref / "classifier.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert [r.accuracies for r in resumed.rows] == [r.accuracies for r in plain.rows]


def test_a_job_cancelled_before_it_ran_is_reported_instead_of_waited_for(slurm_cluster, folder, tmp_path):
    """A cancelled job that never ran leaves no result: without accounting submitit calls its state UNKNOWN for
    ever, and the launcher has to see from squeue that it is gone."""
    root = tmp_path / "ck"
    kw = {**KW, "methods": "chimeramix", "gen_options": {**GEN, "steps": 300}}
    t, failed = launch_in_background(folder, root, kw)
    deadline = time.monotonic() + 120
    pending = ""
    while not pending:  # the classifier waits for its generator (afterok): cancel it there
        assert t.is_alive() and time.monotonic() < deadline, "no pending classifier job"
        queue = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %j"], capture_output=True, text=True).stdout
        pending = next((ln.split()[0] for ln in queue.splitlines() if ln.split()[1:2] == ["cmx-clf"] or
                        (len(ln.split()) > 1 and ln.split()[1].startswith("cmx-clf"))), "")
        time.sleep(0.1)
    subprocess.run(["scancel", pending], check=True)
    t.join(timeout=240)
    assert not t.is_alive(), "the launcher still waits for a job that was cancelled before it ran"
    assert len(failed) == 1 and f"job {pending} ended without finishing the run" in failed[0], failed
    assert "1 of 2 runs failed" in failed[0]  # the generator job itself finished


def test_array_parallelism_one_runs_one_job_at_a_time_by_the_schedulers_own_times(slurm_cluster, folder, tmp_path):
    from dataclasses import replace

    kw = {**KW, "methods": "none,mixup", "slurm": replace(CPU_JOB, array_parallelism=1)}
    res = run_experiment(folder, 2, [0], root=tmp_path / "ck", **kw)
    assert len(res.submitted) == 2 and [r.method for r in res.rows] == ["Baseline", "MixUp"]
    deadline = time.monotonic() + 60
    while not queue_empty():
        assert time.monotonic() < deadline, "the finished jobs did not leave the queue"
        time.sleep(0.2)
    (s1, e1, _), (s2, e2, _) = sorted(job_times(i) for i in res.submitted.values())
    assert e1 <= s2  # the second started only after the first ended (Slurm's singleton dependency)


def test_a_failing_generator_job_cancels_its_classifier_and_the_command_names_the_run_and_its_log(
        slurm_cluster, folder, tmp_path):
    import re

    from chimeramix.errors import ChimeraMixError
    from chimeramix.progress import Progress

    class Seen(Progress):
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    root, seen = tmp_path / "ck", Seen()
    # a reconstruction weight that overflows fp32: the generator's first log point is not finite, and its job fails
    kw = {**KW, "methods": "chimeramix", "gen_options": {**GEN, "w_rec": 1e39, "log_every": 2}}
    with pytest.raises(ChimeraMixError) as e:
        run_experiment(folder, 2, [0], root=root, progress=seen, **kw)
    msg = str(e.value)
    (gen,) = root.glob("gen-*")
    assert gen.name in msg and "became nan" in msg, msg
    log = Path(re.search(r"log: (\S+?)\)", msg).group(1))
    assert log.is_file() and log.parent == gen / "logs" and "became nan" in log.read_text()
    assert not (gen / "run.json").exists()  # it stopped before its first checkpoint: only the job's logs stay
    # the classifier was submitted after the generator's job; the scheduler cancelled it when that job failed
    after = [re.match(r"submitted (\S+) as job (\d+) after job (\d+)", ln) for ln in seen.lines]
    (clf,) = [m for m in after if m]
    assert clf.group(1).startswith("clf-")
    deadline = time.monotonic() + 60
    while not queue_empty():
        assert time.monotonic() < deadline, "the cancelled classifier job did not leave the queue"
        time.sleep(0.2)
    out = subprocess.run(["scontrol", "show", "job", clf.group(2)], capture_output=True, text=True, check=True).stdout
    assert "JobState=CANCELLED" in out and "DependencyNeverSatisfied" in out, out
    assert not list(root.glob("clf-*/run.json"))  # never trained


def test_two_launches_at_once_train_each_run_folder_once(slurm_cluster, folder, tmp_path):
    import threading

    pytest.importorskip("tensorboard")  # each process that trains a run writes one event file into it
    root = tmp_path / "ck"
    results, errors = [], []

    def launch():
        try:
            results.append(run_experiment(folder, 2, [0], root=root, **KW))
        except Exception as e:  # noqa: BLE001 - the test reports whatever either launch raised
            errors.append(e)

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)  # the second one arrives while the first one's jobs are queued or running
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 2, errors
    assert [r.accuracies for r in results[0].rows] == [r.accuracies for r in results[1].rows]
    runs = [d for d in root.iterdir() if d.is_dir()]
    assert len(runs) == 3
    for run in runs:
        # one training process per folder (a job that found it held waited, then reused it), each step logged once
        assert len(list(run.glob("events.out.tfevents.*"))) == 1, sorted(p.name for p in run.iterdir())
        steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps))


def test_sweep_through_slurm_writes_its_table_1_shaped_grid(slurm_cluster, make_image_folder, tmp_path):
    from chimeramix.sweep import run_sweep

    sets = [str(make_image_folder(classes=("ant", "bee"), train=4, test=2, size=16, name=n, seed=i)) for i, n in enumerate("ab")]
    out = tmp_path / "results"
    res = run_sweep(sets, [2, 3], [0], out=out, preset="fast", methods="none", device="cpu", root=str(tmp_path / "ck"),
                    clf_options=CLF, launcher="slurm", slurm=CPU_JOB, poll_s=0.5)
    assert len(res.submitted) == 4 and not res.failed and not res.pending  # a 2 x 2 grid: one job per run
    md = (out / "table1.md").read_text().splitlines()
    assert md[2] == "| method | a spc 2 | a spc 3 | b spc 2 | b spc 3 |" and md[4].startswith("| Baseline |")
    assert "(n=1)" in md[4] and (out / "table1.html").is_file()
    for d, job in res.submitted.items():
        assert (Path(d) / "logs" / f"{job}_0_log.out").is_file()
