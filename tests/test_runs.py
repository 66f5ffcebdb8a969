import pytest

from chimeramix.errors import ChimeraMixError
from chimeramix.runs import config_diff, new_info, prepare


def _finish(path, config, kind="generator"):
    run = prepare(path, kind, config, resume=False, force=False)
    info = new_info(kind, config, {}, 10)
    info["status"] = "finished"
    run.write_info(info)
    return run


def test_config_diff_names_fields_and_ignores_runtime_ones():
    assert config_diff({"lr": 1, "device": "cpu"}, {"lr": 2, "device": "cuda"}, ignore=("device",)) == ["lr: 1 -> 2"]


def test_finished_run_is_reused_refused_or_forced(tmp_path):
    p = tmp_path / "run"
    _finish(p, {"lr": 1})
    assert prepare(p, "generator", {"lr": 1}, False, False).already_finished
    with pytest.raises(ChimeraMixError, match="another config.*lr: 1 -> 2.*--force"):
        prepare(p, "generator", {"lr": 2}, False, False)
    with pytest.raises(ChimeraMixError, match="holds a generator run"):
        prepare(p, "classifier", {"lr": 1}, False, False)
    fresh = prepare(p, "generator", {"lr": 2}, False, True)
    assert not fresh.already_finished and not any(p.iterdir())  # the old run was removed


def test_unfinished_and_foreign_folders(tmp_path):
    p = tmp_path / "run"
    run = prepare(p, "generator", {"lr": 1}, False, False)
    run.write_info(new_info("generator", {"lr": 1}, {}, 10))
    with pytest.raises(ChimeraMixError, match="unfinished.*--resume"):
        prepare(p, "generator", {"lr": 1}, False, False)
    # resumable only once a checkpoint exists; before that the folder starts over
    assert not prepare(p, "generator", {"lr": 1}, True, False).resumed
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ChimeraMixError, match="not a chimeramix run"):
        prepare(foreign, "generator", {}, False, False)
    with pytest.raises(ChimeraMixError, match="nothing to resume"):
        prepare(tmp_path / "empty", "generator", {}, True, False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_auto_resume_continues_unfinished_starts_fresh_and_still_refuses_foreign(tmp_path):
    assert not prepare(tmp_path / "new", "generator", {"lr": 1}, "auto", False).resumed  # nothing there: a new run
    p = tmp_path / "run"
    run = prepare(p, "generator", {"lr": 1}, False, False)
    run.write_info(new_info("generator", {"lr": 1}, {}, 10))
    (p / "state.safetensors").write_bytes(b"")
    assert prepare(p, "generator", {"lr": 1}, "auto", False).resumed
    with pytest.raises(ChimeraMixError, match="cannot resume.*lr: 1 -> 2"):
        prepare(p, "generator", {"lr": 2}, "auto", False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ChimeraMixError, match="not a chimeramix run"):
        prepare(foreign, "generator", {}, "auto", False)
