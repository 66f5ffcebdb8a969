"""export: a generator's compositions as an image folder with a manifest, the source's test set beside them."""

import json

import numpy as np
import pytest
import torch
from conftest import ImageFolderFactory
from PIL import Image
from typer.testing import CliRunner

import chimeramix
from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config
from chimeramix.data import open_source
from chimeramix.errors import ChimeraMixError
from chimeramix.export import MANIFEST, export_dataset, regenerate_file
from chimeramix.progress import Progress
from chimeramix.train.classifier import fit_classifier
from chimeramix.train.generator import fit_generator
from chimeramix.train.loop import RunInterrupted
from cli.app import app

GEN = dict(spc=3, seed=0, device="cpu", ngf=4, ndf=4, batch_size=6, steps=4, log_every=2)
runner = CliRunner()


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory):
    """A tiny seg-mask generator on the embedded digits (named/embedded path: the test set is written as PNGs)."""
    root = tmp_path_factory.mktemp("gen")
    return fit_generator(make_config(GeneratorConfig, "fast", data="digits", mask="seg", **GEN), root=root).run_dir


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A tiny grid-mask generator on an image folder (folder path: the test files are copied)."""
    base = tmp_path_factory.mktemp("folder")
    data = ImageFolderFactory(base)(classes=("ant", "bee", "cat"), train=4, test=2, size=32)
    run = fit_generator(make_config(GeneratorConfig, "fast", data=str(data), mask="grid", **GEN), root=base / "ck").run_dir
    return data, run


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def train_files(out):
    return sorted(p.relative_to(out).as_posix() for p in (out / "train").rglob("*.png"))


def test_writes_n_per_class_with_a_complete_manifest(gen_run, tmp_path):
    r = export_dataset(gen_run, tmp_path / "ex", 4, device="cpu")
    assert (r.generated, r.real, r.test, r.already_finished) == (40, 0, 797, False)
    for c in range(10):
        assert sorted(p.name for p in (r.out / "train" / str(c)).iterdir()) == [f"gen_{k:05d}.png" for k in range(4)]
    assert read_png(r.out / "train/3/gen_00002.png").shape == (32, 32, 3)
    assert read_png(r.samples).shape[0] > 0

    m = json.loads(r.manifest.read_text())
    run = json.loads((gen_run / "run.json").read_text())
    split = json.loads((gen_run / "split.json").read_text())
    assert m["chimeramix"] == chimeramix.__version__ and m["seed"] == 0 and m["per_class"] == 4
    assert m["generator"]["run"] == str(gen_run.resolve()) and len(m["generator"]["sha256"]) == 64
    assert m["generator"]["fingerprint"] == run["config"]["fingerprint"] == split["fingerprint"]
    assert m["generator"]["split"] == {"source": "digits", "image_size": [32, 32], "spc": 3, "seed": 0,
                                       "fingerprint": split["fingerprint"]}
    assert (m["mask"]["mask"], m["mask"]["seg_mask"], m["mask"]["seg_view"]) == ("seg", "range", "classifier")
    assert m["counts"] == {"generated": 40, "real": 0, "test": 797} and m["device"] == "cpu"
    assert m["test"] == {"from": "decoded", "count": 797}

    # parents: same-class members of the generator's own subset, at their indices in the source's training set
    train = open_source("digits").load("train")
    subset = split["indices"]
    fs = m["mask"]["feature_size"]
    assert [e["file"] for e in m["files"]] == train_files(r.out)
    for e in m["files"]:
        assert e["kind"] == "generated" and {"draw_seed", "batch", "mask", "k"} <= set(e)
        (i1, i2), (s1, s2) = e["parents"]["train"], e["parents"]["subset"]
        assert subset[s1] == i1 and subset[s2] == i2
        assert int(train.labels[i1]) == int(train.labels[i2]) == e["label"] == int(e["class"])
        assert len(bytes.fromhex(e["mask"])) * 8 >= fs * fs
    # each member of a class is a first parent about equally often (4 draws over 3 members: 2/1/1)
    firsts = [e["parents"]["subset"][0] for e in m["files"] if e["label"] == 5]
    assert sorted(np.bincount(firsts, minlength=30)[np.bincount(firsts, minlength=30) > 0]) == [1, 1, 2]
    # the masks are real draws: not all equal, and not all one parent
    assert len({e["mask"] for e in m["files"]}) > 10
    assert 0 < np.mean([e["share_first"] for e in m["files"]]) < 1


def test_same_command_gives_byte_identical_pngs_and_each_file_regenerates(gen_run, tmp_path):
    a = export_dataset(gen_run, tmp_path / "a", 3, with_real=True, device="cpu")
    b = export_dataset(gen_run, tmp_path / "b", 3, with_real=True, device="cpu")
    files = train_files(a.out)
    assert files == train_files(b.out) and len(files) == 30 + 30
    tests = sorted(p.relative_to(a.out).as_posix() for p in (a.out / "test").rglob("*.png"))
    assert len(tests) == 797
    for f in files + tests:
        assert (a.out / f).read_bytes() == (b.out / f).read_bytes(), f
    ma, mb = (json.loads(x.manifest.read_text()) for x in (a, b))
    assert ma["files"] == mb["files"]

    for name in ("train/0/gen_00000.png", "train/9/gen_00002.png", files[-1]):
        img = regenerate_file(a.out, name)
        assert img.dtype == torch.uint8 and np.array_equal(img.permute(1, 2, 0).numpy(), read_png(a.out / name)), name
    with pytest.raises(ChimeraMixError, match="not a train file"):
        regenerate_file(a.out, "train/0/gen_99999.png")

    # a file's draw depends on (seed, class, k) only: a larger export starts with the same draws; another seed differs
    c = export_dataset(gen_run, tmp_path / "c", 5, device="cpu")
    mc = json.loads(c.manifest.read_text())
    keys = ("file", "parents", "draw_seed", "mask")
    gen_a = [{k: e[k] for k in keys} for e in ma["files"] if e["kind"] == "generated"]
    gen_c = [{k: e[k] for k in keys} for e in mc["files"] if e["k"] < 3]
    assert gen_a == gen_c
    d = export_dataset(gen_run, tmp_path / "d", 3, seed=1, device="cpu")
    md = json.loads(d.manifest.read_text())
    assert md["seed"] == 1 and [e["draw_seed"] for e in md["files"]] != [e["draw_seed"] for e in gen_a]


def test_seg_view_generator_segments_as_the_generator_run_did(gen_run, tmp_path):
    own = json.loads(export_dataset(gen_run, tmp_path / "own", 3, device="cpu").manifest.read_text())
    gen = json.loads(export_dataset(gen_run, tmp_path / "gen", 3, seg_view="generator", device="cpu").manifest.read_text())
    assert gen["mask"]["seg_view"] == "generator" and gen["request"]["seg_view"] == "generator"
    # digits are segmented at 64 px for the generator (32 px in the classifier view): more segments, other masks
    assert gen["mask"]["num_segments"] > own["mask"]["num_segments"]
    assert [e["mask"] for e in gen["files"]] != [e["mask"] for e in own["files"]]
    assert [e["parents"] for e in gen["files"]] == [e["parents"] for e in own["files"]]


def test_with_real_writes_the_subset_images(gen_run, tmp_path):
    r = export_dataset(gen_run, tmp_path / "ex", 1, with_real=True, device="cpu")
    assert (r.generated, r.real) == (10, 30)
    train = open_source("digits").load("train")
    indices = json.loads((gen_run / "split.json").read_text())["indices"]
    real = [e for e in json.loads(r.manifest.read_text())["files"] if e["kind"] == "real"]
    assert sorted(e["parents"]["train"][0] for e in real) == sorted(indices)
    for e in real:
        i = e["parents"]["train"][0]
        assert e["file"] == f"train/{int(train.labels[i])}/real_{i:05d}.png"
        assert np.array_equal(read_png(r.out / e["file"]), train.images[i].permute(1, 2, 0).numpy())


def test_export_loads_as_a_source_and_fit_classifier_trains_on_it(gen_run, tmp_path):
    r = export_dataset(gen_run, tmp_path / "ex", 2, with_real=True, device="cpu")
    src, orig = open_source(str(r.out)), open_source("digits")
    test, orig_test = src.load("test"), orig.load("test")
    assert src.classes() == orig_test.classes
    # same images and labels; the export's folder order is per class, the source's is interleaved
    assert torch.equal(test.labels, orig_test.labels.sort(stable=True).values)
    assert torch.equal(test.images, orig_test.images[orig_test.labels.argsort(stable=True)])
    assert src.load("train").class_counts() == [2 + 3] * 10

    res = fit_classifier(make_config(ClassifierConfig, "fast", data=str(r.out), spc=5, seed=0, device="cpu", arch="wrn16-2",
                                     batch_size=6, steps=2, log_every=1, eval_batch=400), root=tmp_path / "ck")
    assert res.result["test_size"] == 797 and 0 <= res.accuracy <= 1


def test_folder_source_copies_its_test_files(folder_run, tmp_path):
    data, run = folder_run
    r = export_dataset(run, tmp_path / "ex", 2, device="cpu")
    m = json.loads(r.manifest.read_text())
    assert m["test"] == {"from": "copied", "count": 6} and m["mask"]["mask"] == "grid" and m["mask"]["seg_view"] is None
    for c in ("ant", "bee", "cat"):
        src_files = sorted(p.name for p in (data / "test" / c).iterdir())
        assert sorted(p.name for p in (r.out / "test" / c).iterdir()) == src_files
        assert all((r.out / "test" / c / f).read_bytes() == (data / "test" / c / f).read_bytes() for f in src_files)
        assert sorted(p.name for p in (r.out / "train" / c).iterdir()) == ["gen_00000.png", "gen_00001.png"]
    assert open_source(str(r.out)).load("train").class_counts() == [2, 2, 2]
    assert regenerate_file(r.out, "train/bee/gen_00001.png").shape == (3, 32, 32)


def test_reuse_refuse_and_force(gen_run, tmp_path):
    out = tmp_path / "ex"
    first = export_dataset(gen_run, out, 1, device="cpu")
    before = (out / MANIFEST).read_bytes()
    again = export_dataset(gen_run, out, 1, device="cpu")
    assert again.already_finished and (again.generated, again.test) == (10, 797)
    assert (out / MANIFEST).read_bytes() == before
    with pytest.raises(ChimeraMixError, match=r"other settings.*per_class: 1 -> 2.*--force"):
        export_dataset(gen_run, out, 2, device="cpu")
    assert (out / MANIFEST).read_bytes() == before
    forced = export_dataset(gen_run, out, 2, device="cpu", force=True)
    assert not forced.already_finished and first.out == forced.out
    assert len(list((out / "train" / "0").iterdir())) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ex"]  # no temp or old folder left beside it

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(ChimeraMixError, match="not a chimeramix export"):
            export_dataset(gen_run, foreign, 1, device="cpu", force=force)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_interrupted_export_leaves_no_half_folder_and_its_leftovers_are_cleaned(gen_run, tmp_path):
    class StopMidway(Progress):
        def update(self, task, completed, metrics=None):
            if task == "export" and completed > 20:
                raise KeyboardInterrupt

    out = tmp_path / "ex"
    with pytest.raises(KeyboardInterrupt):
        export_dataset(gen_run, out, 3, device="cpu", progress=StopMidway())
    assert list(tmp_path.iterdir()) == []
    # a hard kill leaves the temp folder: the next export removes it
    left = tmp_path / ".ex.export-partial"
    (left / "train" / "0").mkdir(parents=True)
    (left / "train" / "0" / "gen_00000.png").write_bytes(b"half")
    r = export_dataset(gen_run, out, 1, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex"] and r.generated == 10


def test_refusals(gen_run, tmp_path):
    with pytest.raises(ChimeraMixError, match="--per-class must be at least 1"):
        export_dataset(gen_run, tmp_path / "ex", 0)
    with pytest.raises(ChimeraMixError, match="does not exist"):
        export_dataset(tmp_path / "nowhere", tmp_path / "ex", 2)
    with pytest.raises(ChimeraMixError, match="not a generator run"):
        export_dataset(tmp_path, tmp_path / "ex", 2)
    with pytest.raises(ChimeraMixError, match="unknown --seg-view"):
        export_dataset(gen_run, tmp_path / "ex", 2, seg_view="both")

    class StopAt2(Progress):
        def update(self, task, completed, metrics=None):
            if task == "generator" and completed == 2:
                raise KeyboardInterrupt

    unfinished = tmp_path / "gen-cut"
    with pytest.raises(RunInterrupted):
        fit_generator(make_config(GeneratorConfig, "fast", data="digits", mask="grid", out=str(unfinished),
                                  **{**GEN, "checkpoint_every": 2}), progress=StopAt2())
    with pytest.raises(ChimeraMixError, match="has not finished.*--resume"):
        export_dataset(unfinished, tmp_path / "ex", 2)
    assert not (tmp_path / "ex").exists()


def cli(*args):
    r = runner.invoke(app, ["export", *map(str, args)])
    assert "Traceback" not in (r.output or ""), r.output
    return r


def test_cli_exports_reuses_and_refuses_in_one_line(gen_run, tmp_path):
    out = tmp_path / "ex"
    r = cli("--generator", gen_run, "--per-class", 2, "--out", out, "--with-real", "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    assert "20 (2 per class)" in r.stdout and "manifest.json" in r.stdout
    m = json.loads((out / MANIFEST).read_text())
    assert m["counts"] == {"generated": 20, "real": 30, "test": 797} and m["request"]["with_real"] is True
    r = cli("--generator", gen_run, "--per-class", 2, "--out", out, "--with-real", "--device", "cpu", "--quiet")
    assert r.exit_code == 0 and "already finished" in r.stdout

    (tmp_path / "plain").mkdir()
    for args, words in (
        (["--generator", tmp_path / "nowhere", "--per-class", 2], "does not exist"),
        (["--generator", tmp_path / "plain", "--per-class", 2], "not a generator run"),
        (["--generator", gen_run, "--per-class", 0], "--per-class must be at least 1"),
        (["--generator", gen_run, "--per-class", 3, "--with-real"], "other settings"),
    ):
        r = cli(*args, "--out", out, "--device", "cpu", "--quiet")
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr


def test_help_documents_every_option_and_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    r = runner.invoke(app, ["export", "--help"], terminal_width=200)
    assert r.exit_code == 0
    for opt in ("--generator", "--per-class", "--out", "--with-real", "--seed", "--seg-view", "--data-dir", "--device",
                "--force", "--quiet"):
        assert opt in r.output
    flat = " ".join(r.output.split())  # help text wraps at the terminal's width
    for default in ("[default: classifier]", "[default: auto]", "[default: the generator run's seed]", "[default: off]",
                    "[default: the generator run's --data-dir"):
        assert default in flat, default
    assert flat.count("[required]") == 3


def test_python_api_is_the_cli_function():
    import chimeramix.export as E

    assert chimeramix.export_dataset is E.export_dataset and chimeramix.regenerate_file is E.regenerate_file
    assert "export_dataset" in chimeramix.__all__


def test_regenerate_refuses_a_generator_retrained_since(gen_run, folder_run, tmp_path):
    import shutil

    copy = tmp_path / "gen"
    shutil.copytree(gen_run, copy)
    r = export_dataset(copy, tmp_path / "ex", 1, device="cpu")
    assert regenerate_file(r.out, "train/4/gen_00000.png").shape == (3, 32, 32)
    shutil.copyfile(folder_run[1] / "generator.safetensors", copy / "generator.safetensors")  # other real weights
    with pytest.raises(ChimeraMixError, match="has changed since"):
        regenerate_file(r.out, "train/4/gen_00000.png")
    with pytest.raises(ChimeraMixError, match="not a chimeramix export"):
        regenerate_file(tmp_path, "train/4/gen_00000.png")
