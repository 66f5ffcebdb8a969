"""The grid in one call: a table per (dataset, spc) and the combined one, locally and as a submitit job graph."""

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chimeramix.errors import ChimeraMixError
from chimeramix.experiment import run_experiment
from chimeramix.sweep import parse_ints, run_sweep
from cli.app import app

ROOT = Path(__file__).resolve().parents[1]
CLF = {"steps": 4, "batch_size": 4, "log_every": 1}


@pytest.fixture
def two_sets(make_image_folder):
    return [str(make_image_folder(classes=("ant", "bee"), train=4, test=2, size=16, name=n, seed=i)) for i, n in enumerate("ab")]


def test_sweep_writes_a_table_per_cell_and_a_combined_one(two_sets, tmp_path):
    out = tmp_path / "results"
    res = run_sweep(two_sets, [2, 3], [0, 1], out=out, preset="fast", methods="none,mixup", device="cpu",
                    root=str(tmp_path / "ck"), clf_options=CLF)
    assert [(Path(c.data).name, c.spc) for c in res.cells] == [("a", 2), ("a", 3), ("b", 2), ("b", 3)]
    for stem in ("a-spc2", "a-spc3", "b-spc2", "b-spc3"):
        assert (out / f"{stem}.md").is_file() and (out / f"{stem}.csv").is_file()
    # every cell is what `experiment` reports for it (its runs are reused, not retrained)
    cell = run_experiment(two_sets[1], 3, [0, 1], preset="fast", methods="none,mixup", device="cpu", root=str(tmp_path / "ck"),
                          clf_options=CLF)
    assert [(r.method, r.accuracies) for r in cell.rows] == [(r.method, r.accuracies) for r in res.cells[3].tables[0].rows]
    md = (out / "table1.md").read_text().splitlines()
    assert md[2] == "| method | a spc 2 | a spc 3 | b spc 2 | b spc 3 |"
    base, mixup = cell.rows
    assert md[4].startswith("| Baseline |") and md[5].startswith("| MixUp |")
    assert md[4].split(" | ")[-1] == f"{base.mean:.2f} ± {base.std:.2f} (n=2) |"
    assert md[5].split(" | ")[-1] == f"{mixup.mean:.2f} ± {mixup.std:.2f} (n=2) |"
    rows = (out / "table1.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 2 and rows[0].startswith("data,spc,setting,method,mean,std,n")
    # one page for the grid, linking a page per cell with its paired statistics and the runs' figures
    page = (out / "table1.html").read_text()
    assert res.combined_html == out / "table1.html" and f"{base.mean:.2f} &#177; {base.std:.2f} (n=2)" in page
    for stem in ("a-spc2", "a-spc3", "b-spc2", "b-spc3"):
        assert f'href="{stem}.html"' in page and "Per-class accuracy" in (out / f"{stem}.html").read_text()
    summary = json.loads((out / "sweep.json").read_text())
    assert [(Path(c["data"]).name, c["spc"]) for c in summary["cells"]] == [("a", 2), ("a", 3), ("b", 2), ("b", 3)]


def test_a_bad_value_is_refused_before_anything_is_made(two_sets, tmp_path):
    with pytest.raises(ChimeraMixError, match=r"--clf-steps must be a whole number of at least 1 \(got 0\)"):
        run_sweep(two_sets, [2, 3], [0], out=tmp_path / "results", preset="fast", methods="none", device="cpu",
                  root=str(tmp_path / "ck"), clf_options={**CLF, "steps": 0})
    assert not (tmp_path / "ck").exists() and not (tmp_path / "results").exists()
    with pytest.raises(ChimeraMixError, match="--spc '5,x' is not a list of whole numbers"):
        parse_ints("5,x", "--spc")


def test_cli_sweep_on_the_local_job_graph(two_sets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pytest.importorskip("submitit")
    r = CliRunner().invoke(app, ["sweep", "--datasets", two_sets[0], "--spc", "2,3", "--seeds", "0", "--methods", "none",
                                 "--preset", "fast", "--clf-steps", "4", "--device", "cpu", "--launcher", "submitit-local",
                                 "--jobs", "2", "--out", "res", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "a spc 2" in r.stdout and "Baseline" in r.stdout
    assert (tmp_path / "res" / "a-spc2.md").is_file() and (tmp_path / "res" / "table1.md").is_file()
    logs = list((tmp_path / "checkpoints").glob("clf-a-spc2-*/logs/*_log.err"))
    assert len(logs) == 1 and "classifier 4/4 (100%)" in logs[0].read_text()  # the job's progress is in its log


def test_cli_slurm_without_submitit_says_how_to_install_it_in_one_line(two_sets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "submitit", None)
    for cmd in (["sweep", "--datasets", two_sets[0]], ["experiment", "--data", two_sets[0]]):
        r = CliRunner().invoke(app, [*cmd, "--launcher", "slurm", "--preset", "fast"])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.exit_code == 2 and lines == ["error: --launcher slurm needs submitit, which is not installed: pip install "
                                              "'chimeramix[slurm]'"], r.output
    assert not (tmp_path / "checkpoints").exists()
