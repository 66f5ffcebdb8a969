import pytest

from chimeramix.errors import ChimeraMixError
from chimeramix.runs import config_diff, new_info, prepare


def _finish(path, config, kind="generator"):
    with prepare(path, kind, config, resume=False, force=False) as run:
        info = new_info(kind, config, {}, 10)
        info["status"] = "finished"
        run.write_info(info)


def _unfinished(path, config, checkpoint=True):
    """A run stopped at step 4 of 10; with its checkpoint, or (checkpoint=False) before its first one."""
    with prepare(path, "generator", config, False, True) as run:
        run.write_info({**new_info("generator", config, {}, 10), "step": 4 if checkpoint else 0})
        if checkpoint:
            run.file("state.safetensors").write_bytes(b"")


def test_config_diff_names_fields_and_ignores_runtime_ones():
    assert config_diff({"lr": 1, "device": "cpu"}, {"lr": 2, "device": "cuda"}, ignore=("device",)) == ["lr: 1 -> 2"]


def test_finished_run_is_reused_refused_or_forced(tmp_path):
    p = tmp_path / "run"
    _finish(p, {"lr": 1})
    with prepare(p, "generator", {"lr": 1}, False, False) as run:
        assert run.already_finished
    with pytest.raises(ChimeraMixError, match="another config.*lr: 1 -> 2.*--force"):
        prepare(p, "generator", {"lr": 2}, False, False)
    with pytest.raises(ChimeraMixError, match="holds a generator run"):
        prepare(p, "classifier", {"lr": 1}, False, False)
    with prepare(p, "generator", {"lr": 2}, False, True) as fresh:
        assert not fresh.already_finished and [f.name for f in p.iterdir()] == ["run.lock"]  # the old run was removed
    assert not any(p.iterdir())  # and the lock went with the run


def test_unfinished_and_foreign_folders(tmp_path):
    p = tmp_path / "run"
    _unfinished(p, {"lr": 1})
    with pytest.raises(ChimeraMixError, match="unfinished.*step 4 of 10.*--resume"):
        prepare(p, "generator", {"lr": 1}, False, False)
    # resumable only once a checkpoint exists; before that the folder starts over, with or without --resume
    for resume in (True, False):
        _unfinished(p, {"lr": 1}, checkpoint=False)
        with prepare(p, "generator", {"lr": 2}, resume, False) as run:
            assert not run.resumed and not run.file("run.json").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ChimeraMixError, match="not a chimeramix run"):
        prepare(foreign, "generator", {}, False, False)
    with pytest.raises(ChimeraMixError, match="nothing to resume"):
        prepare(tmp_path / "empty", "generator", {}, True, False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_auto_resume_continues_unfinished_starts_fresh_and_still_refuses_foreign(tmp_path):
    with prepare(tmp_path / "new", "generator", {"lr": 1}, "auto", False) as run:
        assert not run.resumed  # nothing there: a new run
    p = tmp_path / "run"
    _unfinished(p, {"lr": 1})
    with prepare(p, "generator", {"lr": 1}, "auto", False) as run:
        assert run.resumed
    with pytest.raises(ChimeraMixError, match="cannot resume.*lr: 1 -> 2"):
        prepare(p, "generator", {"lr": 2}, "auto", False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ChimeraMixError, match="not a chimeramix run"):
        prepare(foreign, "generator", {}, "auto", False)
