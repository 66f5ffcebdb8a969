import pytest
import torch

from chimeramix.checkpoint import save_tensors
from chimeramix.errors import ChimeraMixError
from chimeramix.runs import config_diff, finished_run, new_info, prepare


def _finish(path, config, kind="generator"):
    with prepare(path, kind, config, resume=False, force=False) as run:
        info = new_info(kind, config, {}, 10)
        info["status"] = "finished"
        save_tensors(run.file(f"{kind}.safetensors"), {"w": torch.zeros(3)})
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


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_finished_run_with_lost_weights_is_retrained_by_its_own_command(tmp_path, damage):
    p = tmp_path / "run"
    _finish(p, {"lr": 1})
    w = p / "generator.safetensors"
    if damage == "delete":
        w.unlink()
    else:
        w.write_bytes(w.read_bytes()[:20])
    # a reader is told to run the command that trained it ...
    with pytest.raises(ChimeraMixError, match="finished but its weights.*run the fit-generator command that trained it again"):
        finished_run(p, "generator")
    # ... and that command (same config, no --force) starts the run over instead of calling it finished
    with prepare(p, "generator", {"lr": 1}, False, False) as run:
        assert not run.already_finished and not run.resumed and not (p / "run.json").exists()


def test_force_never_removes_what_chimeramix_did_not_write(tmp_path):
    # a finished run: --force clears the run's own files, a note the user left in the folder stays
    p = tmp_path / "run"
    _finish(p, {"lr": 1})
    (p / "notes.txt").write_text("mine")
    with prepare(p, "generator", {"lr": 2}, False, True):
        assert sorted(f.name for f in p.iterdir()) == ["notes.txt", "run.lock"]
    assert (p / "notes.txt").read_text() == "mine"
    # a folder without run.json: a file that merely carries one of our names (report.md) is the owner's
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "report.md").write_text("chapter 1")
    for force in (False, True):
        with pytest.raises(ChimeraMixError, match="not a chimeramix run.*report.md") as e:
            prepare(mine, "classifier", {}, False, force)
        assert "--force" not in str(e.value)  # the advice never points at the option that would destroy it
    assert [f.name for f in mine.iterdir()] == ["report.md"] and (mine / "report.md").read_text() == "chapter 1"


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
    # what a kill -9 leaves before the first checkpoint: run.json (written first) and split.json; it starts over
    _unfinished(p, {"lr": 1}, checkpoint=False)
    (p / "split.json").write_text("{}")
    with prepare(p, "generator", {"lr": 1}, False, False) as run:
        assert not run.resumed and sorted(f.name for f in p.iterdir()) == ["run.lock"]
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


@pytest.mark.parametrize("edit,words", [
    (lambda i: i.pop("config"), "field 'config' is missing"),
    (lambda i: i.update(config=[1]), "field 'config' is a list, not an object"),
    (lambda i: i.update(step="4"), "field 'step' is a string, not a whole number"),
    (lambda i: i.update(status=None), "field 'status' is null, not a string"),
    (lambda i: i.update(kind=3), "field 'kind' is a whole number, not a string"),
])
def test_a_hand_edited_run_record_is_refused_naming_its_field(tmp_path, edit, words):
    import json

    from chimeramix.runs import read_run

    p = tmp_path / "run"
    _finish(p, {"lr": 1})
    info = json.loads((p / "run.json").read_text())
    edit(info)
    (p / "run.json").write_text(json.dumps(info))
    with pytest.raises(ChimeraMixError, match=f"run.json: {words}") as e:
        read_run(p, "generator")
    assert "\n" not in str(e.value)
    with pytest.raises(ChimeraMixError, match=words):
        prepare(p, "generator", {"lr": 1}, False, False)
    with prepare(p, "generator", {"lr": 1}, False, True) as run:  # the advice: --force starts over
        assert not run.already_finished
