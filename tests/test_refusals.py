"""Issue 22's classes of refusal, through the real command line on tiny runs: damaged or hand-edited records read
back (result.json, run.json's result, split.json, manifest.json, a recorded table), extreme values that would go
straight to an allocation, and names too long for the file system. Each is one line naming what is wrong, exit 2,
no traceback, and nothing written; where the line gives a way out, the test follows it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import tag_of
from test_data_safety import GEN, invoke, one_error, tree

from chimeramix import records as R
from chimeramix.errors import ChimeraMixError

Q = ["--device", "cpu", "--quiet"]
EXPERIMENT = ["experiment", "--data", "digits", "--spc", 2, "--seeds", 0, "--methods", "none", "--preset", "fast", "--clf-steps", 2,
              "--device", "cpu", "--quiet"]
CLF_RUN = f"clf-digits-spc2-seed0-none-fast-c{tag_of('classifier', steps=2)}"  # the folder experiment names its one classifier run
LONG = "x" * 300


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A generator run, a classifier run (made by experiment, so experiment can be run over it again), an export
    of the generator and a curation of both; tests copy what they damage."""
    base = tmp_path_factory.mktemp("refusals")
    gen, ck = base / "gen", base / "ck"
    assert invoke("fit-generator", *GEN, "--out", gen).exit_code == 0
    r = invoke(*EXPERIMENT, "--checkpoints", ck)
    assert r.exit_code == 0, r.output
    ex, cur = base / "ex", base / "cur"
    assert invoke("export", "--generator", gen, "--per-class", 1, "--out", ex, *Q).exit_code == 0
    r = invoke(*curate_args(gen, ck / CLF_RUN, cur))
    assert r.exit_code == 0, r.output
    images = base / "images"
    images.mkdir()
    shutil.copy(next((ex / "train" / "0").glob("*.png")), images / "a.png")
    return {"gen": gen, "ck": ck, "clf": ck / CLF_RUN, "ex": ex, "cur": cur, "images": images}


def curate_args(gen, clf, out, *extra):
    return ["curate", "--data", "digits", "--spc", 2, "--generator", gen, "--classifier", clf, "--size", 3, "--pool", 2,
            "--iterations", 2, "--out", out, *Q, *extra]


def edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def refused(tmp_path, args, *words) -> str:
    """The command is refused in one line holding `words`, and nothing under tmp_path changes."""
    before = tree(tmp_path)
    line = one_error(invoke(*args), *words)
    assert tree(tmp_path) == before
    return line


def pop(key):
    return lambda d: d.pop(key)


def put(path, value):
    def change(d):
        *parents, last = path.split(".")
        for k in parents:
            d = d[k]
        d[last] = value
    return change


# ---------------------------------------------------------------- the checked reader itself

def test_field_tables_name_nested_and_listed_fields_and_require_children_only_of_present_parents():
    fields = {"a": R.OBJECT, "a.b": R.INT, "xs": R.LIST, "xs[].n": R.NUMBER, "opt": R.OBJECT, "opt.k": R.TEXT}
    required = {"a", "a.b", "xs[].n", "opt.k"}
    R.check_fields("f.json", {"a": {"b": 1}, "xs": [{"n": 1.5}, {"n": 2}]}, fields, required, "fix it")  # no opt: fine
    for record, words in [
        ({"a": {}, "xs": []}, "f.json: field 'a.b' is missing; fix it"),
        ({"a": {"b": True}, "xs": []}, "field 'a.b' is true/false, not a whole number"),
        ({"a": {"b": 1}, "xs": [{"n": 1}, {"n": "2"}]}, "field 'xs[1].n' is a string, not a number"),
        ({"a": {"b": 1}, "xs": [{}]}, "field 'xs[0].n' is missing"),
        ({"a": {"b": 1}, "xs": [], "opt": {}}, "field 'opt.k' is missing"),
        ({"a": [], "xs": []}, "field 'a' is an empty list, not an object"),
    ]:
        with pytest.raises(ChimeraMixError, match=words.replace("[", r"\[").replace("]", r"\]")) as e:
            R.check_fields("f.json", record, fields, required, "fix it")
        assert "\n" not in str(e.value)


def test_metrics_lines_are_checked_and_a_torn_last_line_is_left_out(tmp_path):
    from chimeramix.plots import read_metrics
    from chimeramix.train.loop import _truncate_metrics

    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n{"step": 1')  # a kill during the append
    assert read_metrics(f) == [{"step": 5, "loss": 1.0}, {"step": 10, "loss": 0.5}]
    _truncate_metrics(f, 5)  # what a resume from the checkpoint of step 5 keeps, byte for byte
    assert f.read_text() == '{"step": 5, "loss": 1.0}\n'
    for text, words in [('{"step": 5}\n{"step"\n{"step": 10}\n', "metrics.jsonl: line 2 is not JSON"),
                        ('{"loss": 1.0}\n', "metrics.jsonl line 1: field 'step' is missing"),
                        ('[5]\n{"step": 5}\n', "line 1 is a list, not an object")]:
        f.write_text(text)
        with pytest.raises(ChimeraMixError, match=words) as e:
            read_metrics(f)
        assert "delete that line, or --force" in str(e.value)


# ---------------------------------------------------------------- result.json and run.json's result

@pytest.mark.parametrize("change,field", [
    (pop("accuracy"), "'accuracy' is missing"),
    (put("accuracy", "high"), "'accuracy' is a string, not a number"),
    (put("split", [1]), "'split' is a list, not an object"),
    (lambda d: d["split"].pop("seed"), "'split.seed' is missing"),
    (put("label", 5), "'label' is a whole number, not a string"),
    (put("config.method_options", [1]), "'config.method_options' is a list"),
    (put("generator_config", "x"), "'generator_config' is a string, not an object or null"),
])
def test_report_refuses_a_damaged_result_naming_the_file_and_field(made, tmp_path, change, field):
    clf = shutil.copytree(made["clf"], tmp_path / "clf")
    edit(clf / "result.json", change)
    refused(tmp_path, ["report", clf], f"{clf / 'result.json'}: field {field}", f"delete {clf}")


def test_experiment_run_again_over_a_damaged_result_is_refused_and_its_advice_gets_out(made, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ck = shutil.copytree(made["ck"], tmp_path / "ck")
    edit(ck / CLF_RUN / "result.json", put("accuracy", None))
    refused(tmp_path, [*EXPERIMENT, "--checkpoints", ck], "result.json: field 'accuracy' is null, not a number",
            f"delete {ck / CLF_RUN}")
    # the advice: delete the run and run experiment again, which retrains it
    shutil.rmtree(ck / CLF_RUN)
    r = invoke(*EXPERIMENT, "--checkpoints", ck)
    assert r.exit_code == 0 and "Baseline" in r.output, r.output


@pytest.mark.parametrize("command", ["predict", "curate", "experiment"])
def test_a_damaged_result_in_a_classifiers_run_json_is_refused_by_every_reader(made, tmp_path, command):
    ck = shutil.copytree(made["ck"], tmp_path / "ck")
    clf = ck / CLF_RUN
    edit(clf / "run.json", put("result.classes", "0123456789"))  # list("0123456789") would even pass for the classes
    args = {"predict": ["predict", clf, made["images"], *Q],
            "curate": curate_args(made["gen"], clf, tmp_path / "cur"),
            "experiment": [*EXPERIMENT, "--checkpoints", ck]}[command]
    refused(tmp_path, args, f"{clf / 'run.json'}: field 'result.classes' is a string, not a list", "--force")


# ---------------------------------------------------------------- manifest.json of exports and curations

def export_args(made, out, *extra):
    return ["export", "--generator", made["gen"], "--per-class", 1, "--out", out, *Q, *extra]


@pytest.mark.parametrize("change,field", [
    (pop("counts"), "'counts' is missing"),
    (put("counts.test", "797"), "'counts.test' is a string"),
    (put("files", {}), "'files' is an object, not a list"),
    (lambda m: m["files"][3]["parents"].update(train="12"), "'files[3].parents.train' is a string"),
    (put("kind", 3), "'kind' is a whole number, not a string"),
])
def test_export_again_over_a_damaged_manifest_is_refused_and_force_rebuilds_it(made, tmp_path, change, field):
    ex = shutil.copytree(made["ex"], tmp_path / "ex")
    edit(ex / "manifest.json", change)
    refused(tmp_path, export_args(made, ex), f"{ex / 'manifest.json'}: field {field}", "--force")
    # the advice: the same command with --force rebuilds it (the folder is provably chimeramix's)
    assert invoke(*export_args(made, ex, "--force")).exit_code == 0
    assert json.loads((ex / "manifest.json").read_text())["counts"]["generated"] == 10
    assert invoke(*export_args(made, ex)).exit_code == 0  # and it is reused again


@pytest.mark.parametrize("change,field", [
    (pop("history"), "'history' is missing"),
    (put("history", []), "'history' is an empty list, not a non-empty list"),
    (put("per_class", "333"), "'per_class' is a string"),
    (lambda m: m["counts"].pop("real"), "'counts.real' is missing"),
])
def test_curate_again_over_a_damaged_manifest_is_refused_naming_the_field(made, tmp_path, change, field):
    cur = shutil.copytree(made["cur"], tmp_path / "cur")
    edit(cur / "manifest.json", change)
    refused(tmp_path, curate_args(made["gen"], made["clf"], cur), f"{cur / 'manifest.json'}: field {field}",
            "chimeramix curate` command and --force")


@pytest.mark.parametrize("change,field", [
    (lambda m: m["files"][0].pop("batch"), "'files[0].batch' is missing"),
    (lambda m: m["files"][0].update(mask="zz"), "'files[0].mask' is a string, not a hex string"),
    (lambda m: m["files"][1].update(mask="00"), "'files[1].mask' holds fewer than the 64 bits"),
    (lambda m: m["files"][0]["parents"].update(train=[10**6, 1]), "'files[0].parents.train' names image 1000000"),
])
def test_rebuilding_a_file_from_a_damaged_manifest_is_refused_naming_the_field(made, tmp_path, change, field):
    from chimeramix.export import regenerate_file

    ex = shutil.copytree(made["ex"], tmp_path / "ex")
    edit(ex / "manifest.json", change)
    with pytest.raises(ChimeraMixError, match=r"field " + field.replace("[", r"\[").replace("]", r"\]")) as e:
        regenerate_file(ex, "train/0/gen_00000.png", device="cpu")
    assert "\n" not in str(e.value) and "--force" in str(e.value)


@pytest.mark.parametrize("change,field", [(pop("indices"), "'indices' is missing"),
                                          (put("indices", ["a", "b"]), "'indices[0]' is a string")])
def test_a_damaged_split_json_is_refused_and_deleting_it_as_advised_gets_out(made, tmp_path, change, field):
    gen = shutil.copytree(made["gen"], tmp_path / "gen")
    edit(gen / "split.json", change)
    args = ["export", "--generator", gen, "--per-class", 1, "--out", tmp_path / "ex", *Q]
    refused(tmp_path, args, f"{gen / 'split.json'}: field {field}", "delete it (run.json holds the same split)")
    (gen / "split.json").unlink()
    assert invoke(*args).exit_code == 0


def test_a_recorded_table_with_a_value_of_the_wrong_kind_is_refused(tmp_path):
    rec = tmp_path / "table.json"
    rec.write_text(json.dumps({"table": [{"setting": "s", "method": "Baseline", "seeds": [0], "accuracies": ["x"]}]}))
    refused(tmp_path, ["report", rec], "field 'table[0].accuracies[0]' is a string, not a number")


# ---------------------------------------------------------------- extreme values, before anything is allocated

@pytest.mark.parametrize("extra,words", [
    (["--size", 10**9, "--pool", 1], "lower --size or --pool"),  # before the advice to raise --pool to 10**9
    (["--size", 10**9], "lower --size or --pool"),  # the default pool, 4 x 10**9 images per class
    (["--pool", 10**9], "a pool of 1,000,000,000 images per class"),
    (["--size", 0], "--size 0 is smaller than --spc 2"),
    (["--size", -5], "--size -5 is smaller"),
])
def test_curate_refuses_sizes_that_cannot_fit_before_drawing_its_pool(made, tmp_path, extra, words):
    args = curate_args(made["gen"], made["clf"], tmp_path / "cur")
    for i in range(0, len(extra), 2):  # the later option wins: replace the defaults of curate_args
        args[args.index(extra[i]) + 1] = extra[i + 1]
    refused(tmp_path, args, words)


def test_export_refuses_a_manifest_that_cannot_fit_in_memory(made, tmp_path):
    import torch

    from chimeramix.memory import ENTRY_BYTES, available_bytes

    # 4 x the memory its entries need: refused by the memory check, or the disk's where the disk is the smaller
    per_class = 4 * available_bytes(torch.device("cpu")) // ENTRY_BYTES // 10
    args = ["export", "--generator", made["gen"], "--per-class", per_class, "--out", tmp_path / "ex", *Q]
    line = refused(tmp_path, args, "lower --per-class")
    assert "of memory but cpu has" in line or "GiB free" in line


# ---------------------------------------------------------------- names too long for the file system

@pytest.mark.parametrize("where", ["export", "export-temp", "curate", "predict", "predict-temp"])
def test_a_name_too_long_for_the_file_system_is_refused_before_anything_is_made(made, tmp_path, where):
    args = {
        "export": export_args(made, tmp_path / LONG),
        # 245 characters fit, but not the hidden .<name>.export-partial folder the export is built in
        "export-temp": export_args(made, tmp_path / ("e" * 245)),
        "curate": curate_args(made["gen"], made["clf"], tmp_path / LONG / "cur"),
        "predict": ["predict", made["clf"], made["images"], "--out", tmp_path / (LONG + ".csv"), *Q],
        # and not the atomic write's .<name>.<random>.tmp beside it
        "predict-temp": ["predict", made["clf"], made["images"], "--out", tmp_path / ("p" * 250), *Q],
    }[where]
    line = refused(tmp_path, args, "more than the 255 its file system allows", "choose a shorter --out")
    assert LONG not in line  # the name is shown shortened


def test_class_folders_with_a_line_break_or_a_long_name_export_and_report_on_one_line(tmp_path, make_image_folder):
    data = make_image_folder(classes=("a\nb", "k" * 250), train=2, test=1, size=32)
    gen = tmp_path / "gen"
    r = invoke("fit-generator", "--data", data, "--spc", 1, *Q, "--mask", "grid", "--ngf", 4, "--ndf", 4,
               "--batch-size", 2, "--steps", 1, "--out", gen)
    assert r.exit_code == 0, r.output
    r = invoke("export", "--generator", gen, "--per-class", 1, "--out", tmp_path / "ex", *Q)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ex" / "train" / "a\nb" / "gen_00000.png").is_file()
    # a refusal that quotes the class stays one line
    refused(tmp_path, ["fit-classifier", "--data", data, "--spc", 5, *Q], r"class 'a\nb'")
