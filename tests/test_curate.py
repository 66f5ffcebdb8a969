"""curate: iterative diversity sampling; the selection on plain embeddings, then the whole folder on tiny runs."""

import inspect
import json
import re

import numpy as np
import pytest
import torch
from conftest import ImageFolderFactory
from PIL import Image
from typer.testing import CliRunner

import chimeramix
from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config
from chimeramix.curate import class_budgets, classical_augment, curate_dataset, iterative_selection, mean_nn_distance
from chimeramix.errors import ChimeraMixError
from chimeramix.export import export_dataset
from chimeramix.fileio import read_json, write_json
from chimeramix.progress import Progress
from chimeramix.train.classifier import fit_classifier
from chimeramix.train.generator import fit_generator
from cli.app import app

runner = CliRunner()


# ---------------------------------------------------------------- selection on plain tensors

def spread(n, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 10


def test_planted_near_duplicates_in_the_pool_are_removed_first():
    # class 0: 3 real rows, 9 pool rows; pool rows 3/4 and 5/6 are near-duplicates of each other, row 7 of real row 0
    emb = spread(12)
    emb[4] = emb[3] + 1e-3
    emb[6] = emb[5] + 2e-3
    emb[7] = emb[0] + 3e-3
    emb[8:] = spread(4, seed=1) * 3  # far candidates for the replacements
    labels = torch.zeros(12, dtype=torch.long)
    real = torch.tensor([True] * 3 + [False] * 9)
    sel = iterative_selection(emb, labels, real, [8], k=3, iterations=1, tries=4, seed=0, initial=[3, 4, 5, 6, 7])
    assert sel.initial == [3, 4, 5, 6, 7]
    first = [s for s in sel.swaps if s["iteration"] == 1]
    assert len(first) == 3
    removed = {s["removed"] for s in first}
    # one of each planted pair, and of the pair with a real image the pool copy (a real image is never dropped)
    assert len(removed & {3, 4}) == 1 and len(removed & {5, 6}) == 1 and 7 in removed
    assert {s["partner"] for s in first} == ({3, 4, 5, 6} - removed) | {0}
    assert {s["added"] for s in first} <= set(range(8, 12))
    assert {0, 1, 2} <= set(sel.selected) and len(sel.selected) == 8
    assert sel.history[1] > 5 * sel.history[0]  # 6 of 8 rows had a neighbour at ~0: the mean jumps


def test_mean_nn_distance_never_falls_and_the_budget_and_real_rows_hold():
    n, classes = 300, 3
    emb = spread(n, d=6, seed=3)
    labels = torch.arange(n) % classes
    real = torch.zeros(n, dtype=torch.bool)
    real[:12] = True  # 4 real rows per class
    budgets = [10, 14, 12]
    sel = iterative_selection(emb, labels, real, budgets, k=5, iterations=30, min_gain=0.0, tries=2, seed=7)
    assert sel.iterations >= 3 and sel.swaps
    assert all(b >= a for a, b in zip(sel.history, sel.history[1:])), sel.history
    assert sel.history[-1] > sel.history[0]
    chosen = torch.tensor(sel.selected)
    assert torch.bincount(labels[chosen], minlength=classes).tolist() == budgets
    assert set(range(12)) <= set(sel.selected) and not any(real[s["removed"]] for s in sel.swaps)
    assert sel.history[-1] == pytest.approx(mean_nn_distance(emb[chosen], labels[chosen]), rel=1e-12)
    assert sel.history[0] == pytest.approx(mean_nn_distance(emb[sel.initial + list(range(12))],
                                                            labels[sel.initial + list(range(12))]), rel=1e-12)
    # same seed, same choice; the stop rule: once an iteration gains nothing, it ends
    again = iterative_selection(emb, labels, real, budgets, k=5, iterations=30, min_gain=0.0, tries=2, seed=7)
    assert again.selected == sel.selected and again.history == sel.history
    if sel.iterations < 30:
        assert sel.history[-1] == sel.history[-2] and "raised" in sel.stop


def test_class_budgets_follow_f1_and_the_worst_class_gets_the_most():
    assert class_budgets(5, 20, 3) == [20, 20, 20]
    assert class_budgets(5, 20, 3, [0.7, 0.7, 0.7]) == [20, 20, 20]
    b = class_budgets(5, 20, 4, [0.9, 0.2, 0.5, 1.0])
    assert sum(b) == 4 * 20 and min(b) >= 5
    assert b[1] == max(b) and b[3] == min(b) and b[1] > b[2] > b[0] > b[3]
    # shares in proportion to 2 - F1: F1 0 gets twice the extra images of F1 1
    assert class_budgets(0, 30, 2, [0.0, 1.0]) == [40, 20]


def test_classical_augmentations_keep_the_image_and_change_it():
    img = torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert torch.equal(classical_augment(img, "flip", 0), img.flip(-1))
    for op, p in (("rotate", 10.0), ("blur", 1.0), ("noise", 8.0), ("pixelate", 2.0)):
        y = classical_augment(img, op, p)
        assert y.dtype == torch.uint8 and y.shape == img.shape and not torch.equal(y, img), op
        assert torch.equal(y, classical_augment(img, op, p)), op  # a function of (image, op, parameter)
    px = classical_augment(img, "pixelate", 2.0)
    assert torch.equal(px[:, ::2, ::2], px[:, 1::2, 1::2])  # 2 x 2 blocks


# ---------------------------------------------------------------- the whole curation on tiny runs

GEN = dict(seed=0, device="cpu", ngf=4, ndf=4, batch_size=6, steps=4, log_every=2)
CLF = dict(device="cpu", arch="wrn16-2", batch_size=6, steps=2, log_every=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 3-class folder, a grid generator at spc 4, classifiers at spc 2 and 4 (seed 0) and at spc 2 seed 1."""
    base = tmp_path_factory.mktemp("curate")
    data = ImageFolderFactory(base)(classes=("ant", "bee", "cat"), train=6, test=2, size=32)
    ck = base / "ck"
    gen = fit_generator(make_config(GeneratorConfig, "fast", data=str(data), spc=4, mask="grid", **GEN), root=ck).run_dir
    clf = {(spc, seed): fit_classifier(make_config(ClassifierConfig, "fast", data=str(data), spc=spc, seed=seed, **CLF),
                                       root=ck).run_dir
           for spc, seed in ((4, 0), (2, 0), (2, 1))}
    return data, gen, clf


def curate(runs, out, **kw):
    data, gen, clf = runs
    args = dict(data=str(data), spc=4, seed=0, generator=gen, classifier=clf[(2, 0)], size=7, out=out, pool=6,
                iterations=5, min_gain=0.0, device="cpu")
    args.update(kw)
    return curate_dataset(**args)


def test_curates_a_folder_with_manifest_report_and_never_the_test_set(runs, tmp_path):
    data, gen, clf = runs
    # The test set is never decoded: a test file that is no image at all is copied as it is.
    bad = data / "test" / "bee" / "001.png"
    original = bad.read_bytes()
    bad.write_bytes(b"not an image")
    try:
        r = curate(runs, tmp_path / "cur", favour_difficult=True)
        assert (r.out / "test" / "bee" / "001.png").read_bytes() == b"not an image"
    finally:
        bad.write_bytes(original)
    m = read_json(r.manifest)
    assert m["kind"] == "curate" and m["counts"]["test"] == 6 and m["test"]["from"] == "copied"
    assert sum(r.per_class) == 3 * 7 and r.counts["real"] == 12 and r.counts["generated"] + r.counts["augmented"] == 9
    assert all(b >= a for a, b in zip(r.history, r.history[1:]))

    files = sorted(p.relative_to(r.out).as_posix() for p in (r.out / "train").rglob("*.png"))
    assert files == sorted(e["file"] for e in m["files"])
    assert [sum(f.startswith(f"train/{c}/") for f in files) for c in ("ant", "bee", "cat")] == r.per_class == m["budgets"]
    split = read_json(gen / "split.json")["indices"]
    for e in m["files"]:
        assert set(e["parents"]["train"]) <= set(split)  # every image comes from the subset's training images
        assert e["kind"] in ("real", "generated", "augmented") and e["added_at"] >= 0
        assert Image.open(r.out / e["file"]).size == (32, 32)
    train = chimeramix.open_source(str(data)).load("train")
    assert {e["file"] for e in m["files"] if e["kind"] == "real"} == {
        f"train/{train.classes[int(train.labels[i])]}/real_{i:05d}.png" for i in split}
    # validation: the subset's images the spc-2 classifier did not train on (the last 2 of each class's shuffle)
    clf_indices = read_json(clf[(2, 0)] / "split.json")["indices"]
    assert sorted(m["validation"]["train"] + clf_indices) == sorted(split)
    assert len(m["validation"]["f1"]) == 3 and m["validation"]["used"]
    assert m["budgets"] == class_budgets(4, 7, 3, m["validation"]["f1"])
    assert m["budgets"][int(np.argmin(m["validation"]["f1"]))] == max(m["budgets"])
    for s in m["removed"]:
        assert s["kind"] != "real" and s["replaced_by"] in {e["file"] for e in m["files"]}
    report = (r.out / "report.md").read_text()
    assert "| iteration | mean NN distance |" in report and "| ant |" in report
    assert f"| 0 | {r.history[0]:.5g} |" in report
    assert m["removed"] and Image.open(r.changes).size[1] > 0  # this seeded tiny case swaps in its first iteration

    # the compositions are export's: the same (seed, class, k) gives the same pixels
    gen_files = [e for e in m["files"] if e["kind"] == "generated"]
    assert gen_files
    ex = export_dataset(gen, tmp_path / "ex", m["pool"]["generated"], seed=0, device="cpu")
    for e in gen_files:
        assert (ex.out / e["file"]).read_bytes() == (r.out / e["file"]).read_bytes()
    # the result is a --data source again
    src = chimeramix.open_source(str(r.out))
    assert src.load("train").class_counts() == r.per_class


class Recorder(Progress):
    def __init__(self, stop_at=None):
        self.started, self.stop_at = [], stop_at

    def start(self, task, total, completed=0):
        self.started.append((task, total))

    def update(self, task, completed, metrics=None):
        if task == self.stop_at and completed >= 3:
            raise KeyboardInterrupt


def test_progress_bars_and_an_interrupted_curation_leaves_nothing(runs, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        curate(runs, tmp_path / "cur", progress=Recorder(stop_at="write"))
    assert list(tmp_path.iterdir()) == []
    rec = Recorder()
    r = curate(runs, tmp_path / "cur", progress=rec)
    # pool: 6 candidates x 3 classes; embed: those and the 12 real images; curate: at most 5 iterations
    assert rec.started[:3] == [("pool", 18), ("embed", 30), ("curate", 5)] and rec.started[3][0] == "write"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur"] and r.manifest.is_file()


def test_reuse_refuse_and_force(runs, tmp_path):
    out = tmp_path / "cur"
    curate(runs, out)
    before = (out / "manifest.json").read_bytes()
    assert curate(runs, out).already_finished and (out / "manifest.json").read_bytes() == before
    with pytest.raises(ChimeraMixError, match=r"finished chimeramix curation with other settings.*size: 7 -> 8.*--force"):
        curate(runs, out, size=8)
    assert (out / "manifest.json").read_bytes() == before
    r = curate(runs, out, size=8, force=True)
    assert not r.already_finished and r.per_class == [8, 8, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur"]  # no temp or old folder beside it
    ex = export_dataset(runs[1], tmp_path / "ex", 1, device="cpu")
    for force in (False, True):
        with pytest.raises(ChimeraMixError, match="holds a chimeramix export, not a chimeramix curation"):
            curate(runs, ex.out, force=force)


def test_refusals_name_the_field_and_leave_nothing(runs, tmp_path):
    data, gen, clf = runs
    out = tmp_path / "cur"
    cases = [
        (dict(size=3), "--size 3 is smaller than --spc 4"),
        (dict(spc=3), r"generator .* another split \(spc 4 vs 3"),
        (dict(classifier=clf[(2, 1)]), r"classifier .* another split \(seed 1 vs 0"),
        (dict(spc=2, generator=gen), r"generator .* another split \(spc 4 vs 2"),
        (dict(classifier=clf[(4, 0)], favour_difficult=True), "--favour-difficult needs real images the classifier did not"),
        (dict(classifier=tmp_path / "nowhere"), "classifier run folder .* does not exist"),
        (dict(generator=clf[(4, 0)]), "is a classifier run, not a generator run"),
        (dict(pool=1), "--pool 1 is smaller than the 3 non-real images"),
        (dict(classical_share=1.5), "--classical-share must be between 0 and 1"),
    ]
    for kw, words in cases:
        with pytest.raises(ChimeraMixError, match=words):
            curate(runs, out, **kw)
        assert not out.exists() and list(tmp_path.iterdir()) == [], kw
    # an unfinished run: its run.json says so
    import shutil

    cut = tmp_path / "clf-cut"
    shutil.copytree(clf[(2, 0)], cut)
    info = read_json(cut / "run.json")
    write_json(cut / "run.json", {**info, "status": "running"})
    with pytest.raises(ChimeraMixError, match="has not finished.*--resume"):
        curate(runs, out, classifier=cut)
    assert not out.exists()


def cli(*args):
    r = runner.invoke(app, ["curate", *map(str, args)])
    assert "Traceback" not in (r.output or ""), r.output
    return r


def test_cli_smoke_reuse_and_one_line_refusals(runs, tmp_path):
    data, gen, clf = runs
    out = tmp_path / "cur"
    common = ["--data", data, "--spc", 4, "--generator", gen, "--classifier", clf[(2, 0)], "--out", out, "--device", "cpu",
              "--quiet", "--pool", 6, "--iterations", 3]
    r = cli(*common, "--size", 6)
    assert r.exit_code == 0, r.output
    assert "curation" in r.stdout and "manifest.json" in r.stdout and "mean NN distance" in r.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["per_class"] == [6, 6, 6] and m["request"]["iterations"] == 3 and m["iterations"] <= 3
    r = cli(*common, "--size", 6)
    assert r.exit_code == 0 and "already finished" in r.stdout
    for args, words in ((["--size", 2], "--size 2 is smaller than --spc 4"), (["--size", 7], "other settings"),
                        (["--size", 6, "--classical-share", 2], "--classical-share")):
        r = cli(*common, *args)
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr


def test_python_api_mirrors_the_command(monkeypatch):
    from chimeramix import curate as C
    from cli.curate import curate_cmd

    assert chimeramix.curate_dataset is C.curate_dataset and "curate_dataset" in chimeramix.__all__
    cmd = set(inspect.signature(curate_cmd).parameters) - {"quiet"}
    api = set(inspect.signature(C.curate_dataset).parameters) - {"progress"}
    assert {"out_dir" if p == "out" else p for p in api} == cmd
    for name in cmd - {"data", "spc", "generator", "classifier", "size", "out_dir"}:
        assert inspect.signature(curate_cmd).parameters[name].default == inspect.signature(C.curate_dataset).parameters[name].default, name
    monkeypatch.setenv("COLUMNS", "250")
    r = runner.invoke(app, ["curate", "--help"], terminal_width=200)
    flat = " ".join(r.output.split())
    for opt in ("--data", "--spc", "--seed", "--generator", "--classifier", "--size", "--out", "--pool", "--classical-share",
                "--k", "--iterations", "--min-gain", "--tries", "--favour-difficult", "--seg-view", "--force"):
        assert opt in flat
    assert flat.count("[required]") == 6 and "[default: off]" in flat and "[default: 10]" in flat


def test_classifier_split_rule_allows_a_prefix_and_names_each_field():
    from chimeramix.curate import _classifier_split
    from chimeramix.data import Split

    split = Split("src", "fp", ("a", "b"), (32, 32), 4, 0, (10, 11, 12, 13, 20, 21, 22, 23))
    info = {"split": {**split.key(), "spc": 2, "indices": [10, 11, 20, 21]}}
    assert _classifier_split(info, split, "clf") == [0, 1, 4, 5]
    for change, words in (({"spc": 5, "indices": list(range(10))}, "spc 5 vs 4 (it may be smaller, never larger)"),
                          ({"fingerprint": "other"}, "fingerprint 'other' vs 'fp'"),
                          ({"image_size": [64, 64]}, "image_size [64, 64] vs [32, 32]"),
                          ({"indices": [10, 11, 20, 99]}, "indices (its images are not all in this subset)")):
        with pytest.raises(ChimeraMixError, match=re.escape(words)):
            _classifier_split({"split": {**info["split"], **change}}, split, "clf")


def test_seg_generator_on_a_named_source(tmp_path):
    """digits (an embedded source: its test set is written as PNGs) with a seg-mask generator (segments per image)."""
    gen = fit_generator(make_config(GeneratorConfig, "fast", data="digits", spc=3, mask="seg", **GEN), root=tmp_path / "ck").run_dir
    clf = fit_classifier(make_config(ClassifierConfig, "fast", data="digits", spc=3, seed=0, eval_batch=400, **CLF),
                         root=tmp_path / "ck").run_dir
    r = curate_dataset("digits", 3, gen, clf, 5, tmp_path / "cur", pool=4, classical_share=0.5, iterations=2, device="cpu")
    m = read_json(r.manifest)
    assert r.per_class == [5] * 10 and m["test"] == {"from": "decoded", "count": 797}
    assert m["mask"]["mask"] == "seg" and m["mask"]["num_segments"] > 1 and m["pool"] == {"per_class": 4, "generated": 2, "augmented": 2}
    assert len(list((r.out / "test").rglob("*.png"))) == 797
    assert all(b >= a for a, b in zip(r.history, r.history[1:]))
    with pytest.raises(ChimeraMixError, match="--favour-difficult needs real images the classifier did not train on"):
        curate_dataset("digits", 3, gen, clf, 5, tmp_path / "cur2", favour_difficult=True, device="cpu")
