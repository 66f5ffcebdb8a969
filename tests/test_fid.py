"""fid: the Fréchet distance against closed forms, SET parsing, Inception weights, classifier features, the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chimeramix.augment import normalize
from chimeramix.config import ClassifierConfig, make_config
from chimeramix.data import open_source
from chimeramix.errors import ChimeraMixError
from chimeramix.fid import (
    CLASSIFIER_METRIC, INCEPTION_FILE, INCEPTION_URL, compare_image_sets, feature_statistics, frechet_distance,
    frechet_distance_of_features, inception_weights_path, load_classifier_embedding, load_inception, parse_set,
)
from chimeramix.train.classifier import fit_classifier
from cli.app import app

runner = CliRunner()


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in (r.output or ""), r.output
    return r


def _psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


# ---------------------------------------------------------------- the distance

def test_diagonal_gaussians_match_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # diagonal covariances commute: (S1 S2)^(1/2) is elementwise sqrt(v1 v2)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert expected == pytest.approx(1 + 6.25 + (1 + 9 - 6) + (4 + 1 - 4) + 0)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)
    # one dimension: the 2-Wasserstein distance of normals, (m1 - m2)^2 + (sd1 - sd2)^2
    assert frechet_distance([0.5], [[4.0]], [2.0], [[0.25]]) == pytest.approx(1.5 ** 2 + 1.5 ** 2)


def test_non_diagonal_gaussians_match_an_independent_route():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    # Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2): a symmetric PSD matrix, rooted by eigh (no sqrtm)
    r1 = _psd_sqrt(s1)
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_zero_for_itself_symmetric_and_finite_when_rank_deficient():
    rng = np.random.default_rng(0)
    f, g = rng.normal(size=(400, 16)), rng.normal(size=(300, 16)) * 1.5 + 0.3
    sf, sg = feature_statistics(f), feature_statistics(g)
    assert abs(frechet_distance(*sf, *sf)) < 1e-6
    assert frechet_distance(*sf, *sg) == pytest.approx(frechet_distance(*sg, *sf), rel=1e-9)
    assert frechet_distance(*sf, *sg) > 1.0
    # fewer samples than dimensions: singular covariances still give a finite, near-zero self distance
    few = feature_statistics(rng.normal(size=(10, 64)))
    assert abs(frechet_distance(*few, *few)) < 1e-4
    assert np.isfinite(frechet_distance(*few, *feature_statistics(rng.normal(size=(10, 64)))))
    with pytest.raises(ChimeraMixError, match="NaN or inf"):
        frechet_distance(*sf, sg[0], np.full((16, 16), np.nan))


def test_low_rank_route_agrees_with_sqrtm():
    rng = np.random.default_rng(1)
    f, g = rng.normal(size=(12, 40)), rng.normal(size=(30, 40)) * 0.7 + 0.2  # both fewer than 40: the eigvalsh route
    direct = frechet_distance(*feature_statistics(f), *feature_statistics(g))
    assert frechet_distance_of_features(f, g) == pytest.approx(direct, rel=1e-6)
    assert frechet_distance_of_features(g, f) == pytest.approx(direct, rel=1e-6)
    assert abs(frechet_distance_of_features(f, f)) < 1e-6  # sqrt of roundoff-sized eigenvalues: ~1e-8 each
    h, k = rng.normal(size=(60, 40)), rng.normal(size=(50, 40)) + 0.1  # enough images: the sqrtm route itself
    assert frechet_distance_of_features(h, k) == frechet_distance(*feature_statistics(h), *feature_statistics(k))


# ---------------------------------------------------------------- SET syntax

def test_set_syntax_and_refusals(make_image_folder, tmp_path, write_image):
    root = make_image_folder(classes=("a", "b"), train=2, test=1, size=8)
    assert len(parse_set(str(root / "train"))) == 4  # recursive: train/a/*, train/b/*
    assert len(parse_set(f"{root}:test")) == 2 and len(parse_set("digits:test")) == 797
    write_image(tmp_path / "loose" / "deep" / "x.JPG", np.zeros((5, 7, 3), np.uint8))
    (tmp_path / "loose" / "notes.txt").write_text("not an image")
    loose = parse_set(str(tmp_path / "loose"))
    assert [b[0].shape for b in loose.batches(2)] == [(3, 5, 7)]
    refusals = {
        str(root): "name one split",
        "digits": "needs a split: digits:train or digits:test",
        "digits:val": "unknown split 'val'",
        f"{root}:valid": "unknown split 'valid'",
        "no-such-thing": "neither an existing folder nor SOURCE:SPLIT",
        str(root / "train" / "a" / "000.png"): "is a file, not a folder",
    }
    for spec, message in refusals.items():
        with pytest.raises(ChimeraMixError, match=message):
            parse_set(spec)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ChimeraMixError, match="has no images"):
        parse_set(str(tmp_path / "empty"))


def test_cli_refuses_bad_sets_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in ((["digits", "digits:test"], "SET digits needs a split"),
                          (["digits:test", tmp_path / "empty"], f"REFERENCE {tmp_path / 'empty'} has no images"),
                          (["digits:test", "digits:train", "--features", "vgg"], "unknown --features 'vgg'")):
        r = invoke("fid", *args, "--device", "cpu")
        assert r.exit_code == 2, r.output
        assert message in r.output and len(r.output.strip().splitlines()) == 1, r.output


# ---------------------------------------------------------------- Inception weights

@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A randomly initialised torchvision Inception-v3 saved as a state_dict: the real loading path, offline."""
    from torchvision.models import inception_v3

    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return path


def test_missing_weights_name_the_file_url_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    r = invoke("fid", "digits:test", "digits:train", "--device", "cpu")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert INCEPTION_FILE in lines[0] and INCEPTION_URL in lines[0] and "--weights" in lines[0]
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in lines[0]
    r = invoke("fid", "digits:test", "digits:train", "--weights", tmp_path / "nope.pth")
    assert r.exit_code == 2 and "is not a file" in r.output


def test_weights_found_in_the_hub_cache(tmp_path, monkeypatch, random_inception):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / INCEPTION_FILE).symlink_to(random_inception)
    assert inception_weights_path() == cache / INCEPTION_FILE


def test_weights_in_other_formats_are_refused(tmp_path, random_inception):
    fid_style = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3), "fc.weight": torch.zeros(1008, 2048)}, fid_style)
    with pytest.raises(ChimeraMixError, match="only torchvision's format is supported"):
        load_inception(fid_style)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, other)
    with pytest.raises(ChimeraMixError, match="not a torchvision Inception-v3 state_dict"):
        load_inception(other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ChimeraMixError, match="cannot read"):
        load_inception(junk)
    assert isinstance(load_inception(random_inception).fc, torch.nn.Identity)


def test_inception_fid_end_to_end_through_the_cli(make_image_folder, random_inception):
    root = make_image_folder(classes=("a", "b"), train=2, test=2, size=32)
    r = invoke("fid", root / "train", f"{root}:test", "--weights", random_inception, "--batch-size", 3, "--device", "cpu",
               "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert (res["metric"], res["features"], res["feature_dim"]) == ("FID", "inception", 2048)
    assert (res["set_size"], res["reference_size"]) == (4, 4)
    assert np.isfinite(res["distance"]) and res["distance"] >= -1e-6
    assert len(res["warnings"]) == 2 and "fewer than the 2048 feature dimensions" in res["warnings"][0]


# ---------------------------------------------------------------- classifier features

@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    cfg = make_config(ClassifierConfig, "fast", data="digits", spc=3, seed=0, device="cpu", arch="wrn16-2", batch_size=6,
                      steps=2, log_every=1, eval_batch=400)
    return fit_classifier(cfg, root=tmp_path_factory.mktemp("clf")).run_dir


def test_classifier_features_end_to_end(classifier_run, make_image_folder):
    root = make_image_folder(classes=("a", "b"), train=70, test=50, size=32, seed=1)
    r = invoke("fid", f"{root}:train", f"{root}:test", "--features", f"classifier:{classifier_run}", "--device", "cpu",
               "--batch-size", 64, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["metric"] == CLASSIFIER_METRIC and "FID" not in r.output
    assert (res["feature_dim"], res["set_size"], res["reference_size"]) == (128, 140, 100)
    assert len(res["warnings"]) == 1 and res["warnings"][0].startswith("REFERENCE has 100 images")
    # the same number from features computed here, straight from the run's network
    emb = load_classifier_embedding(classifier_run)
    src = open_source(str(root))
    with torch.no_grad():
        f = [emb.embed(normalize(src.load(s).images)).double().numpy() for s in ("train", "test")]
    assert res["distance"] == pytest.approx(frechet_distance(*feature_statistics(f[0]), *feature_statistics(f[1])), rel=1e-6)
    assert res["distance"] > 0

    same = compare_image_sets(f"{root}:train", str(root / "train"), features=f"classifier:{classifier_run}", device="cpu")
    assert abs(same.distance) < 1e-6 * np.trace(feature_statistics(f[0])[1])


def test_classifier_features_table_resizes_folders_and_warns(classifier_run, make_image_folder):
    root = make_image_folder(classes=("a", "b"), train=2, test=2, size=12)  # not the classifier's 32 px
    r = invoke("fid", root / "train", f"{root}:test", "--features", f"classifier:{classifier_run}", "--device", "cpu")
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())
    assert CLASSIFIER_METRIC in flat and "FID" not in flat
    assert "(4 images)" in flat and "classifier:" in flat
    assert "warning: SET has 4 images, fewer than the 128 feature dimensions" in flat
    r = invoke("fid", root / "train", "digits:test", "--features", f"classifier:{classifier_run}", "--weights", "x.pth")
    assert r.exit_code == 2 and "--weights is for --features inception only" in r.output


def test_unfinished_or_wrong_runs_are_refused(tmp_path, classifier_run):
    with pytest.raises(ChimeraMixError, match="not a classifier run"):
        load_classifier_embedding(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(classifier_run, broken)
    (broken / "classifier.safetensors").unlink()
    with pytest.raises(ChimeraMixError, match="finished but its weights.*run the fit-classifier command that trained it again"):
        load_classifier_embedding(broken)
