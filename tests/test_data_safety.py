"""Nothing of the user's is lost: --force and --out never replace what chimeramix did not write (issue 22's five
data-loss cases, through the real command line), and a refusal's advice, followed literally, gets the user out."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
DATA = ["--data", "digits", "--spc", "2", "--device", "cpu", "--quiet"]
GEN = [*DATA, "--mask", "grid", "--ngf", "4", "--ndf", "4", "--batch-size", "2", "--steps", "2"]
CLF = [*DATA, "--arch", "wrn16-2", "--batch-size", "4", "--steps", "2"]


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in (r.output or ""), r.output
    return r


def one_error(r, *words) -> str:
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, object]:
    """Every entry under root with its bytes (files), its target (links) or its kind: what must not change."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = ("link", os.readlink(p))
        elif p.is_file():
            out[key] = p.read_bytes()
        else:
            out[key] = stat.S_IFMT(p.lstat().st_mode)
    return out


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety") / "gen"
    r = invoke("fit-generator", *GEN, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_export_force_never_replaces_a_folder_with_someone_elses_manifest(gen, tmp_path):
    mine = tmp_path / "webapp"
    mine.mkdir()
    (mine / "manifest.json").write_text('{"name": "my web app", "icons": []}')
    (mine / "thesis.txt").write_text("four years of work")
    before = tree(tmp_path)
    for force in ([], ["--force"]):
        line = one_error(invoke("export", "--generator", gen, "--per-class", 1, "--out", mine, "--device", "cpu",
                                "--quiet", *force), "chimeramix did not write", "choose another --out")
        assert "--force" not in line
    assert tree(tmp_path) == before


def test_export_force_keeps_a_real_export_that_holds_the_users_files(gen, tmp_path):
    out = tmp_path / "ex"
    assert invoke("export", "--generator", gen, "--per-class", 1, "--out", out, "--device", "cpu", "--quiet").exit_code == 0
    (out / "thesis.txt").write_text("notes beside the export")
    before = tree(tmp_path)
    one_error(invoke("export", "--generator", gen, "--per-class", 2, "--out", out, "--device", "cpu", "--quiet",
                     "--force"), "thesis.txt", "move it out")
    assert tree(tmp_path) == before
    # the advice, followed: with the file moved out, --force replaces the export
    (out / "thesis.txt").rename(tmp_path / "thesis.txt")
    r = invoke("export", "--generator", gen, "--per-class", 2, "--out", out, "--device", "cpu", "--quiet", "--force")
    assert r.exit_code == 0, r.output
    assert len(list((out / "train" / "0").iterdir())) == 2 and (tmp_path / "thesis.txt").is_file()


def test_fit_classifier_force_never_overwrites_a_folder_that_is_not_a_run(tmp_path):
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "report.md").write_text("# my own report")
    (mine / "figure.png").write_bytes(b"\x89PNG not ours")
    before = tree(tmp_path)
    for force in ([], ["--force"]):
        line = one_error(invoke("fit-classifier", *CLF, "--out", mine, *force), "not a chimeramix run", "choose another --out")
        assert "--force" not in line
    # only our own file name, nothing foreign: still the owner's without a run.json
    (mine / "figure.png").unlink()
    before = tree(tmp_path)
    one_error(invoke("fit-classifier", *CLF, "--out", mine, "--force"), "report.md")
    assert tree(tmp_path) == before


def test_predict_out_onto_a_fifo_or_device_is_refused_and_a_symlink_is_written_through(tmp_path):
    run = tmp_path / "clf"
    assert invoke("fit-classifier", *CLF, "--out", run).exit_code == 0
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8), (9, 9, 9)).save(images / "a.png")
    specials = [tmp_path / "fifo"]
    os.mkfifo(specials[0])
    if os.geteuid() == 0:  # a copy of /dev/null: only root may make a device node
        dev = tmp_path / "null"
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        specials.append(dev)
    for special in specials:
        kind = stat.S_IFMT(special.lstat().st_mode)
        for force in ([], ["--force"]):
            one_error(invoke("predict", run, images, "--out", special, "--device", "cpu", "--quiet", *force),
                      "not a regular file")
        assert stat.S_IFMT(special.lstat().st_mode) == kind  # still the FIFO / the device, not a file
    # a symlink to a CSV: the file it points to gets the predictions, the link stays a link
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "preds.csv"
    link.symlink_to(target)
    r = invoke("predict", run, images, "--out", link, "--device", "cpu", "--quiet", "--force")
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and target.read_text().startswith("path,label")


def test_export_out_a_symlink_to_a_folder_writes_where_it_points(gen, tmp_path):
    target = tmp_path / "disk" / "exports"
    target.mkdir(parents=True)
    link = tmp_path / "ex"
    link.symlink_to(target, target_is_directory=True)
    r = invoke("export", "--generator", gen, "--per-class", 1, "--out", link, "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and (target / "manifest.json").is_file()
    # and again with --force and other settings: the link survives, nothing is left beside either
    r = invoke("export", "--generator", gen, "--per-class", 2, "--out", link, "--device", "cpu", "--quiet", "--force")
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and len(list((target / "train" / "0").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "ex"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["exports"]
    dangling = tmp_path / "gone"
    dangling.symlink_to(tmp_path / "nowhere")
    one_error(invoke("export", "--generator", gen, "--per-class", 1, "--out", dangling, "--device", "cpu", "--quiet"),
              "does not exist")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_weights_of_a_finished_generator_advice_followed_literally_gets_out(tmp_path, damage):
    gen = tmp_path / "gen"
    assert invoke("fit-generator", *GEN, "--out", gen).exit_code == 0
    weights = gen / "generator.safetensors"
    if damage == "delete":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    line = one_error(invoke("fit-classifier", *CLF, "--generator", gen, "--out", tmp_path / "clf"),
                     "finished but its weights", "run the fit-generator command that trained it again")
    assert "--resume" not in line and not (tmp_path / "clf").exists()
    # the advice: the same fit-generator command again; it retrains instead of saying "nothing to do"
    r = invoke("fit-generator", *GEN, "--out", gen)
    assert r.exit_code == 0 and "nothing to do" not in r.output, r.output
    assert invoke("fit-classifier", *CLF, "--generator", gen, "--out", tmp_path / "clf").exit_code == 0


def test_export_that_cannot_fit_on_the_disk_is_refused_before_planning(gen, tmp_path):
    out = tmp_path / "ex"
    line = one_error(invoke("export", "--generator", gen, "--per-class", 10**13, "--out", out, "--device", "cpu", "--quiet"),
                     "GiB free", "lower --per-class")
    assert "images" in line and list(tmp_path.iterdir()) == []
