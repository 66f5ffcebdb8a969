"""Records written by earlier code stay readable: run.json, result.json and the manifests of export and curate, as
fixtures copied from real runs (tests/fixtures/records: a generator, a ChimeraMix classifier and an export made by
commit 6735ca8, the pair-only code before the single K-way path; a K = 3 curation made after it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from chimeramix import masks as M
from chimeramix.export import _unpack
from chimeramix.fileio import read_json
from chimeramix.outfolder import finished_manifest
from chimeramix.report import group_by_setting, load_results
from chimeramix.runs import read_run

RECORDS = Path(__file__).parent / "fixtures" / "records"


def test_a_generator_run_record_reads_back_with_its_mask_rules():
    info = read_run(RECORDS / "gen-grid", "generator")
    assert info["status"] == "finished" and info["step"] == info["total_steps"] == 6
    spec = M.MaskSpec.from_config(info["config"])
    assert spec.mask == "grid" and spec.parents == 2  # a pair run records no `parents`



def test_an_older_generator_record_reads_as_todays_config_with_the_values_it_trained_with():
    from chimeramix.config import generator_from_record

    info = read_run(RECORDS / "gen-grid", "generator")
    stored = info["config"]
    assert not {"parents", "d_every", "warmup", "d_lr"} & set(stored)  # fields added after this run was written
    cfg = generator_from_record(stored)
    assert (cfg.parents, cfg.d_every, cfg.warmup, cfg.d_lr) == (2, 1, 0.0, None)
    assert (cfg.ngf, cfg.work_size, cfg.steps, cfg.mask, cfg.lr_milestones) == (8, 32, 6, "grid", (0.3, 0.6, 0.8))
    assert not hasattr(cfg, "fingerprint")  # the split's key, not a setting
    # a record of today's K-parent run keeps what it stored
    assert generator_from_record({**stored, "parents": 3, "d_every": 2}).parents == 3


def test_a_classifier_result_reads_back_into_a_table():
    info = read_run(RECORDS / "clf-chimeramix-grid", "classifier")
    assert info["status"] == "finished"
    results = load_results([RECORDS / "clf-chimeramix-grid"])
    (table,) = group_by_setting(results)
    (row,) = table.rows
    assert row.method.startswith("ChimeraMix+Grid") and row.seeds == [0]
    assert abs(row.mean - 100 * results[0]["accuracy"]) < 1e-9


def _copy(name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    shutil.copytree(RECORDS / name, out)
    return out


def test_an_export_made_by_the_pair_only_code_is_recognised_and_its_masks_decode(tmp_path):
    out = _copy("export-grid", tmp_path)
    manifest = read_json(out / "manifest.json")
    # the same request finds the finished export (nothing to redo); another is refused without --force
    assert finished_manifest(out, "export", manifest["request"], force=False) == manifest
    fs = manifest["mask"]["feature_size"]
    for e in manifest["files"]:
        if e["kind"] == "generated":
            w = _unpack(e["mask"], fs, len(e["parents"]["train"]))
            assert w.shape == (2, fs, fs) and torch.equal(w.sum(0), torch.ones(fs, fs))
            assert abs(float(w[0].mean()) - e["share_first"]) < 1e-9


def test_a_curation_of_three_parent_compositions_is_recognised(tmp_path):
    out = _copy("curate-seg-k3", tmp_path)
    manifest = read_json(out / "manifest.json")
    assert finished_manifest(out, "curate", manifest["request"], force=False) == manifest
    gen = [e for e in manifest["files"] if e["kind"] == "generated"]
    assert gen and all(len(e["parents"]["train"]) == 3 for e in gen)


def test_a_run_record_of_a_newer_schema_is_refused_in_one_line_and_an_older_one_reads(tmp_path):
    import json

    import pytest

    from chimeramix.errors import ChimeraMixError
    from chimeramix.records import RUN_SCHEMA

    assert "schema" not in read_run(RECORDS / "gen-grid", "generator")  # schema 1: written before the key
    run = _copy("gen-grid", tmp_path)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "schema": RUN_SCHEMA + 1}))
    with pytest.raises(ChimeraMixError, match=f"newer chimeramix \\(run record schema {RUN_SCHEMA + 1};.*upgrade chimeramix"):
        read_run(run, "generator")
    (run / "run.json").write_text(json.dumps({**info, "schema": RUN_SCHEMA}))
    assert read_run(run, "generator")["schema"] == RUN_SCHEMA
