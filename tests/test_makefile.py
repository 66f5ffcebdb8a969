"""The Makefile's experiment targets: result files are named from the data actually used."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _prefix(*args) -> str:
    # -n prints the command without running it; STAMP=Makefile skips the .venv setup prerequisite
    out = subprocess.run(["make", "-n", "-C", str(ROOT), *args, "STAMP=Makefile"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    return words[words.index("--out-prefix") + 1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_results_are_named_from_the_data_used():
    assert _prefix("cifair10-spc5") == "results/cifair10-spc5"
    # a demo on another source must not write where a real ciFAIR-10 result lives
    assert _prefix("cifair10-spc5", "DATA=../shared/data/cifar10/") == "results/cifar10-spc5"
    assert _prefix("cifair10-spc5", "DATA=digits") == "results/digits-spc5"
    assert _prefix("compare-stl10-spc10", "DATA=/data/my-photos") == "results/compare-my-photos-spc10"
    assert _prefix("compare-cifair100-spc20") == "results/compare-cifair100-spc20"
