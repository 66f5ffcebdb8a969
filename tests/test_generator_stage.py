"""fit-generator: training signal, checkpoints, resume equivalence, run-folder rules."""

import json

import pytest
import torch

from chimeramix import checkpoint as ckpt
from chimeramix.config import GeneratorConfig, make_config, resolve_generator
from chimeramix.errors import ChimeraMixError
from chimeramix.progress import Progress
from chimeramix.train.generator import GeneratorTrainer, device_data, fit_generator, load_generator, lr_factor
from chimeramix.train.loop import RunInterrupted
from chimeramix.train.setup import config_overrides, config_tag, prepare_data, seeded_generator

TINY = dict(data="digits", spc=3, seed=0, device="cpu", ngf=4, ndf=4, batch_size=6, log_every=2, checkpoint_every=4)


def tiny(**kw):
    return make_config(GeneratorConfig, "fast", **{**TINY, **kw})


def test_lr_schedule_drops_at_30_60_80_percent():
    f = [lr_factor(s, 100, (0.3, 0.6, 0.8), 0.2) for s in (0, 29, 30, 59, 60, 80, 99)]
    assert f == pytest.approx([1, 1, 0.2, 0.2, 0.04, 0.008, 0.008])


def test_warmup_ramps_linearly_then_the_milestones_apply():
    f = [lr_factor(s, 100, (0.3, 0.6, 0.8), 0.2, warmup=0.1) for s in (0, 4, 9, 10, 29, 30)]
    assert f == pytest.approx([0.1, 0.5, 1, 1, 1, 0.2])
    assert lr_factor(0, 100, (0.5,), 0.2, warmup=0.0) == 1  # no warm-up: the paper's schedule from the first step


def test_short_budget_levers_are_checked_and_stored_only_when_set():
    from chimeramix.config import generator_run_config

    plain = generator_run_config(make_config(GeneratorConfig, "fast"))
    assert not {"d_lr", "d_every", "warmup", "parents"} & set(plain)  # older runs' configs stay equal
    tuned = generator_run_config(make_config(GeneratorConfig, "fast", d_lr=1e-4, d_every=2, warmup=0.05))
    assert (tuned["d_lr"], tuned["d_every"], tuned["warmup"]) == (1e-4, 2, 0.05)
    for kw, word in [({"d_every": 0}, "--d-every"), ({"warmup": 1.0}, "--warmup"), ({"d_lr": -1.0}, "--d-lr"),
                     ({"lr_milestones": (0.6, 0.3)}, "--lr-milestones"), ({"lr_milestones": (0.5, 1.5)}, "--lr-milestones")]:
        with pytest.raises(ChimeraMixError, match=word):
            make_config(GeneratorConfig, "fast", **kw)


def test_discriminator_has_its_own_lr_and_skips_updates_between_its_steps():
    tr = _trainer(mask="grid", d_lr=1e-5, d_every=2, lr=1e-3)
    tr.step(0, 10)
    assert tr.opt_d.param_groups[0]["lr"] == pytest.approx(1e-5) and tr.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3)
    before = {k: v.clone() for k, v in tr.D.state_dict().items()}
    g_before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    out = tr.step(1, 10)  # an odd step: G learns, D is left alone
    assert all(torch.equal(before[k], v) for k, v in tr.D.state_dict().items())
    assert any(not torch.equal(g_before[k], v) for k, v in tr.G.state_dict().items())
    assert set(out) == {"rec", "lap", "adv", "d", "g"}
    tr.step(2, 10)
    assert any(not torch.equal(before[k], v) for k, v in tr.D.state_dict().items())


def test_paper_preset_resolves_to_published_settings():
    cfg = resolve_generator(make_config(GeneratorConfig, "paper", spc=5), image_size=32, n_train=50)
    assert (cfg.work_size, cfg.batch_size, cfg.ngf, cfg.seg_scale, cfg.seg_min_size) == (64, 64, 64, 60, 60)
    assert cfg.repeats == 100 and cfg.steps == 200 * 79  # 200 epochs of ceil(50 * 100 / 64) steps
    stl = resolve_generator(make_config(GeneratorConfig, "paper", spc=5), image_size=96, n_train=50)
    assert (stl.work_size, stl.batch_size, stl.seg_scale, stl.seg_size) == (96, 8, 400, 96)
    # the fast preset works at 32x32 but segments at 64x64, where scale/min_size 60 were tuned
    fast = resolve_generator(make_config(GeneratorConfig, "fast", spc=5), image_size=32, n_train=50)
    assert (fast.work_size, fast.seg_size, cfg.seg_size) == (32, 64, 64)
    # the public code's procedure is every preset's default (docs/fidelity.md)
    for c in (cfg, stl, fast):
        assert (c.seg_mask, c.grid_offset, c.mask_resize, c.seg_input, c.d_step, c.decoder_res_blocks, c.w_rec,
                c.lap_levels) == ("range", "batch", "nearest", "float", "fresh", False, 1000.0, 3)


def test_stl10_sized_generator_repeats_its_subset_30_over_spc_times():
    """The public code's STL-10 generator config: num_dataset_repeats_base 30 (the classifier keeps 120, CIFAR 500)."""
    stl = resolve_generator(make_config(GeneratorConfig, "paper", spc=10), image_size=96, n_train=100)
    assert stl.repeats == 3 and stl.steps == 200 * -(-100 * 3 // 8)
    cifar = resolve_generator(make_config(GeneratorConfig, "paper", spc=10), image_size=32, n_train=100)
    assert cifar.repeats == 50


def test_unknown_generator_options_are_one_line_errors():
    for kw, word in [({"seg_mask": "half"}, "--seg-mask"), ({"d_step": "twice"}, "--d-step"), ({"seg_input": "rgb"}, "--seg-input")]:
        with pytest.raises(ChimeraMixError, match=word):
            resolve_generator(make_config(GeneratorConfig, "fast", **kw), image_size=32, n_train=50)


def _trainer(**kw):
    cfg = tiny(**kw)
    prep = prepare_data(cfg)
    cfg = resolve_generator(cfg, 32, len(prep.subset))
    return GeneratorTrainer(cfg, device_data(cfg, prep.subset, prep.device, 0), seeded_generator(prep.device, 0, 1))


def test_fresh_discriminator_step_draws_another_mask_and_sums_the_two_terms():
    """The public code: after G's update D sees a new composition (new mask, updated G) and x1 or x2 as the real."""
    torch.manual_seed(0)
    tr = _trainer(mask="grid", d_step="fresh")
    xs, mask, draw = tr.batch(0)
    assert len(xs) == 2 and not torch.equal(mask, draw())  # a pair; a second draw is another mask
    # the real image is one parent, each about half the time (the public code's coin)
    picks = [tr._real_parent(xs) for _ in range(40)]
    firsts = sum(torch.equal(p, xs[0]) for p in picks)
    assert all(torch.equal(p, xs[0]) or torch.equal(p, xs[1]) for p in picks) and 8 < firsts < 32
    fresh = _trainer(mask="grid", d_step="fresh").step(0, 10)
    reuse = _trainer(mask="grid", d_step="reuse").step(0, 10)
    # the generator half of the step is identical; only D's step differs
    assert fresh["g"].item() == pytest.approx(reuse["g"].item(), rel=1e-5)
    assert fresh["d"].item() != pytest.approx(reuse["d"].item(), rel=1e-3)
    # sum of two MSEs against {0, 1} on sigmoid outputs: in (0, 2); the mean variant in (0, 1)
    assert 0 < fresh["d"].item() < 2 and 0 < reuse["d"].item() < 1


@pytest.mark.parametrize("mask", ["grid", "seg"])
def test_reconstruction_loss_falls_within_a_few_dozen_steps(mask):
    cfg = tiny(mask=mask, ngf=8, ndf=8, lr=1e-3)
    prep = prepare_data(cfg)
    cfg = resolve_generator(cfg, 32, len(prep.subset))
    data = device_data(cfg, prep.subset, prep.device, 0)
    tr = GeneratorTrainer(cfg, data, seeded_generator(prep.device, 0, 1))
    losses = [tr.step(s, 40)["rec"].item() for s in range(40)]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_fit_generator_writes_a_complete_run(tmp_path):
    r = fit_generator(tiny(steps=6, mask="seg"), root=tmp_path)
    d = r.run_dir
    # the readable prefix, then the hash of what departs from the preset (steps, ngf, ndf, batch size)
    tag = config_tag(config_overrides(tiny(steps=6, mask="seg")))
    assert len(tag) == 8 and d.parent == tmp_path and d.name == f"gen-digits-spc3-seed0-seg-fast-c{tag}"
    record = json.loads((d / "run.json").read_text())
    assert record["config_tag"] == tag and record["schema"] == 2
    for f in ("run.json", "split.json", "generator.safetensors", "metrics.jsonl", "samples.png", "losses.png"):
        assert (d / f).is_file(), f
    assert not (d / "state.safetensors").exists()
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == 6
    assert info["train_seconds"] > 0  # so a report can quote how long a generator took
    assert info["config"]["mask"] == "seg" and info["split"]["spc"] == 3 and len(info["split"]["indices"]) == 30
    assert {"torch", "kornia", "chimeramix"} <= set(info["versions"])
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"rec", "lap", "adv", "d", "g"} <= set(rows[0])
    G, ginfo = load_generator(d, "cpu")
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    tensors, meta = ckpt.load_tensors(d / "generator.safetensors")
    assert any(k.startswith("discriminator.") for k in tensors) and meta["split"]["seed"] == 0


def test_finished_run_is_reused_another_budget_gets_its_own_folder_and_a_clash_in_out_is_refused(tmp_path):
    first = fit_generator(tiny(steps=4), root=tmp_path)
    again = fit_generator(tiny(steps=4), root=tmp_path)
    assert again.already_finished and again.run_dir == first.run_dir
    other = fit_generator(tiny(steps=5), root=tmp_path)  # another budget into the same checkpoints: beside it
    assert other.run_dir != first.run_dir and not other.already_finished and other.steps == 5
    assert fit_generator(tiny(steps=4), root=tmp_path).already_finished  # the first is untouched
    with pytest.raises(ChimeraMixError, match="another config.*steps"):
        fit_generator(tiny(steps=5, out=str(first.run_dir)))
    forced = fit_generator(tiny(steps=5, out=str(first.run_dir)), force=True)
    assert not forced.already_finished and forced.steps == 5


def test_a_preset_run_keeps_its_name_and_a_run_named_before_config_tags_is_still_found(tmp_path):
    from dataclasses import replace

    preset = replace(tiny(), ngf=16, ndf=16, batch_size=16, steps=1000)  # the fast preset's own values: no tag
    assert config_overrides(preset) == {} and config_tag({}) == ""
    assert config_overrides(tiny(steps=4)) == {"steps": 4, "ngf": 4, "ndf": 4, "batch_size": 6}
    r = fit_generator(tiny(steps=4), root=tmp_path)
    # what an older version made of the same command: the preset run's name, no config_tag in run.json
    old = r.run_dir.with_name("gen-digits-spc3-seed0-seg-fast")
    r.run_dir.rename(old)
    info = json.loads((old / "run.json").read_text())
    del info["config_tag"]
    (old / "run.json").write_text(json.dumps(info))
    again = fit_generator(tiny(steps=4), root=tmp_path)
    assert again.run_dir == old and again.already_finished  # reused, not trained a second time
    other = fit_generator(tiny(steps=5), root=tmp_path)  # the old folder holds steps 4: not this run's
    assert other.run_dir.name.startswith(old.name + "-c") and not other.already_finished


class StopAt(Progress):
    def __init__(self, at):
        self.at = at

    def update(self, task, completed, metrics=None):
        if completed == self.at:
            raise KeyboardInterrupt


def _weights(run_dir):
    return ckpt.load_tensors(run_dir / "generator.safetensors")[0]


@pytest.mark.parametrize("mask", ["grid", "seg"])
def test_resume_ends_where_an_uninterrupted_run_would(tmp_path, mask):
    full = fit_generator(tiny(steps=10, mask=mask, out=str(tmp_path / "full")))
    with pytest.raises(RunInterrupted, match="--resume"):
        fit_generator(tiny(steps=10, mask=mask, out=str(tmp_path / "cut")), progress=StopAt(6))
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["status"] == "running" and info["step"] == 6
    with pytest.raises(ChimeraMixError, match="unfinished.*--resume"):
        fit_generator(tiny(steps=10, mask=mask, out=str(tmp_path / "cut")))
    resumed = fit_generator(tiny(steps=10, mask=mask, out=str(tmp_path / "cut")), resume=True)
    a, b = _weights(full.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    m_full = (tmp_path / "full" / "metrics.jsonl").read_text()
    m_cut = (tmp_path / "cut" / "metrics.jsonl").read_text()
    assert m_full == m_cut


def test_resume_with_another_config_names_the_fields(tmp_path):
    with pytest.raises(RunInterrupted):
        fit_generator(tiny(steps=8, out=str(tmp_path / "r")), progress=StopAt(4))
    with pytest.raises(ChimeraMixError, match=r"lr: 0.0002 -> 0.001"):
        fit_generator(tiny(steps=8, lr=1e-3, out=str(tmp_path / "r")), resume=True)


def test_nan_loss_before_the_first_checkpoint_stops_with_a_clear_message_and_leaves_nothing(tmp_path):
    # before the first checkpoint: the failed start leaves nothing, and the message says so
    with pytest.raises(ChimeraMixError, match="became nan.*before the first checkpoint, so nothing is kept"):
        fit_generator(tiny(steps=12, lr=1e30, w_rec=1e30, out=str(tmp_path / "nan")))
    assert not (tmp_path / "nan").exists()


def test_unknown_mask_and_unwritable_output(tmp_path):
    with pytest.raises(ChimeraMixError, match="grid or seg"):
        fit_generator(tiny(mask="stripes"), root=tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ChimeraMixError, match="not a folder"):
        fit_generator(tiny(out=str(blocker)))
    with pytest.raises(ChimeraMixError, match="cannot write|choose"):
        fit_generator(tiny(out=str(blocker / "sub")))


def test_work_size_is_rounded_up_to_what_the_networks_accept():
    base = make_config(GeneratorConfig, "fast", spc=2)
    assert [resolve_generator(base, s, 10).work_size for s in (8, 16, 30, 32, 50, 96)] == [32, 32, 32, 32, 52, 96]
    for bad in (16, 30):
        with pytest.raises(ChimeraMixError, match=f"--work-size {bad} .*multiple of 4 and at least 32"):
            resolve_generator(make_config(GeneratorConfig, "fast", spc=2, work_size=bad), 32, 10)


def test_progress_moves_from_step_one_and_losses_come_at_log_points(tmp_path):
    class Seen(Progress):
        def __init__(self):
            self.updates = []

        def update(self, task, completed, metrics=None):
            self.updates.append((completed, bool(metrics)))

    seen = Seen()
    fit_generator(tiny(steps=5, log_every=3, out=str(tmp_path / "g")), progress=seen)
    assert seen.updates == [(1, False), (2, False), (3, True), (4, False), (5, True)]


def test_cpu_preset_is_the_short_budget_recipe_and_paper_keeps_the_public_procedure():
    from chimeramix.config import GeneratorConfig, make_config

    cpu = make_config(GeneratorConfig, "cpu", data="digits")
    assert (cpu.lr, cpu.warmup, tuple(cpu.lr_milestones), cpu.d_every, cpu.d_lr) == (1e-3, 0.05, (0.7, 0.9), 2, None)
    assert (cpu.steps, cpu.ngf, cpu.batch_size) == (1000, 16, 16)
    for preset in ("paper", "fast"):
        c = make_config(GeneratorConfig, preset, data="digits")
        assert (c.lr, c.warmup, tuple(c.lr_milestones), c.d_every) == (2e-4, 0.0, (0.3, 0.6, 0.8), 1)
    # an option still overrides the preset's recipe
    assert make_config(GeneratorConfig, "cpu", data="digits", lr=2e-4, d_every=1).d_every == 1
