"""run_experiment as a library call: an interrupted chain, run again, ends where an uninterrupted one would."""

import json

import pytest
import torch

from chimeramix import checkpoint as ckpt
from chimeramix.experiment import run_experiment
from chimeramix.progress import Progress
from chimeramix.train.loop import RunInterrupted

KW = dict(preset="fast", masks=["grid"], methods="none,chimeramix", device="cpu",
          gen_options={"steps": 6, "ngf": 4, "ndf": 4, "batch_size": 4, "log_every": 1, "checkpoint_every": 2},
          clf_options={"steps": 6, "batch_size": 4, "log_every": 1, "checkpoint_every": 2})


class StopIn(Progress):
    """Ctrl-C in the middle of one stage (the first time only)."""

    def __init__(self, task, at):
        self.task, self.at, self.fired = task, at, False

    def update(self, task, completed, metrics=None):
        if task == self.task and completed == self.at and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


@pytest.fixture
def folder(make_image_folder):
    return str(make_image_folder(classes=("ant", "bee"), train=4, test=2, size=16))


@pytest.mark.parametrize("stage", ["generator", "classifier"])
def test_rerun_of_an_interrupted_experiment_resumes_it(folder, tmp_path, stage):
    full = run_experiment(folder, 2, [0], root=tmp_path / "full", **KW)
    stop = StopIn(stage, 4)
    with pytest.raises(RunInterrupted, match="run them again"):
        run_experiment(folder, 2, [0], root=tmp_path / "cut", progress=stop, **KW)
    unfinished = [json.loads(p.read_text()) for p in (tmp_path / "cut").glob("*/run.json")]
    assert any(i["status"] == "running" and i["step"] == 4 for i in unfinished)
    again = run_experiment(folder, 2, [0], root=tmp_path / "cut", progress=stop, **KW)  # no --resume, no --force
    assert [(r.method, r.accuracies) for r in again.rows] == [(r.method, r.accuracies) for r in full.rows]
    for a, b in zip(sorted(full.generator_runs), sorted(again.generator_runs)):
        wa, wb = (ckpt.load_tensors(f"{d}/generator.safetensors")[0] for d in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # what the resumed classifier logged matches the uninterrupted one line for line
    name = [p.name for p in (tmp_path / "full").glob("clf-*chimeramix*")][0]
    assert (tmp_path / "full" / name / "metrics.jsonl").read_text() == (tmp_path / "cut" / name / "metrics.jsonl").read_text()


def test_paper_preset_on_the_cpu_says_so_before_training(tmp_path):
    from chimeramix.errors import ChimeraMixError
    from chimeramix.experiment import run_experiment
    from chimeramix.progress import Progress

    class Messages(Progress):
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    p = Messages()
    # a bad option stops the run right after the warning, so nothing trains
    with pytest.raises(ChimeraMixError):
        run_experiment("digits", 2, [0], preset="paper", device="cpu", root=tmp_path, progress=p,
                       clf_options={"steps": 2}, jobs=0)
    assert p.lines == []  # the plan is checked first: a bad --jobs is refused before any message
    with pytest.raises(ChimeraMixError):
        run_experiment("nope-not-a-dataset", 2, [0], preset="paper", device="cpu", root=tmp_path, progress=p,
                       clf_options={"steps": 2})
    assert any("preset paper on the CPU" in line for line in p.lines)


def test_refusals_name_experiments_own_options(folder, tmp_path):
    from chimeramix.errors import ChimeraMixError

    with pytest.raises(ChimeraMixError, match="--methods ' , ' names no method"):
        run_experiment(folder, 2, [0], root=tmp_path / "ck", **{**KW, "methods": " , "})
    assert not (tmp_path / "ck").exists()
    run_experiment(folder, 2, [0], root=tmp_path / "ck", **{**KW, "methods": "none"})
    # another budget has a folder of its own now; another precision is one run's clash (--amp is not in the name)
    other = {**KW, "methods": "none", "clf_options": {**KW["clf_options"], "amp": "on"}}
    with pytest.raises(ChimeraMixError, match="trained in fp32; this one asks for bf16") as e:
        run_experiment(folder, 2, [0], root=tmp_path / "ck", **other)
    # experiment has no --out for runs: the folder they go in is --checkpoints'
    assert "choose another --checkpoints" in str(e.value) and "--out" not in str(e.value)
