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


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_recorded_tables_the_demo_prints_exist_and_read_back():
    from chimeramix.report import load_recorded

    out = subprocess.run(["make", "-n", "-C", str(ROOT), "demo", "STAMP=Makefile"], capture_output=True, text=True,
                         check=True).stdout
    line = next(ln for ln in out.splitlines() if "chimeramix report" in ln)
    files = [w for w in line.split() if w.endswith(".json")]
    assert len(files) >= 2
    for f in files:
        tables = load_recorded(ROOT / f)
        # each is a 5-seed comparison with the baseline, as the demo's title says
        assert tables and all(len(r.seeds) == 5 for t in tables for r in t.rows), f
        assert any(r.vs_baseline is not None and r.vs_baseline.n == 5 for t in tables for r in t.rows), f
