import csv
import io
import json
import math

import pytest
import torch

from chimeramix.errors import ChimeraMixError
from chimeramix.report import (Table, classification_metrics, generator_recipe, group_by_setting, load_recorded,
                               load_results, load_tables, paired_difference, report_csv, setting_of, table_markdown,
                               write_tables)


def group_by_method(results):
    """The rows of runs that share one setting (the one table group_by_setting makes of them)."""
    (table,) = group_by_setting(results)
    return table.rows


def table_csv(rows):
    return report_csv([Table("", {}, rows)])


def test_classification_metrics_against_hand_counts():
    true = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    m = classification_metrics(pred, true, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    b = m["per_class"][1]
    assert (b["precision"], b["recall"], b["support"]) == (pytest.approx(1 / 2), pytest.approx(1 / 2), 2)
    c = m["per_class"][2]
    assert c["precision"] == pytest.approx(1 / 2) and c["recall"] == 1 and c["f1"] == pytest.approx(2 / 3)


def _result(label, seed, acc, spc=5, run_dir=None, options=None, **config):
    """A result.json as classifier runs write it, with only the fields reports read."""
    cfg = {"preset": "fast", "steps": 1000, "arch": "wrn16-2", "batch_size": 10, "lr": 0.05, "device": "cpu",
           "method_options": {"seed": seed, "p_generated": 0.5, **(options or {})}, **config}
    return {"label": label, "accuracy": acc, "split": {"seed": seed, "source": "x", "spc": spc}, "config": cfg,
            "run_dir": run_dir or f"ck/{label}-spc{spc}-seed{seed}"}


def test_mean_and_sample_std_match_hand_computed_values():
    rows = group_by_method([_result("ChimeraMix+Seg", 1, 0.40), _result("Baseline", 0, 0.30), _result("Baseline", 1, 0.34),
                            _result("ChimeraMix+Seg", 0, 0.36), _result("Baseline", 2, 0.29)])
    assert [r.method for r in rows] == ["Baseline", "ChimeraMix+Seg"]
    base = rows[0]
    assert base.seeds == [0, 1, 2] and base.accuracies == pytest.approx([30, 34, 29])
    assert base.mean == pytest.approx(31.0)
    assert base.std == pytest.approx(math.sqrt(((30 - 31) ** 2 + (34 - 31) ** 2 + (29 - 31) ** 2) / 2))  # 2.6458
    assert rows[1].mean == pytest.approx(38.0) and rows[1].std == pytest.approx(math.sqrt(8))
    # paired over seeds 0 and 1 only (seed 2 has no ChimeraMix run): diffs 6, 6, so no spread and a point interval
    s = rows[1].vs_baseline
    assert s.n == 2 and s.diffs == pytest.approx([6, 6]) and s.ci_low == pytest.approx(6) and s.ci_high == pytest.approx(6)
    md = table_markdown(rows, "t")
    assert "| Baseline | 31.00 ± 2.65 | - | - | - | 30.00 | 34.00 | 29.00 |" in md
    assert "| ChimeraMix+Seg | 38.00 ± 2.83 | +6.00 [6.00, 6.00] * | <0.001 | 2 | 36.00 (+6.00) | 40.00 (+6.00) | - |" in md
    parsed = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert parsed[0]["method"] == "Baseline" and float(parsed[0]["std"]) == pytest.approx(2.6458, abs=1e-4)
    assert parsed[0]["diff_mean"] == "" and parsed[1]["n_paired"] == "2" and float(parsed[1]["diff_mean"]) == 6


def test_paired_t_against_a_hand_computed_example():
    # diffs 1.15, 1.86, 2.99: mean 2.0; squared deviations 0.7225 + 0.0196 + 0.9801 = 1.7222, sd = sqrt(1.7222 / 2)
    # = 0.92795, se = sd / sqrt(3) = 0.53575, t = 2.0 / se = 3.7331 with df 2; t(0.975, 2) = 4.302653 from the table,
    # half-width 4.302653 * 0.53575 = 2.30517: CI [-0.30517, 4.30517]. With df 2 the two-sided p has a closed form,
    # 1 - t / sqrt(2 + t^2) = 1 - 3.7331 / 3.99188 = 0.06486.
    base = [30.0, 31.0, 29.0]
    s = paired_difference([b + d for b, d in zip(base, [1.15, 1.86, 2.99])], base)
    assert s.n == 3 and s.diffs == pytest.approx([1.15, 1.86, 2.99])
    assert s.mean == pytest.approx(2.0)
    assert (s.ci_low, s.ci_high) == (pytest.approx(-0.30517, abs=1e-3), pytest.approx(4.30517, abs=1e-3))
    assert s.p == pytest.approx(0.06486, abs=1e-3)
    assert not s.excludes_zero


def test_paired_t_against_students_sleep_data():
    # Cushny and Peebles' sleep data (Student 1908; R's `sleep`): hours gained on drug 2 vs drug 1 by the same 10
    # patients. R's t.test(paired = TRUE): mean difference 1.58, t = 4.0621, df = 9, p = 0.002833,
    # 95% CI [0.7001142, 2.4598858].
    drug1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    drug2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    s = paired_difference(drug2, drug1)
    assert s.n == 10 and s.mean == pytest.approx(1.58)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.7001142, abs=1e-4), pytest.approx(2.4598858, abs=1e-4))
    assert s.p == pytest.approx(0.002833, abs=1e-5)
    assert s.excludes_zero
    flipped = paired_difference(drug1, drug2)  # the other way round: same p, interval mirrored
    assert flipped.p == pytest.approx(s.p) and flipped.ci_high == pytest.approx(-s.ci_low) and flipped.excludes_zero


def test_paired_difference_says_na_below_two_pairs_and_refuses_unpaired_lists():
    s = paired_difference([40.0], [38.5])
    assert s.n == 1 and s.mean == pytest.approx(1.5) and (s.ci_low, s.ci_high, s.p) == (None, None, None)
    assert not s.excludes_zero
    with pytest.raises(ChimeraMixError, match="one of each per seed"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ChimeraMixError, match="no paired values"):
        paired_difference([], [])


def test_star_marks_only_intervals_that_exclude_zero():
    base = [0.300, 0.310, 0.290]
    clear = [0.330, 0.342, 0.318]  # +3.0, +3.2, +2.8: tight, far from 0
    noisy = [0.3115, 0.3286, 0.3199]  # the hand example's diffs, +1.15, +1.86, +2.99: CI [-0.31, 4.31]
    results = [_result("Baseline", i, a) for i, a in enumerate(base)]
    results += [_result("Clear", i, a) for i, a in enumerate(clear)] + [_result("Noisy", i, a) for i, a in enumerate(noisy)]
    md = table_markdown(group_by_method(results))
    clear_line = next(ln for ln in md.splitlines() if ln.startswith("| Clear |"))
    noisy_line = next(ln for ln in md.splitlines() if ln.startswith("| Noisy |"))
    assert "+3.00 [" in clear_line and "] * |" in clear_line
    assert "+2.00 [-0.31, 4.31] |" in noisy_line and "*" not in noisy_line
    assert "| 0.065 | 3 |" in noisy_line


def test_only_seeds_both_ran_are_paired():
    results = [_result("Baseline", s, 0.30 + s / 100) for s in (1, 2, 3)] + [_result("MixUp", s, 0.35) for s in (0, 1, 2)]
    _, mixup = group_by_method(results)
    # MixUp seeds 1 and 2 against the baseline's 31 and 32: diffs 4 and 3
    assert mixup.vs_baseline.n == 2 and mixup.vs_baseline.diffs == pytest.approx([4, 3])
    assert mixup.vs_baseline.mean == pytest.approx(3.5)
    # no seed in common: n 0, and nothing a JSON reader would choke on
    base, lone = group_by_method([_result("Baseline", 0, 0.3), _result("MixUp", 1, 0.35)])
    assert lone.vs_baseline.n == 0 and lone.to_dict()["diff_mean"] is None
    assert "| MixUp | 35.00 ± n/a | n/a | n/a | 0 | - | 35.00 |" in table_markdown([base, lone])


def test_single_seed_std_is_na_not_zero():
    (row,) = group_by_method([_result("MixUp", 3, 0.5)])
    assert row.std is None and row.mean == 50 and row.to_dict()["std"] is None
    assert "| MixUp | 50.00 ± n/a | 50.00 |" in table_markdown([row])
    assert list(csv.DictReader(io.StringIO(table_csv([row]))))[0]["std"] == "n/a"
    # one paired seed: a difference, but no interval and no p
    base, mix = group_by_method([_result("Baseline", 3, 0.45), _result("MixUp", 3, 0.5)])
    assert "| MixUp | 50.00 ± n/a | +5.00 [n/a] | n/a | 1 | 50.00 (+5.00) |" in table_markdown([base, mix])
    d = mix.to_dict()
    assert d["diff_mean"] == pytest.approx(5) and d["ci_low"] is None and d["p"] is None and d["n_paired"] == 1


def test_runs_of_spc_2_and_spc_5_land_in_separate_tables_and_are_never_averaged():
    results = [_result("Baseline", s, 0.20, spc=2) for s in (0, 1)] + [_result("Baseline", s, 0.40, spc=5) for s in (0, 1)]
    results += [_result("MixUp", s, 0.22, spc=2) for s in (0, 1)] + [_result("MixUp", s, 0.47, spc=5) for s in (0, 1)]
    tables = group_by_setting(results)
    assert [t.name for t in tables] == ["source x, spc 2, preset fast, 1000 steps", "source x, spc 5, preset fast, 1000 steps"]
    assert [[r.mean for r in t.rows] for t in tables] == [[pytest.approx(20), pytest.approx(22)],
                                                          [pytest.approx(40), pytest.approx(47)]]
    assert tables[0].rows[1].vs_baseline.mean == pytest.approx(2) and tables[1].rows[1].vs_baseline.mean == pytest.approx(7)
    parsed = list(csv.DictReader(io.StringIO(report_csv(tables))))
    assert [(p["setting"].split(", ")[1], p["method"]) for p in parsed] == [
        ("spc 2", "Baseline"), ("spc 2", "MixUp"), ("spc 5", "Baseline"), ("spc 5", "MixUp")]


def test_what_splits_a_table_and_what_does_not():
    a = _result("Baseline", 0, 0.3)
    assert setting_of(a) == setting_of(_result("Baseline", 1, 0.3, device="cuda", amp="off", log_every=7, data_dir="/d"))
    # the precision splits: bf16 (asked for, or auto on CUDA) is not averaged with fp32
    assert setting_of(a)["precision"] == "fp32"
    assert setting_of(_result("Baseline", 0, 0.3, amp="on"))["precision"] == "bf16"
    assert setting_of(_result("Baseline", 0, 0.3, device="cuda", amp="auto"))["precision"] == "bf16"
    assert setting_of(a) != setting_of(_result("Baseline", 0, 0.3, amp="on"))
    names = [t.name for t in group_by_setting([a, _result("Baseline", 0, 0.31, amp="on", run_dir="bf")])]
    assert names == ["source x, spc 5, preset fast, 1000 steps, precision fp32",
                     "source x, spc 5, preset fast, 1000 steps, precision bf16"]
    assert setting_of(a) != setting_of(_result("Baseline", 0, 0.3, steps=4000))
    assert setting_of(a) != setting_of(_result("Baseline", 0, 0.3, lr=0.1))
    tables = group_by_setting([a, _result("Baseline", 0, 0.31, arch="wrn16-8", run_dir="elsewhere")])
    # the names say what differs beyond the usual four
    assert [t.name for t in tables] == ["source x, spc 5, preset fast, 1000 steps, arch wrn16-2",
                                        "source x, spc 5, preset fast, 1000 steps, arch wrn16-8"]


def test_a_folder_is_named_as_the_user_gave_it_with_its_fingerprint_and_two_spellings_of_it_are_one_setting():
    def run(seed, acc, data, fingerprint="0123456789abcdef"):
        r = _result("Baseline", seed, acc, data=data)
        r["split"].update(source="/home/someone/shared/data/cifar10", fingerprint=fingerprint)
        return r

    (table,) = group_by_setting([run(0, 0.30, "../shared/data/cifar10"), run(1, 0.32, "/home/someone/shared/data/cifar10")])
    # the path as given first, not the machine's resolved path; the fingerprint says which images
    assert table.name == "source ../shared/data/cifar10 (fingerprint 0123456789abcdef), spc 5, preset fast, 1000 steps"
    assert table.rows[0].seeds == [0, 1]
    # the same path holding other images is another setting
    other = group_by_setting([run(0, 0.30, "data"), run(0, 0.40, "data", fingerprint="fedcba9876543210")])
    assert [t.name.split(",")[0] for t in other] == ["source data (fingerprint 0123456789abcdef)",
                                                     "source data (fingerprint fedcba9876543210)"]


def test_method_options_split_rows_but_the_seed_inside_them_does_not():
    results = [_result("MixUp", s, 0.30 + s / 100, options={"alpha": 0.2}) for s in (0, 1)]
    results += [_result("MixUp", s, 0.40, options={"alpha": 1.0}) for s in (0, 1)]
    rows = group_by_method(results)
    assert [(r.method, r.seeds) for r in rows] == [("MixUp (alpha=0.2)", [0, 1]), ("MixUp (alpha=1.0)", [0, 1])]
    assert rows[0].mean == pytest.approx(30.5) and rows[1].mean == pytest.approx(40)
    # the same options at two seeds (method_options carries the seed) stay one row
    (row,) = group_by_method([_result("MixUp", s, 0.3, options={"alpha": 0.2}) for s in (0, 1, 2)])
    assert row.method == "MixUp" and row.seeds == [0, 1, 2]


def test_the_same_label_and_seed_twice_is_refused_naming_both_folders():
    results = [_result("Baseline", 0, 0.3, run_dir="ck/a"), _result("Baseline", 0, 0.31, run_dir="ck/b")]
    with pytest.raises(ChimeraMixError) as e:
        group_by_setting(results)
    msg = str(e.value)
    assert "ck/a" in msg and "ck/b" in msg and "seed 0" in msg and "\n" not in msg
    # the same label and seed at another spc is another table, not a clash
    assert len(group_by_setting([results[0], _result("Baseline", 0, 0.31, spc=2)])) == 2


def test_write_tables_puts_each_setting_in_its_own_table_and_chart(tmp_path):
    results = [_result(m, s, 0.3 + s / 100, spc=spc) for spc in (2, 5) for m in ("Baseline", "MixUp") for s in (0, 1)]
    md, cs, charts = write_tables(group_by_setting(results), tmp_path / "t", "demo")
    assert charts == [tmp_path / "t-1.png", tmp_path / "t-2.png"]
    assert all(c.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for c in charts)
    text = md.read_text()
    assert text.startswith("# demo\n") and text.count("| Baseline |") == 2
    assert text.index("## source x, spc 2") < text.index("](t-1.png)") < text.index("## source x, spc 5") < text.index("](t-2.png)")
    assert len(list(csv.DictReader(io.StringIO(cs.read_text())))) == 4


def test_load_results_refuses_empty_and_foreign_folders(tmp_path):
    with pytest.raises(ChimeraMixError, match="no runs"):
        load_results([])
    with pytest.raises(ChimeraMixError, match="result.json"):
        load_results([tmp_path])
    (tmp_path / "result.json").write_text(json.dumps(_result("Baseline", 0, 0.5)))
    assert load_results([tmp_path])[0]["run_dir"] == str(tmp_path)


def test_a_recorded_table_reads_back_with_the_same_rows_and_recomputed_statistics(tmp_path):
    results = [_result(m, s, a / 100, spc=spc) for spc in (2, 5) for m, base in (("Baseline", 30), ("MixUp", 33))
               for s, a in zip((0, 1, 2), (base, base + 2, base - 1 + (m == "MixUp") * 3))]
    tables = group_by_setting(results)
    rows = [{"setting": t.name, **r.to_dict()} for t in tables for r in t.rows]
    # experiment's summary (a dict with "table") and `report --json` (the bare list) both read back
    (tmp_path / "exp.json").write_text(json.dumps({"data": "x", "table": rows}))
    (tmp_path / "rep.json").write_text(json.dumps(rows))
    for name in ("exp.json", "rep.json"):
        back = load_recorded(tmp_path / name)
        assert [t.name for t in back] == [t.name for t in tables]
        assert [table_markdown(t.rows) for t in back] == [table_markdown(t.rows) for t in tables]
    mixup = load_recorded(tmp_path / "rep.json")[0].rows[1]
    # MixUp 33, 35, 35 vs 30, 32, 29: diffs 3, 3, 6
    assert mixup.vs_baseline.diffs == pytest.approx([3, 3, 6]) and mixup.vs_baseline.mean == pytest.approx(4)


def test_a_file_that_is_not_a_recorded_table_is_refused_in_one_line(tmp_path):
    bad = {"broken.json": "{not json", "other.json": json.dumps({"table": [{"method": "x"}]}), "empty.json": "[]"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ChimeraMixError) as e:
            load_recorded(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_load_tables_reads_folders_or_recorded_files_but_not_both(tmp_path):
    run = tmp_path / "b0"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(_result("Baseline", 0, 0.3)))
    (tmp_path / "rec.json").write_text(json.dumps([{"setting": "s", "method": "Baseline", "seeds": [0], "accuracies": [30.0]}]))
    assert [t.name for t in load_tables([run])] == ["source x, spc 5, preset fast, 1000 steps"]
    assert [(t.name, t.rows[0].accuracies) for t in load_tables([tmp_path / "rec.json"])] == [("s", [30.0])]
    with pytest.raises(ChimeraMixError, match="not both"):
        load_tables([tmp_path / "rec.json", run])


def test_generators_trained_differently_are_rows_apart_even_on_disjoint_seeds(tmp_path):
    # seeds 0-1 with a 1,000-step generator and seeds 2-3 with a 4,000-step one must not average into one row
    gen = {"preset": "cpu", "steps": 1000, "ngf": 16, "seed": 0, "data": "x", "device": "cpu", "amp": "on"}
    results = [_result("Baseline", s, 0.30) for s in range(4)]
    results += [{**_result("ChimeraMix+Seg", s, 0.33), "generator_config": generator_recipe({**gen, "seed": s})} for s in (0, 1)]
    results += [{**_result("ChimeraMix+Seg", s, 0.36), "generator_config": generator_recipe({**gen, "seed": s, "steps": 4000})}
                for s in (2, 3)]
    rows = group_by_method(results)
    assert [(r.method, r.seeds) for r in rows] == [("Baseline", [0, 1, 2, 3]), ("ChimeraMix+Seg (generator steps=1000)", [0, 1]),
                                                    ("ChimeraMix+Seg (generator steps=4000)", [2, 3])]
    # the generator's seed, data path and runtime switches do not split a row
    assert "seed" not in generator_recipe(gen) and "amp" not in generator_recipe(gen) and "data" not in generator_recipe(gen)


def test_a_result_without_its_generator_recipe_reads_it_from_the_generator_run(tmp_path):
    gen_dir = tmp_path / "gen"
    gen_dir.mkdir()
    (gen_dir / "run.json").write_text(json.dumps({"kind": "generator", "config": {"steps": 4000, "ngf": 16, "seed": 3}}))
    clf = tmp_path / "clf"
    clf.mkdir()
    (clf / "result.json").write_text(json.dumps({**_result("ChimeraMix+Seg", 3, 0.4), "generator_run": str(gen_dir)}))
    (r,) = load_results([clf])
    assert r["generator_config"] == {"ngf": 16, "steps": 4000}
    # a generator folder that is gone leaves the result as it was, without a recipe
    (gen_dir / "run.json").unlink()
    (r,) = load_results([clf])
    assert "generator_config" not in r
