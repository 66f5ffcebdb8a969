"""Shared fixtures: tiny data written by the tests themselves (nothing downloaded, nothing mocked)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


ROOT = Path(__file__).resolve().parents[1]


def cli_process(args, cwd, **popen) -> subprocess.Popen:
    """`python -m cli.app ARGS` as a real process (stdout and stderr piped, text), for signals a CliRunner cannot take."""
    # one thread: the tiny networks gain nothing from more, and the test machine may be busy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cli.app", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_until(process: subprocess.Popen, ready, what: str, timeout: float = 300, poll: float = 0.05) -> None:
    """Poll `ready()` until it holds; fail with the process's output if it exits first, or with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(poll)


@contextmanager
def reaped(process: subprocess.Popen):
    """Kill the process if the block leaves it running (a failed assertion must not leave it training)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def save_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    """Save an H x W x 3 / H x W x 4 / H x W array (uint8, or uint16 grey) as an image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path, **save_kwargs)
    return path


class ImageFolderFactory:
    """Writes root/train/<class>/NNN.<ext> and root/test/<class>/NNN.<ext> with seeded random RGB pixels.

    factory(classes=("cat", "dog"), train=3, test=2, size=8, name="data", seed=0, ext="png") -> root
    `train` / `test`: images per class, an int or a dict class -> count. The written arrays are kept in
    factory.arrays[root][(split, class)], a list of H x W x 3 uint8 arrays in file-name order (exact for png).
    """

    def __init__(self, base: Path):
        self.base = base
        self.arrays: dict[Path, dict[tuple[str, str], list[np.ndarray]]] = {}

    def __call__(self, classes=("cat", "dog"), train=3, test=2, size=8, name="data", seed=0, ext="png") -> Path:
        root = self.base / name
        rng = np.random.default_rng(seed)
        written = {}
        for split, per_class in (("train", train), ("test", test)):
            for c in classes:
                n = per_class[c] if isinstance(per_class, dict) else per_class
                (root / split / c).mkdir(parents=True, exist_ok=True)
                written[(split, c)] = []
                for i in range(n):
                    a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                    save_image(root / split / c / f"{i:03d}.{ext}", a)
                    written[(split, c)].append(a)
        self.arrays[root] = written
        return root


@pytest.fixture
def make_image_folder(tmp_path) -> ImageFolderFactory:
    """A tiny image folder factory writing under this test's tmp_path (see ImageFolderFactory)."""
    return ImageFolderFactory(tmp_path)


@pytest.fixture
def write_image():
    """save_image(path, array, **save_kwargs): write an array as an image file, making its folders."""
    return save_image


def tag_of(kind: str, preset: str = "fast", **settings) -> str:
    """The config tag a run folder's name ends in (-c<tag>) for these settings of a 'generator' or 'classifier'."""
    from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config
    from chimeramix.train.setup import config_overrides, config_tag

    cls = GeneratorConfig if kind == "generator" else ClassifierConfig
    return config_tag(config_overrides(make_config(cls, preset, **settings)))
