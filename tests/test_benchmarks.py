"""The benchmark runs end to end and reports every figure (its numbers are never asserted: no timing in tests)."""

import json

from benchmarks.run import format_table, main


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "bench.json"
    res = main(["--device", "cpu", "--presets", "fast", "--warmup", "0", "--steps", "1", "--repeats", "1",
                "--eval-images", "16", "--spc", "2", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["results"].keys() == res["results"].keys()
    names = set(saved["results"])
    assert {"fast generator seg", "fast generator grid", "fast classifier baseline", "fast classifier chimeramix",
            "segmentation", "fast evaluation"} <= names
    for name in ("fast generator seg", "fast classifier baseline", "fast evaluation"):
        fig = saved["results"][name]
        assert fig["optimised"]["per_second"] > 0 and fig["reference"]["per_second"] > 0 and fig["speedup"] > 0
    assert "| fast generator seg |" in format_table(saved)


def test_roofline_smoke_counts_flops_with_torchs_counter(tmp_path):
    from benchmarks.roofline import format_table as roofline_table
    from benchmarks.roofline import main as roofline

    out = tmp_path / "roof.json"
    res = roofline(["--presets", "fast", "--precisions", "fp32", "--matmul", "64", "--steps", "1", "--repeats", "1",
                    "--spc", "2", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["peaks"]["float32"]["gflops"] > 0 and set(saved["steps"]) == {
        "fast classifier none fp32", "fast classifier chimeramix fp32", "fast generator fp32"}
    # a 3x3 convolution's forward is 2 x N x Cout x H x W x Cin x 9 FLOPs; its backward (input and weights) twice that
    conv = next(c for c in saved["convolutions"] if c["shape"] == "32->32 @ 32x32")
    assert conv["flops"] == 3 * 2 * 10 * 32 * 32 * 32 * 32 * 9
    # the baseline step of WRN-16-2 at batch 10 (32 px): 6.06 GFLOP forward and backward, as the counter counts it
    assert abs(saved["steps"]["fast classifier none fp32"]["flops"] / 1e9 - 6.06) < 0.01
    assert res["steps"].keys() == saved["steps"].keys() and "| fast classifier none step" in roofline_table(saved)
