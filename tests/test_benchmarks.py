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
