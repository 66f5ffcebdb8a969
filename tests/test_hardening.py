"""Bad input, two processes on one run folder, SIGTERM: through the real command line and real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chimeramix.errors import ChimeraMixError
from chimeramix.progress import Progress
from cli.app import app
from conftest import ROOT, cli_process, reaped, tag_of, wait_until

runner = CliRunner()
SMALL = ["--data", "digits", "--spc", "2", "--device", "cpu", "--quiet", "--checkpoints", "ck"]
TINY_GEN = ["--mask", "grid", "--ngf", "4", "--ndf", "4", "--batch-size", "2", "--log-every", "1"]


def invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.strip()]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"/") for p in sorted(root.rglob("*"))}


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(p.stdout)


@pytest.fixture
def place(tmp_path, make_image_folder, monkeypatch):
    """The folders the bad inputs point at; made before the snapshot, so only what the command adds counts."""
    monkeypatch.chdir(tmp_path)
    make_image_folder(classes=("only",), train=2, test=1, size=8, name="oneclass")
    make_image_folder(classes=("a", "b"), train=2, test=1, size=8, name="d" * 250)  # a run name made from it is too long
    make_image_folder(classes=("line\nbreak", "b"), train={"line\nbreak": 1, "b": 3}, test=1, size=8, name="newline")
    for name, text in (("list-run", "[1, 2]"), ("number-run", "42"), ("broken-run", "{not json")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(text)
    done = tmp_path / "finished"
    done.mkdir()
    (done / "result.json").write_text(json.dumps({
        "label": "Baseline", "accuracy": 0.5, "config": {"preset": "fast", "method_options": {"seed": 0}},
        "split": {"source": "digits", "spc": 2, "seed": 0}}))
    (tmp_path / "list-result").mkdir()
    (tmp_path / "list-result" / "result.json").write_text("[]")
    (tmp_path / "no-label").mkdir()
    (tmp_path / "no-label" / "result.json").write_text(json.dumps({"accuracy": 0.5, "split": {"seed": 0}}))
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses even root
        ro = Path("/sys/chimeramix-no-write")
    else:
        ro = tmp_path / "readonly"
        ro.mkdir()
        ro.chmod(0o555)
    return {"ro": ro}


CLF, GEN, EXP = ["fit-classifier", *SMALL], ["fit-generator", *SMALL], ["experiment", *SMALL, "--seeds", "0"]
BAD = [
    # (id, arguments, words the one line must hold)
    ("clf-steps-0", [*CLF, "--steps", 0], "--steps must be a whole number of at least 1"),
    ("clf-steps-neg", [*CLF, "--steps", -5], "(got -5)"),
    ("clf-epochs-0", [*CLF, "--epochs", 0], "--epochs"),
    ("clf-batch-0", [*CLF, "--batch-size", 0], "--batch-size"),
    ("clf-p-2", [*CLF, "--p-generated", 2], "--p-generated must be a finite number in [0, 1]"),
    ("clf-p-neg", [*CLF, "--p-generated", -1], "--p-generated"),
    ("clf-p-conflict", [*CLF, "--p-generated", 0.1, "-o", "p_generated=0.9"], "disagree"),
    ("clf-lr-0", [*CLF, "--lr", 0], "--lr must be a finite number > 0"),
    ("clf-lr-neg", [*CLF, "--lr", -0.1], "--lr"),
    ("clf-lr-nan", [*CLF, "--lr", "nan"], "(got nan)"),
    ("clf-lr-inf", [*CLF, "--lr", "inf"], "(got inf)"),
    ("clf-wd-neg", [*CLF, "--weight-decay", -1], "--weight-decay must be a finite number >= 0"),
    ("clf-dropout", [*CLF, "--dropout", 1.5], "--dropout must be a finite number in [0, 1)"),
    ("clf-log-0", [*CLF, "--log-every", 0], "--log-every"),
    ("clf-ckpt-0", [*CLF, "--checkpoint-every", 0], "--checkpoint-every"),
    ("clf-ckpt-min-0", [*CLF, "--checkpoint-minutes", 0], "--checkpoint-minutes"),
    ("clf-seed-neg", [*CLF, "--seed", -1], "--seed must be a whole number from 0 to 4294967295"),
    ("clf-seed-huge", [*CLF, "--seed", "100000000000000000000000"], "--seed"),
    ("clf-spc-0", [*CLF, "--spc", 0], "--spc"),
    ("clf-one-class", [*CLF, "--data", "oneclass"], "at least 2 classes"),
    ("clf-run-json-list", [*CLF, "--out", "list-run"], "not a run description"),
    ("clf-run-json-broken", [*CLF, "--out", "broken-run"], "not a run description"),
    ("clf-generator-json-number", [*CLF, "--generator", "number-run"], "not a run description"),
    ("gen-steps-0", [*GEN, "--steps", 0], "--steps"),
    ("gen-epochs-0", [*GEN, "--epochs", 0], "--epochs"),
    ("gen-batch-0", [*GEN, "--batch-size", 0], "--batch-size"),
    ("gen-lr-neg", [*GEN, "--lr", -1], "--lr"),
    ("gen-ngf-0", [*GEN, "--ngf", 0], "--ngf"),
    ("gen-w-rec-neg", [*GEN, "--w-rec", -1], "--w-rec"),
    ("gen-seed-neg", [*GEN, "--seed", -1], "--seed"),
    ("gen-log-0", [*GEN, "--log-every", 0], "--log-every"),
    ("gen-ckpt-neg", [*GEN, "--checkpoint-every", -3], "--checkpoint-every"),
    ("gen-one-class", [*GEN, "--data", "oneclass"], "at least 2 classes"),
    ("gen-run-json-number-resume", [*GEN, "--out", "number-run", "--resume"], "not a run description"),
    ("exp-jobs-0", [*EXP, "--jobs", 0], "--jobs must be a whole number of at least 1"),
    ("exp-jobs-neg", [*EXP, "--jobs", -2], "(got -2)"),
    ("exp-gen-steps-0", [*EXP, "--gen-steps", 0], "--gen-steps"),
    ("exp-clf-steps-neg", [*EXP, "--clf-steps", -1], "--clf-steps"),
    ("exp-spc-0", [*EXP, "--spc", 0], "--spc"),
    ("exp-seed-huge", [*EXP[:-2], "--seeds", "0,5000000000"], "5000000000"),
    ("exp-out-readonly", [*EXP, "--out", "{ro}/table"], "cannot write"),
    ("report-out-readonly", ["report", "finished", "--out", "{ro}/table"], "cannot write"),
    ("report-result-list", ["report", "list-result"], "not a run result"),
    ("clf-batch-huge", [*CLF, "--batch-size", 10**9], "lower --batch-size"),
    ("clf-out-name-too-long", [*CLF, "--out", "x" * 300], "more than the 255 its file system allows"),
    ("clf-out-parent-too-long", [*CLF, "--out", "x" * 300 + "/run"], "choose a shorter --out"),
    ("gen-checkpoints-too-long", [*GEN, "--checkpoints", "c" * 300], "give a shorter --checkpoints"),
    ("clf-default-name-too-long", [*CLF, "--data", "d" * 250], "the run folder: the name 'clf-dddd"),
    ("clf-class-with-newline", [*CLF, "--data", "newline", "--spc", 3], r"class 'line\nbreak'"),
    ("exp-out-prefix-too-long", [*EXP, "--out-prefix", "t" * 252], "temporary name chimeramix makes beside it"),
    ("report-out-too-long", ["report", "finished", "--out", "r" * 300], "--out-prefix: the name 'rrrr"),
    ("report-result-no-label", ["report", "no-label"], "field 'label' is missing"),
]


@pytest.mark.parametrize("args,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused_in_one_line_before_anything_is_written(place, tmp_path, args, words):
    before = tree(tmp_path)
    r = invoke([str(a).format(**place) for a in args])
    lines = error_lines(r)
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr
    assert "Traceback" not in r.output
    assert tree(tmp_path) == before  # no run folder, no checkpoints/ root, no split.json, no table
    assert not place["ro"].exists() or not any(place["ro"].iterdir())


def test_a_second_process_on_a_live_run_is_refused_then_sigterm_leaves_a_resumable_run(tmp_path, monkeypatch):
    """Process A trains; this test process (B) tries the same folder three ways; A gets SIGTERM; --resume ends it."""
    monkeypatch.chdir(tmp_path)
    steps = 12
    # the preset's network (experiment sets only the steps of a generator), so that experiment names the same run
    args = ["fit-generator", *SMALL, "--mask", "grid", "--log-every", "1", "--steps", steps]
    a = cli_process(args, tmp_path)
    run = tmp_path / "ck" / f"gen-digits-spc2-seed0-grid-fast-c{tag_of('generator', steps=steps)}"
    metrics = run / "metrics.jsonl"
    with reaped(a):
        wait_until(a, lambda: metrics.is_file() and metrics.read_text().strip(), "process A did not start training",
                   poll=0.01)
        # A is frozen mid-run (it keeps its lock, as a busy process would) so B's attempts need no race with its steps
        os.kill(a.pid, signal.SIGSTOP)
        holder = json.loads((run / "run.lock").read_text())
        assert holder["pid"] == a.pid and holder["host"] == socket.gethostname()
        logged = metrics.read_text()

        for b in (args, [*args, "--resume"], [*args, "--force"],
                  ["experiment", *SMALL, "--seeds", "0", "--preset", "fast", "--mask", "grid", "--methods", "chimeramix",
                   "--gen-steps", steps]):
            r = invoke(b)
            lines = error_lines(r)
            assert r.exit_code == 2, r.output
            assert len(lines) == 1 and f"in use by pid {a.pid} on {socket.gethostname()} since" in lines[0], r.stderr
        assert metrics.read_text() == logged  # B trained nothing
        assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [run.name]  # and started nothing

        os.kill(a.pid, signal.SIGTERM)
        os.kill(a.pid, signal.SIGCONT)
        _, err = a.communicate(timeout=120)
    assert a.returncode == 143, err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert "terminated (SIGTERM) at step" in last and "--resume" in last and "Traceback" not in err
    info = json.loads((run / "run.json").read_text())
    stopped = info["step"]
    assert info["status"] == "running" and 0 < stopped < steps and info["checkpoint_step"] == stopped
    assert (run / "state.safetensors").is_file() and not (run / "run.lock").exists()

    r = invoke([*args, "--resume"])
    assert r.exit_code == 0, r.output
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == steps
    assert [json.loads(ln)["step"] for ln in metrics.read_text().splitlines()] == list(range(1, steps + 1))
    assert not (run / "run.lock").exists() and not (run / "state.safetensors").exists()


def test_sigterm_to_experiment_with_jobs_stops_its_workers_with_checkpoints_and_starts_no_queued_seed(tmp_path):
    """SIGTERM reaches only the parent of `experiment --jobs 2`: it must stop the workers' runs (checkpointed,
    unlocked) and not let a worker go on with the queued seed, instead of waiting for every seed to finish."""
    args = ["experiment", "--data", "digits", "--spc", "2", "--seeds", "0-2", "--methods", "none", "--preset", "fast",
            "--clf-steps", 5000, "--jobs", 2, "--device", "cpu", "--checkpoints", "ck"]
    a = cli_process(args, tmp_path)
    tag = tag_of("classifier", steps=5000)
    runs = [tmp_path / "ck" / f"clf-digits-spc2-seed{s}-none-fast-c{tag}" for s in range(3)]
    with reaped(a):
        wait_until(a, lambda: all((r / "metrics.jsonl").is_file() and (r / "metrics.jsonl").read_text().strip()
                                  for r in runs[:2]), "the two workers did not start training")
        os.kill(a.pid, signal.SIGTERM)
        _, err = a.communicate(timeout=120)
    assert a.returncode == 143, err
    assert "Traceback" not in err
    for r in runs[:2]:
        info = json.loads((r / "run.json").read_text())
        assert info["status"] == "running" and 0 < info["checkpoint_step"] == info["step"] < 5000, info
        assert (r / "state.safetensors").is_file() and not (r / "run.lock").exists()
    assert not runs[2].exists()  # the queued seed never started
    logged = [(r / "metrics.jsonl").read_text() for r in runs[:2]]
    time.sleep(1.5)
    assert [(r / "metrics.jsonl").read_text() for r in runs[:2]] == logged  # nobody trains on


def test_stale_lock_of_a_dead_process_is_taken_over_and_another_hosts_lock_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "since": "2020-01-01T00:00:00"}
    (run / "run.lock").write_text(json.dumps(stale))
    # what a start killed before its first checkpoint leaves: run.json (written first) and split.json
    (run / "run.json").write_text(json.dumps({"kind": "generator", "status": "running", "config": {}, "step": 0}))
    (run / "split.json").write_text("{}")
    args = ["fit-generator", *SMALL, *TINY_GEN, "--steps", 2, "--out", run]
    r = invoke(args)
    assert r.exit_code == 0, r.output
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert not (run / "run.lock").exists()

    other = tmp_path / "other"
    other.mkdir()
    lock = {"pid": os.getpid(), "host": "node-17.cluster", "since": "2020-01-01T00:00:00"}
    (other / "run.lock").write_text(json.dumps(lock))
    r = invoke([*args[:-1], other])
    lines = error_lines(r)
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert f"in use by pid {os.getpid()} on node-17.cluster" in lines[0] and f"delete {other / 'run.lock'}" in lines[0]
    assert sorted(p.name for p in other.iterdir()) == ["run.lock"]


RACER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from chimeramix.errors import ChimeraMixError
from chimeramix.lock import RunLock
go = sys.argv[3]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
lock = RunLock(sys.argv[2])
try:
    lock.acquire()
except ChimeraMixError as e:
    print("lost", e)
    sys.exit(0)
print("won")
time.sleep(1.0)  # hold it while the others try
lock.release()
"""


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_processes_racing_for_one_folder_get_it_exactly_once(tmp_path, stale):
    folder = tmp_path / "run"
    folder.mkdir()
    if stale:  # racing to take over a dead process's lock
        (folder / "run.lock").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "since": "x"}))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(ROOT), str(folder), str(go)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    assert all(p.stdout.readline().strip() == "ready" for p in procs)  # all at the line before the start
    go.write_text("")
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.startswith("won") for o in outs) == 1, outs
    assert all(o.startswith(("won", "lost")) for o in outs), outs
    assert sorted(p.name for p in folder.iterdir()) == []  # the winner released it; no takeover guard left


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    import torch

    from chimeramix.checkpoint import save_tensors
    from chimeramix.fileio import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        save_tensors(tmp_path / "w.safetensors", {"w": torch.zeros(2)})  # safetensors makes its own file: 0600 before
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640


class _StopOnMessage(Progress):
    """Ctrl-C at the stage's first message, after the run folder is made and before run.json is written."""

    def message(self, text):
        raise KeyboardInterrupt


class _CheckpointSeen(Progress):
    """Records, at each log point, the step of the checkpoint in run.json (written before the next log point)."""

    def __init__(self, run):
        self.run, self.seen = run, {}

    def update(self, task, completed, metrics=None):
        info = json.loads((self.run / "run.json").read_text())
        self.seen[completed] = info.get("checkpoint_step")


def test_a_run_stopped_before_run_json_leaves_no_folder_and_the_rerun_is_not_refused(tmp_path):
    from chimeramix.config import GeneratorConfig, make_config
    from chimeramix.train.generator import fit_generator

    cfg = make_config(GeneratorConfig, "fast", data="digits", spc=2, device="cpu", mask="grid", ngf=4, ndf=4, batch_size=2,
                      steps=2, log_every=1, out=str(tmp_path / "runs" / "g"))
    with pytest.raises(KeyboardInterrupt):
        fit_generator(cfg, progress=_StopOnMessage())
    assert not (tmp_path / "runs").exists()  # the folders made for the run went with it
    (tmp_path / "runs" / "g").mkdir(parents=True)
    (tmp_path / "runs" / "g" / "split.json").write_text("{}")  # what such a stop used to leave (before run.json came first)
    for force in (False, True):  # without run.json nothing proves it ours: refused, with the way out
        with pytest.raises(ChimeraMixError, match="holds split.json but no run.json.*delete it"):
            fit_generator(cfg, force=force)
    assert (tmp_path / "runs" / "g" / "split.json").is_file()
    shutil.rmtree(tmp_path / "runs" / "g")  # the advice, followed
    assert fit_generator(cfg).steps == 2


def test_checkpoints_come_by_minutes_too_and_by_default_twice_a_fast_run():
    from chimeramix.config import CLASSIFIER_PRESETS, GENERATOR_PRESETS, ClassifierConfig, GeneratorConfig

    assert ClassifierConfig().checkpoint_every <= CLASSIFIER_PRESETS["fast"]["steps"] // 2
    assert GeneratorConfig().checkpoint_every <= GENERATOR_PRESETS["fast"]["steps"] // 2


def test_an_overdue_checkpoint_is_saved_at_the_next_log_point(tmp_path):
    from chimeramix.config import GeneratorConfig, make_config
    from chimeramix.train.generator import fit_generator

    run = tmp_path / "g"
    cfg = make_config(GeneratorConfig, "fast", data="digits", spc=2, device="cpu", mask="grid", ngf=4, ndf=4, batch_size=2,
                      steps=4, log_every=1, checkpoint_every=1000, checkpoint_minutes=1e-9, out=str(run))
    seen = _CheckpointSeen(run)
    fit_generator(cfg, progress=seen)
    assert seen.seen == {1: None, 2: 1, 3: 2, 4: 3}  # by time, never by step count (1000)


def test_p_generated_is_given_once_and_recorded_as_used():
    from chimeramix.config import ClassifierConfig, make_config, resolve_classifier
    from chimeramix.errors import ChimeraMixError

    def resolved(**kw):
        return resolve_classifier(make_config(ClassifierConfig, "fast", method="gridmix", **kw), 32, 20).p_generated

    assert resolved() == 0.5
    assert resolved(p_generated=0.1) == 0.1
    assert resolved(method_options={"p_generated": 0.9}) == 0.9  # run.json's config now holds the value used
    assert resolved(p_generated=0.9, method_options={"p_generated": 0.9}) == 0.9
    with pytest.raises(ChimeraMixError, match="--p-generated 0.1 and -o p_generated=0.9 disagree"):
        resolved(p_generated=0.1, method_options={"p_generated": 0.9})


@pytest.mark.parametrize("source", ["digits", "folder"])
def test_an_image_size_that_cannot_fit_in_memory_is_refused_before_decoding(source, make_image_folder, tmp_path,
                                                                              monkeypatch):
    from chimeramix.data.imageset import available_memory

    assert available_memory() is not None  # Linux: the check is live here
    monkeypatch.chdir(tmp_path)
    data = "digits" if source == "digits" else str(make_image_folder(classes=("a", "b"), train=2, test=1, size=16))
    r = runner.invoke(app, ["fit-classifier", "--data", data, "--spc", "1", "--image-size", "200000", "--device", "cpu",
                            "--quiet", "--checkpoints", "ck"])
    lines = [ln for ln in (r.stderr or "").splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "GB of memory" in lines[0] and "--image-size" in lines[0], r.output
    assert not (tmp_path / "ck").exists()


def test_a_full_disk_is_one_line_not_a_traceback():
    """/dev/full answers every write with ENOSPC: a real disk-full error through the CLI's error boundary."""
    import typer

    from cli.app import one_line_errors

    app_full = typer.Typer()

    @app_full.command()
    @one_line_errors
    def write():
        with open("/dev/full", "w") as f:
            f.write("x" * 10)
            f.flush()

    r = CliRunner().invoke(app_full, [])
    lines = [ln for ln in (r.stderr or "").splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "disk is full" in lines[0] and "Traceback" not in r.output
