"""fit-classifier: ChimeraMix batches, frozen generator, split checks, results."""

import json
import math
from pathlib import Path

import pytest
import torch

from chimeramix import checkpoint as ckpt
from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config, resolve_classifier
from chimeramix.errors import ChimeraMixError
from chimeramix.methods.chimeramix import replaced_at
from chimeramix.train.classifier import cosine_lr, fit_classifier
from chimeramix.train.generator import fit_generator
from chimeramix.train.setup import config_overrides, config_tag

GEN = dict(data="digits", spc=3, seed=0, device="cpu", ngf=4, ndf=4, batch_size=6, steps=4, log_every=2)
CLF = dict(data="digits", spc=3, seed=0, device="cpu", arch="wrn16-2", batch_size=6, steps=6, log_every=2, eval_batch=400)


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    return fit_generator(make_config(GeneratorConfig, "fast", **GEN, mask="seg"), root=root).run_dir


def clf(**kw):
    return make_config(ClassifierConfig, "fast", **{**CLF, **kw})


def test_replacement_rate_is_one_half():
    n = 4000
    hits = sum(replaced_at(0, s, 0.5) for s in range(n))
    # 6 standard deviations of a Binomial(4000, 0.5) share: fails only if the draw is biased
    assert abs(hits / n - 0.5) < 6 * math.sqrt(0.25 / n)
    assert [replaced_at(1, s, 0.5) for s in range(64)] != [replaced_at(2, s, 0.5) for s in range(64)]  # seeds differ
    assert [replaced_at(3, s, 0.5) for s in range(50)] == [replaced_at(3, s, 0.5) for s in range(50)]
    assert sum(replaced_at(0, s, 0.0) for s in range(100)) == 0 and sum(replaced_at(0, s, 1.0) for s in range(100)) == 100


def test_cosine_schedule():
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100) == pytest.approx(0.0)


def test_paper_preset_per_dataset():
    c = resolve_classifier(make_config(ClassifierConfig, "paper", spc=5), 32, 50)
    assert (c.arch, c.batch_size, c.lr, c.weight_decay, c.repeats, c.steps) == ("wrn16-8", 10, 4.6e-3, 5.3e-3, 100, 100_000)
    s = resolve_classifier(make_config(ClassifierConfig, "paper", spc=5), 96, 50)
    assert (s.arch, s.batch_size, s.lr, s.weight_decay, s.repeats) == ("resnet50", 16, 7.4e-3, 4.1e-4, 24)


def test_chimeramix_run_uses_the_frozen_generator(tmp_path, generator_run):
    before = ckpt.load_tensors(generator_run / "generator.safetensors")[0]
    r = fit_classifier(clf(generator=str(generator_run), steps=12), root=tmp_path)
    after = ckpt.load_tensors(generator_run / "generator.safetensors")[0]
    assert all(torch.equal(before[k], after[k]) for k in before)
    res = r.result
    assert res["label"] == "ChimeraMix+Seg" and res["method"] == "chimeramix"
    assert res["generator_run"] == str(generator_run)
    # the generator's recipe rides along, so reports keep generators trained differently in rows apart
    gen_cfg = json.loads((generator_run / "run.json").read_text())["config"]
    assert res["generator_config"]["steps"] == gen_cfg["steps"] and "seed" not in res["generator_config"]
    rows = [json.loads(x) for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    generated = [row["generated"] for row in rows]
    # logged share per 2-step interval equals the replacement decisions of those steps
    expected = [(replaced_at(0, s, 0.5) + replaced_at(0, s + 1, 0.5)) / 2 for s in range(0, 12, 2)]
    assert generated == pytest.approx(expected)


def test_result_json_fields_and_ranges(tmp_path):
    r = fit_classifier(clf(), root=tmp_path)
    d = r.run_dir
    for f in ("result.json", "report.md", "confusion.png", "classifier.safetensors", "split.json", "run.json", "losses.png"):
        assert (d / f).is_file(), f
    res = json.loads((d / "result.json").read_text())
    assert res["label"] == "Baseline" and res["test_size"] == 797
    assert 0 <= res["accuracy"] <= 1 and 0 <= res["mean_class_accuracy"] <= 1
    cm = torch.tensor(res["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 797
    assert res["accuracy"] == pytest.approx(cm.diag().sum().item() / 797)
    assert len(res["per_class"]) == 10 and sum(p["support"] for p in res["per_class"]) == 797
    assert all(0 <= p[k] <= 1 for p in res["per_class"] for k in ("precision", "recall", "f1"))
    assert "Baseline" in (d / "report.md").read_text()


def test_generator_from_another_split_is_refused(tmp_path, generator_run):
    with pytest.raises(ChimeraMixError, match=r"another split \(seed 0 vs 1"):
        fit_classifier(clf(seed=1, generator=str(generator_run)), root=tmp_path)
    with pytest.raises(ChimeraMixError, match=r"spc 3 vs 4"):
        fit_classifier(clf(spc=4, generator=str(generator_run)), root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_bad_generator_paths(tmp_path):
    with pytest.raises(ChimeraMixError, match="not a generator run"):
        fit_classifier(clf(generator=str(tmp_path)), root=tmp_path)
    with pytest.raises(ChimeraMixError, match="needs a trained generator"):
        fit_classifier(clf(method="chimeramix"), root=tmp_path)


def test_classifier_resume_is_exact(tmp_path, generator_run):
    from chimeramix.progress import Progress
    from chimeramix.train.loop import RunInterrupted

    class StopAt(Progress):
        def update(self, task, completed, metrics=None):
            if task == "classifier" and completed == 4:
                raise KeyboardInterrupt

    kw = dict(generator=str(generator_run), steps=8)
    full = fit_classifier(clf(**kw, out=str(tmp_path / "full")))
    with pytest.raises(RunInterrupted):
        fit_classifier(clf(**kw, out=str(tmp_path / "cut")), progress=StopAt())
    cut = fit_classifier(clf(**kw, out=str(tmp_path / "cut")), resume=True)
    a = ckpt.load_tensors(full.run_dir / "classifier.safetensors")[0]
    b = ckpt.load_tensors(cut.run_dir / "classifier.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.result["confusion"] == cut.result["confusion"]


def test_misspelt_method_option_is_refused(tmp_path):
    with pytest.raises(ChimeraMixError, match="no option alhpa.*alpha"):
        fit_classifier(clf(method="mixup", method_options={"alhpa": 0.4}), root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_generator_is_not_used_with_another_mask_kind(tmp_path, generator_run):
    with pytest.raises(ChimeraMixError, match="trained with --mask seg, this run asks for grid"):
        fit_classifier(clf(generator=str(generator_run), mask="grid"), root=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def test_classifier_reads_the_generators_mask_rules(tmp_path, generator_run):
    r = fit_classifier(clf(generator=str(generator_run), steps=2), root=tmp_path)
    opts = r.result["config"]["method_options"]
    assert (opts["mask"], opts["seg_mask"], opts["mask_resize"]) == ("seg", "range", "nearest")
    over = fit_classifier(clf(generator=str(generator_run), steps=2, method_options={"seg_mask": "bernoulli"}), root=tmp_path)
    assert over.result["label"] == "ChimeraMix+Seg (classifier masks: seg_mask=bernoulli)"  # an explicit override shows
    assert over.run_dir != r.run_dir
    # the folder keeps the word it had before MaskSpec's fields took the option names: such runs are found again
    assert "-seg_rule_bernoulli-" in Path(over.run_dir).name


def test_seg_view_picks_which_resolution_is_segmented():
    from chimeramix import masks as M
    from chimeramix.data.imageset import ImageSet
    from chimeramix.train.classifier import _segments_at_native

    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (4, 3, 8, 8), generator=g, dtype=torch.uint8).repeat_interleave(4, 2).repeat_interleave(4, 3)
    subset = ImageSet(imgs, torch.tensor([0, 0, 1, 1]), ("a", "b"))
    gen_cfg = GeneratorConfig(seg_size=64, work_size=64, seg_scale=60, seg_min_size=60, seg_input="float")
    own = _segments_at_native(subset, gen_cfg, {}, "classifier")
    assert torch.equal(own, M.compute_segments(imgs, 60, 60))  # the public code: the classifier's 32 px view
    theirs = _segments_at_native(subset, gen_cfg, {}, "generator")
    assert torch.equal(theirs, M.segments_at(imgs, 64, 32, 60, 60))
    assert own.shape == theirs.shape == (4, 32, 32)
    with pytest.raises(ChimeraMixError, match="--seg-view"):
        resolve_classifier(clf(seg_view="both"), 32, 30)


def test_method_options_get_their_own_run_folder(tmp_path):
    base = fit_classifier(clf(method="mixup", steps=2), root=tmp_path)
    tag = config_tag(config_overrides(clf(method="mixup", steps=2)))  # steps and batch size away from the preset
    assert base.run_dir.name == f"clf-digits-spc3-seed0-mixup-fast-c{tag}"  # no options: no -o part
    other = fit_classifier(clf(method="mixup", steps=2, method_options={"alpha": 0.4}), root=tmp_path)
    assert other.run_dir != base.run_dir and not other.already_finished
    assert other.run_dir.name.startswith("clf-digits-spc3-seed0-mixup-o") and other.run_dir.name.endswith(f"-fast-c{tag}")
    again = fit_classifier(clf(method="mixup", steps=2, method_options={"alpha": 0.4}), root=tmp_path)
    assert again.run_dir == other.run_dir and again.already_finished  # the same options find their run again
    # the default replacement rate, however it is given, is no departure; another one is
    from chimeramix.train.setup import named_options as _named_options
    from chimeramix.train.setup import options_tag

    assert options_tag(_named_options(clf(p_generated=0.5))) == options_tag(_named_options(clf())) == ""
    assert options_tag(_named_options(clf(p_generated=0.7))) == options_tag(_named_options(clf(method_options={"p_generated": 0.7})))
    assert options_tag({"alpha": 1}) == options_tag({"alpha": 1.0}) != options_tag({"alpha": 2})


def test_run_context_as_a_method_option_is_refused_before_any_data_is_read(tmp_path):
    cfg = make_config(ClassifierConfig, "fast", data=str(tmp_path / "no-such-folder"), method="gridmix",
                      method_options={"seed": 3})
    with pytest.raises(ChimeraMixError, match=r"'seed' is not an option of method 'gridmix'.*--seed 3"):
        fit_classifier(cfg, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_run_of_the_other_precision_is_refused_not_reused(tmp_path):
    """--amp is not in the folder name, but a bf16 request must not get an fp32 run back (nor continue one)."""
    first = fit_classifier(clf(steps=2, amp="off"), root=tmp_path)
    info = json.loads((first.run_dir / "run.json").read_text())
    assert info["precision"] == "fp32"
    with pytest.raises(ChimeraMixError, match=r"trained in fp32; this one asks for bf16 \(--amp on"):
        fit_classifier(clf(steps=2, amp="on"), root=tmp_path)
    assert json.loads((first.run_dir / "run.json").read_text()) == info  # untouched
    assert fit_classifier(clf(steps=2, amp="auto"), root=tmp_path).already_finished  # auto on the CPU is fp32
    # a run.json from before the field: its config tells the precision when the device is known
    del info["precision"]
    (first.run_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(ChimeraMixError, match="trained in fp32"):
        fit_classifier(clf(steps=2, amp="on"), root=tmp_path)
    again = fit_classifier(clf(steps=2, amp="on"), root=tmp_path, force=True)
    assert json.loads((again.run_dir / "run.json").read_text())["precision"] == "bf16"
