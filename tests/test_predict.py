"""predict: a trained run's labels for new images equal its own evaluation; bad input in one line; the CLI."""

import csv
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from chimeramix.config import ClassifierConfig, make_config
from chimeramix.errors import ChimeraMixError
from chimeramix.predict import find_images, load_classifier, predict_images
from chimeramix.report import classification_metrics
from chimeramix.train.classifier import fit_classifier
from cli.app import app

runner = CliRunner()
CLF = dict(spc=3, seed=0, device="cpu", arch="wrn16-2", batch_size=4, steps=4, log_every=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny runs on one 3-class folder: at its native 16 px, and brought to 8 px by --image-size."""
    from conftest import ImageFolderFactory

    base = tmp_path_factory.mktemp("predict")
    data = ImageFolderFactory(base)(classes=("ant", "bee", "cat"), train=4, test=5, size=16)
    runs = {}
    for name, size in (("native", None), ("resized", 8)):
        cfg = make_config(ClassifierConfig, "fast", data=str(data), image_size=size, out=str(base / name), **CLF)
        runs[name] = fit_classifier(cfg)
    return data, runs


def _true_label(path: str) -> str:
    from pathlib import Path

    return Path(path).parent.name


@pytest.mark.parametrize("which", ["native", "resized"])
def test_predicted_labels_equal_the_stage_evaluation(trained, which):
    data, runs = trained
    r = runs[which]
    res = predict_images(r.run_dir, [data / "test"], top_k=3, batch_size=4, device="cpu")
    assert len(res.predictions) == r.result["test_size"] == 15
    classes = r.result["classes"]
    pred = torch.tensor([classes.index(p.label) for p in res.predictions])
    true = torch.tensor([classes.index(_true_label(p.path)) for p in res.predictions])
    m = classification_metrics(pred, true, classes)
    # the stage's own evaluation, image by image: its confusion matrix must come out the same
    assert m["confusion"] == r.result["confusion"]
    assert m["accuracy"] == r.result["accuracy"]
    for p in res.predictions:
        assert sorted(p.labels) == sorted(classes)  # top 3 of 3 classes: each once
        assert p.probabilities == sorted(p.probabilities, reverse=True)
        assert sum(p.probabilities) == pytest.approx(1.0, abs=1e-5)


def test_load_classifier_knows_its_classes_and_size(trained):
    _, runs = trained
    clf = load_classifier(runs["resized"].run_dir, "cpu")
    assert clf.classes == ("ant", "bee", "cat") and clf.image_size == (8, 8) and clf.resize_rule == "pil"
    assert not clf.model.training
    assert clf.predict(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).shape == (2,)


def test_bad_input_is_refused_in_one_line(trained, tmp_path, write_image):
    import numpy as np

    data, runs = trained
    run = runs["native"].run_dir
    with pytest.raises(ChimeraMixError, match="does not exist"):
        predict_images(tmp_path / "nowhere", [data / "test"])
    with pytest.raises(ChimeraMixError, match="not a classifier run|not a chimeramix run"):
        predict_images(tmp_path, [data / "test"])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "running"}))
    with pytest.raises(ChimeraMixError, match="has not finished"):
        predict_images(unfinished, [data / "test"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChimeraMixError, match="has no images"):
        find_images([tmp_path / "empty"])
    with pytest.raises(ChimeraMixError, match="no images given"):
        find_images([])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ChimeraMixError, match="cannot read image"):
        predict_images(run, [bad], device="cpu")
    with pytest.raises(ChimeraMixError, match="--top-k 4 is more than"):
        predict_images(run, [data / "test"], top_k=4, device="cpu")
    ok = write_image(tmp_path / "one" / "x.png", np.zeros((16, 16, 3), np.uint8))
    out = tmp_path / "p.csv"
    out.write_text("keep me")
    with pytest.raises(ChimeraMixError, match="exists"):
        predict_images(run, [ok], out=out, device="cpu")
    assert out.read_text() == "keep me"


def test_cli_writes_csv_and_prints_the_table(trained, tmp_path):
    data, runs = trained
    run = runs["native"].run_dir
    out = tmp_path / "sub" / "preds.csv"
    r = runner.invoke(app, ["predict", str(run), str(data / "test" / "ant"), str(data / "test" / "bee" / "000.png"),
                            "--out", str(out), "--top-k", "2", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert [k for k in rows[0]] == ["path", "label", "probability", "label_2", "probability_2"]
    assert len(rows) == 6 and rows[-1]["path"].endswith("000.png")
    assert all(row["label"] in ("ant", "bee", "cat") and 0 <= float(row["probability"]) <= 1 for row in rows)
    assert "predictions (6 images)" in r.stdout and f"wrote {out}" in r.stdout.replace("\n", "")

    r = runner.invoke(app, ["predict", str(run), str(data / "test"), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert len(got["predictions"]) == 15 and got["top_k"] == 1 and got["csv"] is None

    r = runner.invoke(app, ["predict", str(tmp_path / "nowhere"), str(data / "test")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1


def test_a_named_source_is_resized_as_its_training_data_was(tmp_path, write_image):
    """digits (32 px) trained at --image-size 16: predict resizes PNGs of its test set with torch's antialiased
    bilinear, as the source resized the training and test sets, and gets the stage's own confusion matrix."""
    from chimeramix.data import open_source

    cfg = make_config(ClassifierConfig, "fast", data="digits", image_size=16, out=str(tmp_path / "run"), **CLF)
    r = fit_classifier(cfg)
    test = open_source("digits").load("test")
    for i, (img, y) in enumerate(zip(test.images, test.labels)):
        write_image(tmp_path / "png" / test.classes[int(y)] / f"{i:04d}.png", img.permute(1, 2, 0).numpy())
    assert load_classifier(r.run_dir, "cpu").resize_rule == "torch"
    res = predict_images(r.run_dir, [tmp_path / "png"], batch_size=256, device="cpu")
    classes = r.result["classes"]
    pred = torch.tensor([classes.index(p.label) for p in res.predictions])
    true = torch.tensor([classes.index(_true_label(p.path)) for p in res.predictions])
    assert classification_metrics(pred, true, classes)["confusion"] == r.result["confusion"]
