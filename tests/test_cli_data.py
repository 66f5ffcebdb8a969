"""Bad data input through the real command line: one line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chimeramix import __version__
from cli.app import app

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run the CLI from an empty folder inside tmp_path, so anything it writes lands where we look."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(root.rglob("*"))}


def run_cli(args: list[str]):
    return CliRunner().invoke(app, args)


def assert_one_line_error(result, tmp_path: Path, before: dict, *needles: str) -> str:
    """Exit 2, one 'error:' line on stderr, no traceback, nothing under tmp_path changed; returns the message."""
    err = ANSI.sub("", result.stderr)
    everything = ANSI.sub("", result.output)
    assert result.exit_code == 2, (result.exit_code, everything, result.exception)
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and err.strip() == lines[0], err
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 10
    assert "Traceback" not in everything
    assert result.stdout == ""
    after = snapshot(tmp_path)
    assert after == before, sorted(set(after) ^ set(before))
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def fit_generator(data, ck: Path, *extra: str):
    return run_cli(["fit-generator", "--data", str(data), "--checkpoints", str(ck), "--device", "cpu", "--quiet", *extra])


def fit_classifier(data, ck: Path, *extra: str):
    return run_cli(["fit-classifier", "--data", str(data), "--checkpoints", str(ck), "--device", "cpu", "--quiet", *extra])


def test_unknown_dataset_lists_the_known_ones(workdir):
    before = snapshot(workdir)
    r = fit_generator("imagenet-tiny-nonexistent", workdir / "ck")
    msg = assert_one_line_error(r, workdir, before, "imagenet-tiny-nonexistent")
    for name in ("cifair10", "cifair100", "cifar10", "cifar100", "stl10", "digits"):
        assert name in msg


@pytest.mark.parametrize("missing", ["train", "test"])
def test_folder_without_split(workdir, make_image_folder, missing):
    root = make_image_folder(classes=("a", "b"), train=2, test=2)
    for f in (root / missing).rglob("*.png"):
        f.unlink()
    for d in sorted((root / missing).iterdir()):
        d.rmdir()
    (root / missing).rmdir()
    before = snapshot(workdir)
    assert_one_line_error(fit_generator(root, workdir / "ck"), workdir, before, f"{missing}/", str(root))


def test_folder_that_does_not_exist(workdir):
    before = snapshot(workdir)
    assert_one_line_error(fit_generator(workdir / "no" / "such", workdir / "ck"), workdir, before, "does not exist")


def test_class_folder_with_no_images(workdir, make_image_folder):
    root = make_image_folder(classes=("a", "b"), train={"a": 3, "b": 0}, test=1)
    (root / "train" / "b" / "notes.txt").write_text("x")
    before = snapshot(workdir)
    assert_one_line_error(fit_generator(root, workdir / "ck"), workdir, before, str(root / "train" / "b"), "no images")


def test_corrupt_image_names_the_file(workdir, make_image_folder):
    root = make_image_folder(classes=("a", "b"), train=3, test=1)
    bad = root / "train" / "a" / "002.png"
    bad.write_bytes(bad.read_bytes()[:50])
    before = snapshot(workdir)
    assert_one_line_error(fit_generator(root, workdir / "ck"), workdir, before, str(bad))


def test_mixed_sizes_suggest_image_size(workdir, make_image_folder, write_image):
    root = make_image_folder(classes=("a", "b"), train=3, test=1, size=8)
    write_image(root / "train" / "b" / "big.png", np.zeros((10, 10, 3), np.uint8))
    before = snapshot(workdir)
    assert_one_line_error(fit_generator(root, workdir / "ck"), workdir, before, "--image-size")


def test_spc_larger_than_the_smallest_class(workdir, make_image_folder):
    root = make_image_folder(classes=("big", "small"), train={"big": 5, "small": 2}, test=1)
    before = snapshot(workdir)
    msg = assert_one_line_error(fit_generator(root, workdir / "ck", "--spc", "3"), workdir, before, "'small'", "2 training images")
    assert "--spc 3" in msg


@pytest.mark.parametrize("spc", ["0", "-2"])
def test_spc_below_one(workdir, make_image_folder, spc):
    root = make_image_folder(classes=("a", "b"), train=2, test=1)
    before = snapshot(workdir)
    assert_one_line_error(fit_generator(root, workdir / "ck", "--spc", spc), workdir, before, "--spc", "at least 1")


def test_test_classes_differ(workdir, make_image_folder):
    root = make_image_folder(classes=("a", "b", "c"), train=2, test=1)
    (root / "test" / "c" / "000.png").rename(root / "test" / "c" / "keep.png")
    (root / "test" / "c").rename(root / "test" / "z")
    before = snapshot(workdir)
    msg = assert_one_line_error(fit_classifier(root, workdir / "ck", "--spc", "1"), workdir, before, "differ")
    assert "'c'" in msg and "'z'" in msg
    # --spc 2: a generator composes pairs of distinct images, so --spc 1 is refused before the data is looked at
    assert_one_line_error(fit_generator(root, workdir / "ck", "--spc", "2"), workdir, before, "differ")


def test_corrupt_test_image_in_fit_classifier(workdir, make_image_folder):
    root = make_image_folder(classes=("a", "b"), train=2, test=2, size=16)
    bad = root / "test" / "b" / "001.png"
    bad.write_bytes(b"junk")
    before = snapshot(workdir)
    r = fit_classifier(root, workdir / "ck", "--spc", "1", "--steps", "1")
    assert_one_line_error(r, workdir, before, str(bad))


def test_debug_shows_the_exception(workdir):
    r = run_cli(["--debug", "fit-generator", "--data", "no-such-dataset-x", "--checkpoints", str(workdir / "ck"), "--quiet"])
    assert r.exit_code != 0
    from chimeramix.errors import ChimeraMixError

    assert isinstance(r.exception, ChimeraMixError)
    assert not (workdir / "ck").exists()


def test_datasets_lists_sources(workdir):
    r = run_cli(["datasets", "--data-dir", str(workdir / "data")])
    assert r.exit_code == 0, r.output
    assert "digits" in r.stdout and "cifair10" in r.stdout and "stl10" in r.stdout
    assert "Traceback" not in r.output
    assert not (workdir / "data").exists()  # listing does not create the data folder


def test_version():
    r = run_cli(["--version"])
    assert r.exit_code == 0
    assert r.stdout.strip() == f"chimeramix {__version__}"


def test_console_script_bad_input(tmp_path):
    """The installed entry point (cli.app:main) in a real process: stderr is exactly one line."""
    exe = Path(sys.executable).with_name("chimeramix")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from cli.app import main; main()"]
    env = {**os.environ, "NO_COLOR": "1"}
    p = subprocess.run([*cmd, "fit-generator", "--data", "not-a-dataset-xyz", "--checkpoints", str(tmp_path / "ck"), "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 2
    assert p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error: unknown dataset 'not-a-dataset-xyz'")
    assert "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == []
