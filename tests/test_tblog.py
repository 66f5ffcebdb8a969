"""TensorBoard event files (chimeramix/tblog.py), read back with tensorboard's own reader and checked against
metrics.jsonl and result.json: the same steps and values, nothing shown twice after a resume or a kill -9."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from conftest import ROOT  # noqa: E402

from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config  # noqa: E402
from chimeramix.errors import ChimeraMixError  # noqa: E402
from chimeramix.plots import read_metrics  # noqa: E402
from chimeramix.progress import Progress  # noqa: E402
from chimeramix.train.classifier import fit_classifier  # noqa: E402
from chimeramix.train.generator import fit_generator  # noqa: E402
from chimeramix.train.loop import RunInterrupted  # noqa: E402

GEN = dict(data="digits", spc=3, seed=0, device="cpu", ngf=4, ndf=4, batch_size=6, steps=8, log_every=2, tensorboard="on")
CLF = dict(data="digits", spc=3, seed=0, device="cpu", arch="wrn16-2", batch_size=6, steps=8, log_every=2, eval_batch=400,
           checkpoint_every=4, tensorboard="on")


def events(run):
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def scalars(ea, tag):
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def assert_matches_metrics(ea, run):
    rows = read_metrics(run / "metrics.jsonl")
    assert rows
    for key in (k for k in rows[0] if k != "step"):
        got = scalars(ea, f"train/{key}")
        assert [s for s, _ in got] == [r["step"] for r in rows], key  # every logged step once, in order
        assert [v for _, v in got] == pytest.approx([r[key] for r in rows], rel=1e-6), key


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "gen"
    fit_generator(make_config(GeneratorConfig, "fast", **GEN, mask="seg", sample_every=4, out=str(out)))
    return out


def test_a_generator_run_logs_its_losses_learning_rates_sample_grids_and_config(generator_run):
    ea = events(generator_run)
    assert_matches_metrics(ea, generator_run)
    # the learning rate of both optimizers at every log point; the fast preset's drops are at 30/60/80 %
    lr = scalars(ea, "lr/g")
    assert [s for s, _ in lr] == [2, 4, 6, 8] and lr[0][1] > lr[-1][1] > 0
    assert [s for s, _ in scalars(ea, "lr/d")] == [2, 4, 6, 8]
    # the grid of compositions during training and the finished generator's, as samples.png shows it
    images = ea.Images("samples")
    assert [i.step for i in images] == [4, 8]
    from PIL import Image

    with Image.open(generator_run / "samples.png") as png:
        assert (images[-1].width, images[-1].height) == png.size
    hp = ea.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hp)
    assert b"ngf" in hp["_hparams_/session_start_info"]  # the config's fields are the hyperparameters


def test_a_classifier_run_logs_its_test_accuracy_per_class_and_the_generated_share(tmp_path, generator_run):
    r = fit_classifier(make_config(ClassifierConfig, "fast", **CLF, method="chimeramix", generator=str(generator_run),
                                   out=str(tmp_path / "clf")))
    ea = events(r.run_dir)
    assert_matches_metrics(ea, r.run_dir)  # train/loss and train/generated, the interval means
    assert [s for s, _ in scalars(ea, "lr/sgd")] == [2, 4, 6, 8]
    result = json.loads((r.run_dir / "result.json").read_text())
    assert scalars(ea, "test/accuracy") == [(8, pytest.approx(result["accuracy"]))]
    assert scalars(ea, "test/mean_class_accuracy") == [(8, pytest.approx(result["mean_class_accuracy"]))]
    for c in result["per_class"]:
        assert scalars(ea, f"test/class/{c['class']}") == [(8, pytest.approx(c["recall"]))]


def test_a_resumed_run_continues_its_curves_without_showing_a_step_twice(tmp_path):
    class StopAt(Progress):
        def update(self, task, completed, metrics=None):
            if completed == 6:
                raise KeyboardInterrupt

    cfg = make_config(ClassifierConfig, "fast", **CLF, out=str(tmp_path / "clf"))
    with pytest.raises(RunInterrupted):
        fit_classifier(cfg, progress=StopAt())
    r = fit_classifier(cfg, resume=True)
    ea = events(r.run_dir)
    assert len(list(r.run_dir.glob("events.out.tfevents.*"))) == 2  # one file per process, read as one run
    assert_matches_metrics(ea, r.run_dir)


def test_after_a_kill_9_the_steps_past_the_checkpoint_are_shown_once(tmp_path):
    # the process is killed by SIGKILL right after logging step 6; its last checkpoint is step 4, so steps 5-6 are
    # in metrics.jsonl and the event file, and the resumed run trains and logs them again
    out = tmp_path / "clf"
    code = f"""
import os, signal
from chimeramix.config import ClassifierConfig, make_config
from chimeramix.progress import Progress
from chimeramix.train.classifier import fit_classifier
class Kill(Progress):
    def update(self, task, completed, metrics=None):
        if completed == 6 and metrics:
            os.kill(os.getpid(), signal.SIGKILL)
fit_classifier(make_config(ClassifierConfig, "fast", **{CLF!r}, out={str(out)!r}), progress=Kill())
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -9, p.stderr
    before = scalars(events(out), "train/loss")
    assert [s for s, _ in before] == [2, 4, 6]  # the killed process had logged step 6
    assert json.loads((out / "run.json").read_text())["checkpoint_step"] == 4
    r = fit_classifier(make_config(ClassifierConfig, "fast", **CLF, out=str(out)), resume=True)
    ea = events(r.run_dir)
    assert_matches_metrics(ea, r.run_dir)
    assert [s for s, _ in scalars(ea, "train/loss")] == [2, 4, 6, 8]


def test_no_tensorboard_writes_no_event_files_and_a_forced_restart_drops_the_old_ones(tmp_path):
    cfg = dict(CLF, steps=2, out=str(tmp_path / "clf"))
    r = fit_classifier(make_config(ClassifierConfig, "fast", **{**cfg, "tensorboard": "off"}))
    assert not list(r.run_dir.glob("events.out.tfevents.*"))
    fit_classifier(make_config(ClassifierConfig, "fast", **cfg), force=True)
    fit_classifier(make_config(ClassifierConfig, "fast", **{**cfg, "steps": 4}), force=True)
    ea = events(r.run_dir)
    assert len(list(r.run_dir.glob("events.out.tfevents.*"))) == 1  # the 2-step run's curves went with it
    assert [s for s, _ in scalars(ea, "train/loss")] == [2, 4]


def test_tensorboard_without_the_package_is_one_line_naming_the_extra_and_leaves_nothing(tmp_path):
    with pytest.raises(ChimeraMixError, match="unknown --tensorboard setting 'yes'"):
        make_config(ClassifierConfig, "fast", **{**CLF, "tensorboard": "yes"})
    # the real command line in a Python that cannot import tensorboard (sys.modules None: as if not installed)
    code = ("import sys; sys.modules['tensorboard'] = None; from cli.app import main; "
            f"sys.argv = ['chimeramix', 'fit-classifier', '--steps', '2', '--tensorboard', '--out', {str(tmp_path / 'r')!r}, "
            "'--quiet']; main()")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "chimeramix[tensorboard]" in lines[0] and "--no-tensorboard" in lines[0]
    assert not (tmp_path / "r").exists()
    # and without --tensorboard the same Python trains, writing no event files
    p = subprocess.run([sys.executable, "-c", code.replace("'--tensorboard', ", "")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / "result.json").is_file() and not list((tmp_path / "r").glob("events.out.tfevents.*"))
