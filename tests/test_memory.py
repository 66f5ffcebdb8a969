"""memory: an extreme size is refused in one line before anything is allocated or written."""

import pytest
import torch
from typer.testing import CliRunner

from chimeramix.config import GeneratorConfig, make_config
from chimeramix.errors import ChimeraMixError
from chimeramix.memory import check_generator_fits, parameter_count
from chimeramix.models import MixingGenerator
from cli.app import app


def test_parameters_are_counted_without_allocating():
    # ngf 4096 would be ~11 GB of fp32 weights; on the meta device counting it is instant
    big = parameter_count(lambda: MixingGenerator(4096, 2, False))
    small = parameter_count(lambda: MixingGenerator(16, 2, False))
    assert small == sum(p.numel() for p in MixingGenerator(16, 2, False).parameters())
    assert big > 1e9 and big / small > 4096 ** 2 / 16 ** 2 / 2  # quadratic in the width


def test_a_generator_that_cannot_fit_is_refused_naming_what_to_lower():
    cfg = make_config(GeneratorConfig, "fast", data="digits", spc=2, ngf=16, ndf=16, batch_size=16)
    cfg.work_size = 32
    check_generator_fits(cfg, torch.device("cpu"), available=2**30)  # the cpu preset's size fits in 1 GiB
    cfg.ngf = 8192
    with pytest.raises(ChimeraMixError, match=r"needs about .* GiB .* has 1.0 GiB free: lower --ngf, --ndf or --batch-size"):
        check_generator_fits(cfg, torch.device("cpu"), available=2**30)


def test_cli_refuses_an_extreme_ngf_and_seed_range_in_one_line_leaving_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    cases = [
        (["fit-generator", "--data", "digits", "--spc", "2", "--ngf", "1000000", "--device", "cpu", "--quiet"], "lower --ngf"),
        (["experiment", "--data", "digits", "--spc", "2", "--seeds", "0-4000000000", "--device", "cpu", "--quiet"],
         "at most 1,000"),
        (["experiment", "--data", "digits", "--spc", "2", "--seeds", ",".join(map(str, range(1001))), "--quiet"], "at most 1,000"),
        (["fit-generator", "--data", "digits", "--spc", "2", "--mask", "grid", "--grid-k", "100000000", "--device", "cpu",
          "--quiet"], "use at most 32"),
    ]
    for args, words in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr
        assert list(tmp_path.iterdir()) == []
