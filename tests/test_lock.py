"""Locks held by Slurm jobs: the job id is recorded, and squeue (a stand-in on PATH here) decides whether it is gone."""

import json
import os
import stat

import pytest

from chimeramix.lock import RunLock, RunLocked, live_holder

OTHER = {"pid": 4321, "host": "node-17.cluster", "since": "2020-01-01T00:00:00", "job": "77"}


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """An squeue on PATH that answers what the test writes into `answer` (first line: exit code, then its output)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answer = tmp_path / "answer"
    script = bin_dir / "squeue"
    script.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path / "args"}"\ncode=$(head -n 1 "{answer}")\n'
                      f'tail -n +2 "{answer}" >&$((code == 0 ? 1 : 2))\nexit $code\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return answer


def locked(tmp_path, holder=OTHER):
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    (folder / "run.lock").write_text(json.dumps(holder))
    return folder


def test_a_lock_records_the_slurm_job_it_was_taken_in(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "5150")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    with RunLock(tmp_path):
        d = json.loads((tmp_path / "run.lock").read_text())
    assert d["job"] == "5150" and d["restart"] == 2 and d["pid"] == os.getpid()
    monkeypatch.delenv("SLURM_JOB_ID")
    with RunLock(tmp_path):
        assert json.loads((tmp_path / "run.lock").read_text())["job"] is None


@pytest.mark.parametrize("answer", ["0\n", "0\nCOMPLETED\n", "0\nTIMEOUT\n", "1\nslurm_load_jobs error: Invalid job id specified\n"],
                         ids=["gone", "completed", "timeout", "invalid"])
def test_a_lock_of_a_job_that_ended_is_taken_over(tmp_path, squeue, answer):
    squeue.write_text(answer)
    folder = locked(tmp_path)
    assert live_holder(folder) is None
    with RunLock(folder):
        assert json.loads((folder / "run.lock").read_text())["pid"] == os.getpid()
    assert (tmp_path / "args").read_text().split() == ["-h", "-j", "77", "-o", "%T"]


@pytest.mark.parametrize("answer", ["0\nRUNNING\n", "0\nPENDING\n", "1\nslurm_load_jobs error: Unable to contact slurm controller\n"],
                         ids=["running", "pending", "controller-down"])
def test_a_lock_of_a_live_or_unknown_job_stands(tmp_path, squeue, answer):
    squeue.write_text(answer)
    folder = locked(tmp_path)
    assert live_holder(folder).job == "77"
    with pytest.raises(RunLocked, match=r"in use by Slurm job 77, pid 4321 on node-17.cluster since .*: wait for it to "
                                        r"finish or cancel it \(scancel 77\)"):
        RunLock(folder).acquire()
    assert json.loads((folder / "run.lock").read_text()) == OTHER


def test_without_squeue_another_nodes_job_lock_stands(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    folder = locked(tmp_path)
    with pytest.raises(RunLocked, match="Slurm job 77"):
        RunLock(folder).acquire()


def test_a_requeued_job_takes_over_its_own_earlier_lock(tmp_path, squeue, monkeypatch):
    squeue.write_text("0\nRUNNING\n")  # the job is running: this very instance, after its requeue
    folder = locked(tmp_path, {**OTHER, "restart": 0})
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with RunLock(folder):
        assert json.loads((folder / "run.lock").read_text())["restart"] == 1
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # the same instance on another node (a multi-node job): not taken
    locked(tmp_path, {**OTHER, "restart": 0})
    with pytest.raises(RunLocked):
        RunLock(folder).acquire()


def test_a_held_lock_beats_and_an_old_heartbeat_is_stale_only_when_asked(tmp_path, monkeypatch):
    import time

    from chimeramix import lock as L

    monkeypatch.setattr(L, "HEARTBEAT_S", 0.05)
    (tmp_path / "mine").mkdir()
    with RunLock(tmp_path / "mine"):
        path = tmp_path / "mine" / "run.lock"
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        deadline = time.time() + 10
        while time.time() - path.stat().st_mtime > 60 and time.time() < deadline:
            time.sleep(0.05)
        assert time.time() - path.stat().st_mtime < 60  # touched again by the heartbeat
    assert not path.exists()

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no squeue: nothing else can decide on another host's lock
    noted = {"pid": 4321, "host": "login-2.cluster", "since": "2020-01-01T00:00:00"}
    folder = locked(tmp_path, noted)
    old = time.time() - 31 * 60
    os.utime(folder / "run.lock", (old, old))
    with pytest.raises(RunLocked, match="in use by pid 4321 on login-2.cluster"):
        RunLock(folder).acquire()  # without the setting an old heartbeat decides nothing
    monkeypatch.setenv("CHIMERAMIX_LOCK_STALE_MINUTES", "30")
    assert live_holder(folder) is None
    with RunLock(folder):
        assert json.loads((folder / "run.lock").read_text())["pid"] == os.getpid()
    folder = locked(tmp_path, {**noted, "job": "77"})  # fresh heartbeat: stands
    with pytest.raises(RunLocked):
        RunLock(folder).acquire()
