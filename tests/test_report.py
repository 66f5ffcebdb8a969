import csv
import io
import json
import math

import pytest
import torch

from chimeramix.errors import ChimeraMixError
from chimeramix.report import classification_metrics, group_by_method, load_results, table_csv, table_markdown


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


def _result(label, seed, acc):
    return {"label": label, "accuracy": acc, "split": {"seed": seed, "source": "x", "spc": 5}}


def test_mean_and_sample_std_match_hand_computed_values():
    rows = group_by_method([_result("ChimeraMix+Seg", 1, 0.40), _result("Baseline", 0, 0.30), _result("Baseline", 1, 0.34),
                            _result("ChimeraMix+Seg", 0, 0.36), _result("Baseline", 2, 0.29)])
    assert [r.method for r in rows] == ["Baseline", "ChimeraMix+Seg"]
    base = rows[0]
    assert base.seeds == [0, 1, 2] and base.accuracies == pytest.approx([30, 34, 29])
    assert base.mean == pytest.approx(31.0)
    assert base.std == pytest.approx(math.sqrt(((30 - 31) ** 2 + (34 - 31) ** 2 + (29 - 31) ** 2) / 2))  # 2.6458
    assert rows[1].mean == pytest.approx(38.0) and rows[1].std == pytest.approx(math.sqrt(8))
    md = table_markdown(rows, "t")
    assert "| Baseline | 31.00 ± 2.65 | 30.00 | 34.00 | 29.00 |" in md
    assert "| ChimeraMix+Seg | 38.00 ± 2.83 | 36.00 | 40.00 | - |" in md
    parsed = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert parsed[0]["method"] == "Baseline" and float(parsed[0]["std"]) == pytest.approx(2.6458, abs=1e-4)


def test_single_run_has_zero_std():
    (row,) = group_by_method([_result("MixUp", 3, 0.5)])
    assert row.std == 0 and row.mean == 50


def test_load_results_refuses_empty_and_foreign_folders(tmp_path):
    with pytest.raises(ChimeraMixError, match="no runs"):
        load_results([])
    with pytest.raises(ChimeraMixError, match="result.json"):
        load_results([tmp_path])
    (tmp_path / "result.json").write_text(json.dumps(_result("Baseline", 0, 0.5)))
    assert load_results([tmp_path])[0]["run_dir"] == str(tmp_path)
