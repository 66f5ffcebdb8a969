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
    assert spec.kind == "grid" and spec.parents == 2  # a pair run records no `parents`


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
