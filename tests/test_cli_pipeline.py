"""The whole chain through the real command line, on a tiny image folder the test writes."""

import json

import pytest
from typer.testing import CliRunner

from cli.app import app
from chimeramix.errors import ChimeraMixError
from chimeramix.experiment import expand_methods, parse_seeds

runner = CliRunner()
SMALL = ["--device", "cpu", "--quiet", "--checkpoints", "ck"]
GEN = ["--ngf", "4", "--ndf", "4", "--batch-size", "4", "--steps", "3", "--log-every", "1"]


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in (r.output or ""), r.output
    return r


@pytest.fixture
def folder(make_image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return make_image_folder(classes=("ant", "bee", "cat"), train=4, test=3, size=32)


def test_generator_classifier_report_chain(folder, tmp_path):
    r = invoke("fit-generator", "--data", folder, "--spc", 3, "--seed", 0, "--mask", "grid", *GEN, *SMALL, "--json")
    assert r.exit_code == 0, r.output
    gen = json.loads(r.stdout)
    assert gen["steps"] == 3 and set(gen["losses"]) >= {"rec", "lap", "adv", "d"}
    gen_dir = tmp_path / gen["run"]
    assert (gen_dir / "generator.safetensors").is_file() and (gen_dir / "samples.png").is_file()

    clf_args = ["--data", folder, "--spc", 3, "--steps", 4, "--batch-size", 4, "--log-every", 2, *SMALL]
    runs = []
    for seed_args in (["--seed", 0, "--generator", gen_dir], ["--seed", 0]):
        r = invoke("fit-classifier", *clf_args, *seed_args, "--json")
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        assert 0 <= res["accuracy"] <= 1 and res["test_size"] == 9
        runs.append(tmp_path / res["run"])
    assert json.loads((runs[0] / "result.json").read_text())["label"] == "ChimeraMix+Grid"

    # the same command again: reused, not retrained, not overwritten
    before = (runs[1] / "result.json").read_bytes()
    r = invoke("fit-classifier", *clf_args, "--seed", 0)
    assert r.exit_code == 0 and "already finished" in r.stdout
    assert (runs[1] / "result.json").read_bytes() == before

    r = invoke("report", *runs, "--out-prefix", tmp_path / "results" / "t")
    assert r.exit_code == 0, r.output
    assert "Baseline" in r.stdout and "ChimeraMix+Grid" in r.stdout
    md = (tmp_path / "results" / "t.md").read_text()
    assert "| Baseline |" in md and (tmp_path / "results" / "t.csv").is_file()
    assert (tmp_path / "results" / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generator_of_another_seed_is_refused_in_one_line(folder, tmp_path):
    r = invoke("fit-generator", "--data", folder, "--spc", 2, "--seed", 0, *GEN, *SMALL, "--json")
    gen_dir = tmp_path / json.loads(r.stdout)["run"]
    r = invoke("fit-classifier", "--data", folder, "--spc", 2, "--seed", 1, "--generator", gen_dir, "--steps", 2, *SMALL)
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "another split" in lines[0] and "seed" in lines[0]


@pytest.mark.parametrize("args,words", [
    (["fit-classifier", "--generator", "nowhere"], "does not exist"),
    (["fit-classifier", "--arch", "vgg11"], "unknown --arch"),
    (["fit-classifier", "--method", "mixup", "-o", "alpha=0"], "alpha"),
    (["fit-classifier", "--method", "zeta-mixup", "-o", "gamma=1.5"], "1.72865"),
    (["fit-classifier", "--method", "nope"], "unknown method"),
    (["fit-classifier", "--method", "chimeramix+mixup"], "needs a trained generator"),
    (["fit-classifier", "--method", "segmix+chimeramix"], "two batch sources"),
    (["fit-generator", "--mask", "stripes"], "grid or seg"),
    (["report"], "no runs"),
    (["experiment", "--seeds", "a-b"], "--seeds"),
    (["experiment", "--mask", "circles"], "--mask"),
    # an empty choice used to fall through to the preset's (`--arch ''` trained a WRN-16-8)
    (["fit-classifier", "--arch", ""], "--arch is empty"),
    (["fit-generator", "--mask", ""], "--mask is empty"),
    # a name with a line break in it stays on the one line, escaped
    (["fit-classifier", "--generator", "no\nwhere"], "no\\nwhere does not exist"),
    # click's own usage errors: one line too, with where to look
    (["fit-classifier", "--steps", "many"], "Invalid value for '--steps'"),
    (["fit-generator", "--no-such-option"], "--help"),
])
def test_bad_input_is_one_line_exit_2(folder, tmp_path, args, words):
    extra = [] if args[0] == "report" else ["--data", folder, "--spc", 2, *SMALL]
    r = invoke(*args, *extra)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())


def test_experiment_runs_every_seed_and_writes_tables(folder, tmp_path):
    r = invoke("experiment", "--data", folder, "--spc", 2, "--seeds", "0-1", "--preset", "fast", "--methods", "none,chimeramix",
               "--mask", "seg", "--gen-steps", 2, "--clf-steps", 2, "--out", tmp_path / "results" / "x", *SMALL)
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "results" / "x.json").read_text())
    assert [t["method"] for t in summary["table"]] == ["Baseline", "ChimeraMix+Seg"]
    assert all(t["seeds"] == [0, 1] for t in summary["table"])
    assert len(summary["generator_runs"]) == 2 and len(summary["classifier_runs"]) == 4
    assert "samples.png" in r.stdout

    # again with --json and the prefix under its own name (--out above is its old spelling): runs reused, JSON only
    r = invoke("experiment", "--data", folder, "--spc", 2, "--seeds", "0-1", "--preset", "fast", "--methods", "none,chimeramix",
               "--mask", "seg", "--gen-steps", 2, "--clf-steps", 2, "--out-prefix", tmp_path / "results" / "y", "--json", *SMALL)
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert [t["method"] for t in got["table"]] == ["Baseline", "ChimeraMix+Seg"]
    assert sorted(got["classifier_runs"]) == sorted(summary["classifier_runs"])
    assert got["wrote"]["json"] == str(tmp_path / "results" / "y.json") and (tmp_path / "results" / "y.md").is_file()
    r = invoke("experiment", "--out-prefix", "a", "--out", "b")
    assert r.exit_code == 2 and "disagree" in r.stderr


def test_debug_works_after_the_subcommand_too():
    for args in (["--debug", "fit-classifier", "--method", "nope"], ["fit-classifier", "--method", "nope", "--debug"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and isinstance(r.exception, ChimeraMixError), r.output  # raised, with its traceback
    r = invoke("fit-classifier", "--method", "nope")  # and without it: one line again
    assert r.exit_code == 2 and r.exception is not None and "unknown method" in r.stderr


def test_result_paths_are_never_cut_on_a_narrow_terminal(folder, tmp_path, monkeypatch):
    from cli.app import out

    deep = tmp_path / ("a-long-folder-name-" * 4) / "checkpoints"
    args = ["fit-classifier", "--data", folder, "--spc", 2, "--steps", 2, "--batch-size", 4, "--device", "cpu", "--quiet",
            "--checkpoints", deep]
    for width in (200, 60):
        monkeypatch.setattr(out, "_width", width)
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        run = next(deep.glob("clf-data-spc2-seed0-none-fast-c*"))  # --steps and --batch-size: a config tag
        assert str(run / "report.md") in r.stdout  # whole, on one line: in the table or below it
        assert "top-1 accuracy" in r.stdout  # --quiet drops the progress bars, not the summary
        assert "…" not in r.stdout and "..." not in r.stdout


def test_seed_and_method_parsing():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("1,3,3") == [1, 3]
    assert expand_methods("none,chimeramix", ["grid", "seg"]) == [("none", None), ("chimeramix", "grid"), ("chimeramix", "seg")]
    assert ("mixup", None) in expand_methods("all", ["seg"]) and ("chimeramix+autoaugment", "seg") in expand_methods("all", ["seg"])


def test_help_documents_every_option_with_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich reads the width from the environment; long option names stay whole
    for cmd in ("fit-generator", "fit-classifier", "experiment", "sweep", "report", "datasets", "methods"):
        r = runner.invoke(app, [cmd, "--help"], terminal_width=200)
        assert r.exit_code == 0
    r = runner.invoke(app, ["fit-generator", "--help"], terminal_width=200)
    flat = " ".join(r.output.split())  # help text wraps at the terminal's width
    for opt in ("--spc", "--mask", "--preset", "--resume", "--force", "--steps", "--decoder-res-blocks", "--seg-mask",
                "--grid-offset", "--d-step", "--device"):
        assert opt in flat
    assert "[default: seg]" in flat and "[default: fast]" in flat
    # defaults written into help texts survive (rich markup would swallow them as tags)
    assert "[default: range]" in flat and "[default: paper 64, cpu 16, fast 16]" in flat
    # the defaults shown are config.py's own values, not copies
    from chimeramix.config import GeneratorConfig, default_text

    assert f"[default: {default_text(GeneratorConfig, 'lr')}]" in flat and "[default: paper 0.3,0.6,0.8, cpu 0.7,0.9, fast 0.3,0.6,0.8]" in flat and f"[default: {default_text(GeneratorConfig, 'ngf')}]" in flat


def test_seeds_in_parallel_processes_match_sequential(folder, tmp_path):
    from chimeramix.experiment import run_experiment

    kw = dict(preset="fast", masks=["grid"], methods="none,chimeramix", device="cpu",
              gen_options={"steps": 2, "ngf": 4, "ndf": 4, "batch_size": 4}, clf_options={"steps": 2, "batch_size": 4})
    import os

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each parallel worker runs, so the sums add up alike
    try:
        seq = run_experiment(str(folder), 2, [0, 1], root=tmp_path / "seq", **kw)
    finally:
        torch.set_num_threads(threads)
    from chimeramix.progress import Progress

    class Seen(Progress):
        def __init__(self):
            self.started, self.done = [], {}

        def start(self, task, total, completed=0):
            self.started.append(task)

        def update(self, task, completed, metrics=None):
            self.done[task] = completed

    seen = Seen()
    par = run_experiment(str(folder), 2, [0, 1], root=tmp_path / "par", jobs=2, progress=seen, **kw)
    # every worker's stages reach the parent's progress, named by seed: one bar per running job
    for seed in (0, 1):
        assert {f"seed {seed} generator", f"seed {seed} classifier"} <= set(seen.started)
        assert seen.done[f"seed {seed} generator"] == 2
    assert [(r.method, r.seeds) for r in seq.rows] == [(r.method, r.seeds) for r in par.rows]
    assert [r.accuracies for r in seq.rows] == [r.accuracies for r in par.rows]


def test_decoder_variant_sits_beside_the_default_and_reports_as_its_own_row(folder, tmp_path):
    common = ["--data", folder, "--spc", 2, "--seeds", "0", "--preset", "fast", "--methods", "chimeramix", "--mask", "grid",
              "--gen-steps", 2, "--clf-steps", 2, *SMALL]
    runs = {}
    for flag in ("--no-decoder-res-blocks", "--decoder-res-blocks"):
        r = invoke("experiment", *common, flag, "--out", tmp_path / "results" / flag.strip("-"))
        assert r.exit_code == 0, r.output
        runs[flag] = json.loads((tmp_path / "results" / f"{flag.strip('-')}.json").read_text())
    default, variant = runs["--no-decoder-res-blocks"], runs["--decoder-res-blocks"]
    assert default["generator_runs"] != variant["generator_runs"]  # no clash, no refusal: both kept
    assert "grid-fast-c" in default["generator_runs"][0] and "grid-decres-fast-c" in variant["generator_runs"][0]
    gen_cfg = json.loads((tmp_path / default["generator_runs"][0] / "run.json").read_text())["config"]
    assert gen_cfg["decoder_res_blocks"] is False  # the public code's decoder is the default
    assert [t["method"] for t in default["table"]] == ["ChimeraMix+Grid"]
    assert [t["method"] for t in variant["table"]] == ["ChimeraMix+Grid (decoder res blocks)"]
    r = invoke("report", *default["classifier_runs"], *variant["classifier_runs"], "--json")
    assert [row["method"] for row in json.loads(r.stdout)] == ["ChimeraMix+Grid", "ChimeraMix+Grid (decoder res blocks)"]


def test_report_prints_paired_columns_and_refuses_a_seed_clash_in_one_line(tmp_path):
    # hand-written result.json files: the report reads nothing else, so no training is needed
    def run(name, label, seed, acc, spc=5):
        d = tmp_path / name
        d.mkdir()
        cfg = {"preset": "fast", "steps": 1000, "arch": "wrn16-2", "method_options": {"seed": seed}}
        (d / "result.json").write_text(json.dumps({"label": label, "accuracy": acc, "config": cfg,
                                                   "split": {"source": "x", "spc": spc, "seed": seed}}))
        return d

    runs = [run("b0", "Baseline", 0, 0.30), run("m0", "MixUp", 0, 0.34), run("b2", "Baseline", 0, 0.20, spc=2)]
    r = runner.invoke(app, ["report", *map(str, runs)], terminal_width=250)
    assert r.exit_code == 0, r.output
    assert "spc 5" in r.stdout and "spc 2" in r.stdout  # two tables
    assert "+4.00 [n/a]" in r.stdout and "± n/a" in r.stdout  # brackets survive rich's markup
    r = runner.invoke(app, ["report", *map(str, runs), "--json"])
    rows = json.loads(r.stdout)
    assert [(x["setting"].split(", ")[1], x["method"], x["std"]) for x in rows] == [
        ("spc 5", "Baseline", None), ("spc 5", "MixUp", None), ("spc 2", "Baseline", None)]
    assert rows[1]["diff_mean"] == pytest.approx(4) and rows[1]["p"] is None
    r = runner.invoke(app, ["report", *map(str, runs), str(run("b0-again", "Baseline", 0, 0.31))])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "b0 and" in lines[0] and "b0-again" in lines[0]
    # the --json output is a recorded result: report prints it again, the same table; folders and a .json don't mix
    (tmp_path / "rec.json").write_text(json.dumps(rows))
    again = runner.invoke(app, ["report", str(tmp_path / "rec.json")], terminal_width=250)
    first = runner.invoke(app, ["report", *map(str, runs)], terminal_width=250)
    assert again.exit_code == 0 and again.stdout == first.stdout, again.output
    r = runner.invoke(app, ["report", str(tmp_path / "rec.json"), str(runs[0])])
    assert r.exit_code == 2 and "not both" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_report_on_a_narrow_terminal_leaves_out_per_seed_columns_instead_of_folding_numbers(tmp_path, monkeypatch):
    import cli.app

    # rich reads COLUMNS on every print unless a width was pinned when the console was made (COLUMNS at import)
    monkeypatch.setattr(cli.app.out, "_width", None)
    runs = []
    for label, base in (("Baseline", 0.30), ("ChimeraMix+Seg (generator steps=4000)", 0.34)):
        for seed in range(5):
            d = tmp_path / f"{label[:4]}{seed}"
            d.mkdir()
            cfg = {"preset": "cpu", "steps": 4000, "method_options": {"seed": seed}}
            (d / "result.json").write_text(json.dumps({"label": label, "accuracy": base + seed / 1000, "config": cfg,
                                                       "split": {"source": "x", "spc": 10, "seed": seed}}))
            runs.append(str(d))
    narrow = runner.invoke(app, ["report", *runs], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert "seed 4" not in narrow.stdout and "5 per-seed columns left out" in narrow.stdout
    assert "+4.00 [4.00, 4.00] *" in narrow.stdout  # the difference column stays whole, not a letter per line
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines() if "│" in line)
    wide = runner.invoke(app, ["report", *runs], env={"COLUMNS": "250"})
    assert "seed 4" in wide.stdout and "34.40 (+4.00)" in wide.stdout and "left out" not in wide.stdout


@pytest.mark.parametrize("args,word", [
    (["fit-generator", "--seg-mask", "halves"], "--seg-mask"),
    (["fit-generator", "--grid-offset", "diagonal"], "--grid-offset"),
    (["fit-generator", "--mask-resize", "bicubic"], "--mask-resize"),
    (["fit-generator", "--d-step", "twice"], "--d-step"),
    (["fit-generator", "--mask", "blob"], "--mask"),
    (["fit-classifier", "--seg-view", "both"], "--seg-view"),
    (["experiment", "--seg-mask", "halves", "--preset", "fast", "--seeds", "0"], "--seg-mask"),
])
def test_unknown_mask_modes_are_one_line_errors(folder, tmp_path, args, word):
    r = invoke(*args, "--data", folder, "--spc", 2, *SMALL)
    lines = [ln for ln in (r.stderr or "").splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and word in lines[0], r.output
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())  # nothing left behind


def test_the_output_folder_has_one_name_and_the_old_spelling_still_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for cmd in ("fit-generator", "fit-classifier"):
        shown = runner.invoke(app, [cmd, "--help"]).output
        # --out is the name; the old spelling is listed as such, so a user who meets it in a script finds it
        assert "--out " in shown and "--out-dir" in shown and "old spelling of --out" in shown
    base = ["fit-generator", "--data", "digits", "--spc", "2", "--steps", "1", "--ngf", "4", "--ndf", "4", "--batch-size", "2",
            "--mask", "grid", "--device", "cpu", "--quiet"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--out-dir", str(tmp_path / "b")])
    assert r.exit_code == 2 and "name two run folders: pass --out only" in r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert runner.invoke(app, [*base, "--out-dir", str(tmp_path / "old")]).exit_code == 0
    assert (tmp_path / "old" / "generator.safetensors").is_file()
