"""Compositions of K > 2 parents (--parents): K-way masks, the K-way mixer and trainer, and K = 2 as before."""

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.app import app

from chimeramix import masks as M
from chimeramix.config import ClassifierConfig, GeneratorConfig, generator_run_config, make_config, resolve_generator
from chimeramix.data.device import DeviceData
from chimeramix.data.imageset import ImageSet
from chimeramix.errors import ChimeraMixError
from chimeramix.export import export_dataset
from chimeramix.losses import reconstruction, reconstruction_parents
from chimeramix.models import MixingGenerator
from chimeramix.report import setting_of
from chimeramix.train.classifier import fit_classifier
from chimeramix.train.generator import GeneratorTrainer, device_data, fit_generator
from chimeramix.train.setup import prepare_data, seeded_generator, variant_label, variant_suffix

GEN = dict(data="digits", spc=4, seed=0, device="cpu", ngf=4, ndf=4, batch_size=6, log_every=2)
CLF = dict(data="digits", spc=4, seed=0, device="cpu", arch="wrn16-2", batch_size=6, steps=3, log_every=1, eval_batch=500)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _labels(n=6, size=32, seed=0):
    """Label maps of irregular blocks: 0..L-1 per map with L between 3 and 16 (Felzenszwalb-like numbering)."""
    g = _gen(seed)
    maps = []
    for i in range(n):
        cells = 2 + i % 3  # 2..4 blocks per side
        block = torch.arange(cells * cells).reshape(cells, cells)
        up = torch.nn.functional.interpolate(block[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
        maps.append(torch.roll(up, int(torch.randint(0, size, (1,), generator=g)), 1))
    return torch.stack(maps).to(torch.int32)


def _spec(kind, k, **kw):
    return M.MaskSpec(kind, parents=k, **kw)


RULES = [("grid", dict(grid_offset="batch")), ("grid", dict(grid_offset="sample")),
         ("seg", dict(seg_rule="range")), ("seg", dict(seg_rule="bernoulli")),
         ("seg", dict(seg_rule="bernoulli", resize="majority"))]


@pytest.mark.parametrize("kind,kw", RULES)
@pytest.mark.parametrize("k", [3, 4])
def test_k_way_masks_give_every_location_exactly_one_parent(kind, kw, k):
    seg = _labels(32)
    w = _spec(kind, k, **kw).sample_parents(32, 8, _gen(k), "cpu", seg1=seg, num_segments=16)
    assert w.shape == (32, k, 8, 8)
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(w.sum(1), torch.ones(32, 8, 8))  # a partition: one parent per location
    share = w.mean((0, 2, 3))
    assert (share > 0.25 / k).all(), share  # every parent is used, none dominates
    if kind == "seg":  # a union of whole segments of the first image, before the reduction to feature size
        pixel = _spec(kind, k, **kw).sample_parents(32, 32, _gen(k), "cpu", seg1=seg, num_segments=16).argmax(1)
        for labels, assign in zip(seg, pixel):
            for lab in labels.unique():
                assert len(assign[labels == lab].unique()) == 1


def test_k_way_range_rule_cuts_the_label_order_into_k_nonempty_contiguous_ranges():
    k = 4
    stripes = torch.arange(8).repeat_interleave(4)[None, None, :].expand(40, 1, 32, 32)[:, 0].contiguous()  # labels 0..7
    assign = M.segment_range_parents(stripes, k, _gen(1), num_segments=8)[:, 0]
    orders = set()
    for a in assign:
        per_label = a[0].reshape(8, 4)[:, 0]  # the parent of labels 0..7 in order
        runs = [int(per_label[0])] + [int(p) for p, q in zip(per_label[1:], per_label[:-1]) if p != q]
        assert sorted(runs) == list(range(k))  # K contiguous ranges, each parent one of them, none empty
        orders.add(tuple(runs))
    assert len(orders) > 3  # the cut points and the order of the parents vary
    # fewer labels than parents: the labels still go to distinct parents, the rest get nothing
    two = M.segment_range_parents(torch.arange(2).repeat_interleave(16)[None, None].expand(5, 1, 32, 32)[:, 0], 3, _gen(2))
    for a in two[:, 0]:
        assert a[0, 0] != a[0, -1]


@pytest.mark.parametrize("kind,kw", [r for r in RULES if r[1].get("seg_rule") != "range"])
def test_k_way_masks_at_two_parents_are_the_pair_masks_bit_for_bit(kind, kw):
    seg = _labels(16)
    pair = _spec(kind, 2, **kw).sample(16, 8, _gen(5), "cpu", seg1=seg, seg2=seg, num_segments=16)
    two = _spec(kind, 2, **kw).sample_parents(16, 8, _gen(5), "cpu", seg1=seg, num_segments=16)
    assert torch.equal(two, M.pair_as_parents(pair))


def test_k_way_mixer_and_losses_at_two_parents_are_the_pair_code_bit_for_bit():
    torch.manual_seed(0)
    G = MixingGenerator(ngf=4).eval()
    x1, x2 = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    m = M.grid_masks(3, 8, 4, _gen(), "cpu")
    w = M.pair_as_parents(m)
    with torch.no_grad():
        rec1, rec2, mix = G.train_outputs(x1, x2, m)
        recs, mix_k = G.train_outputs_parents([x1, x2], w)
        assert torch.equal(mix, mix_k) and torch.equal(rec1, recs[0]) and torch.equal(rec2, recs[1])
        assert torch.equal(G(x1, x2, m), G.forward_parents([x1, x2], w))
    assert torch.equal(reconstruction(rec1, x1, rec2, x2), reconstruction_parents(recs, [x1, x2]))


def test_each_parents_all_one_mask_reproduces_its_features_exactly():
    torch.manual_seed(1)
    G = MixingGenerator(ngf=4).eval()
    xs = [torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3)]
    with torch.no_grad():
        fs = G.encoder(torch.cat(xs)).split(2)
        for j in range(3):
            only_j = M.one_hot(torch.full((2, 8, 8), j), 3)
            assert torch.equal(G.mix_parents(fs, only_j), fs[j])
        # a composition takes each location's feature vector from the parent its mask names
        w = M.grid_parents(2, 8, 4, 3, _gen(), "cpu")
        mixed, owner = G.mix_parents(fs, w), w.argmax(1)
        for j in range(3):
            sel = (owner == j)[:, None].expand_as(mixed)
            assert torch.equal(mixed[sel], fs[j][sel])
        recs, _ = G.train_outputs_parents(xs, w)
        for j in range(3):
            assert torch.allclose(recs[j], G.decoder(fs[j]), atol=1e-6)


def test_partners_are_distinct_images_of_the_same_class():
    labels = torch.tensor([0] * 4 + [1] * 5)
    data = DeviceData(ImageSet(torch.zeros(9, 3, 8, 8, dtype=torch.uint8), labels, ["a", "b"]), torch.device("cpu"), 0)
    idx = torch.arange(9).repeat(20)
    ps = data.distinct_partners(idx, 3, _gen())
    all_ = torch.stack([idx, *ps], 1)
    for row in all_:
        assert len(set(row.tolist())) == 4  # itself and three others, no repeats
        assert len(set(labels[row].tolist())) == 1
    # uniform over the class's other images: every other image of a class shows up as a partner
    assert set(torch.cat(ps)[idx.repeat(3) == 0].tolist()) == {1, 2, 3}


def test_parent_counts_outside_two_to_spc_are_refused_in_one_line():
    for bad in (1, 0, -2, 2.5, True):
        with pytest.raises(ChimeraMixError, match="--parents must be a whole number of at least 2"):
            make_config(GeneratorConfig, "fast", spc=5, parents=bad)
    with pytest.raises(ChimeraMixError, match="--parents 6 is more than --spc 5: .* distinct images of one class"):
        make_config(GeneratorConfig, "fast", spc=5, parents=6)
    with pytest.raises(ChimeraMixError, match="--parents 3 is more than --spc 2"):
        make_config(ClassifierConfig, "fast", spc=2, parents=3)
    assert make_config(GeneratorConfig, "fast", spc=5, parents=5).parents == 5
    # pairs are drawn with replacement, as before the option: one image per class still makes a pair
    assert make_config(GeneratorConfig, "fast", spc=1).parents == 2


def test_pairs_keep_their_run_config_names_and_labels():
    pair, three = make_config(GeneratorConfig, "fast", spc=5), make_config(GeneratorConfig, "fast", spc=5, parents=3)
    assert "parents" not in generator_run_config(pair) and generator_run_config(three)["parents"] == 3
    assert variant_suffix(pair) == "" and variant_label(pair) == ""
    assert variant_suffix(three) == "-k3" and variant_label(three) == " (3 parents)"
    assert variant_suffix({"mask": "seg", "parents": 4, "seg_mask": "bernoulli"}) == "-k4-bern"
    assert M.MaskSpec.from_config({}).parents == 2  # runs written before the option composed pairs
    # a K-parent ChimeraMix row sits in the baseline's table (K is the method's, as the mask kind), and pair runs
    # written before the option (no `parents` key) share a table with those written after (parents None)
    base = {"split": {"source": "digits", "spc": 4}, "config": {"arch": "wrn16-2", "steps": 3}}
    for other in ({"parents": 3}, {"parents": None}):
        assert setting_of(base) == setting_of({**base, "config": {**base["config"], **other}})


def _trainer(**kw):
    cfg = make_config(GeneratorConfig, "fast", **{**GEN, **kw})
    prep = prepare_data(cfg)
    cfg = resolve_generator(cfg, 32, len(prep.subset))
    return GeneratorTrainer(cfg, device_data(cfg, prep.subset, prep.device, 0), seeded_generator(prep.device, 0, 1))


@pytest.mark.parametrize("mask", ["grid", "seg"])
def test_k_parent_trainer_draws_k_same_class_parents_and_trains(mask):
    tr = _trainer(mask=mask, parents=3)
    xs, w, draw = tr.batch_parents(0)
    assert len(xs) == 3 and all(x.shape == (6, 3, 32, 32) for x in xs)
    assert w.shape == (6, 3, 8, 8) and torch.equal(w.sum(1), torch.ones(6, 8, 8))
    assert not torch.equal(w, draw())
    losses = [tr.step(s, 4) for s in range(2)]
    for out in losses:
        assert all(torch.isfinite(v) for v in out.values())
        assert out["rec"] > 0 and 0 < out["d"] < 2


def test_k_parent_runs_through_both_stages(tmp_path):
    g = fit_generator(make_config(GeneratorConfig, "fast", **GEN, steps=2, mask="seg", parents=3), root=tmp_path)
    assert g.run_dir.name == "gen-digits-spc4-seed0-seg-k3-fast"
    info = json.loads((g.run_dir / "run.json").read_text())
    assert info["config"]["parents"] == 3
    with Image.open(g.samples) as im:  # 3 parents, 3 reconstructions, 3 x (mask, composition): 12 columns of 64 px
        assert im.width == 12 * (32 + 2) * 2 + 2 * 2
    r = fit_classifier(make_config(ClassifierConfig, "fast", **CLF, generator=str(g.run_dir), p_generated=1.0), root=tmp_path)
    assert r.result["label"] == "ChimeraMix+Seg (3 parents)"
    assert "-k3" in r.run_dir.name and r.result["config"]["method_options"]["parents"] == 3
    assert r.result["config"]["parents"] == 3 and 0 <= r.accuracy <= 1
    again = fit_classifier(make_config(ClassifierConfig, "fast", **CLF, generator=str(g.run_dir), p_generated=1.0, parents=3),
                           root=tmp_path)
    assert again.already_finished and again.run_dir == r.run_dir  # --parents 3 and the generator's 3 are one setting
    with pytest.raises(ChimeraMixError, match="trained with --parents 3, this run asks for 2"):
        fit_classifier(make_config(ClassifierConfig, "fast", **CLF, generator=str(g.run_dir), parents=2), root=tmp_path)
    with pytest.raises(ChimeraMixError, match="trained with --parents 3, this run asks for 4"):
        fit_classifier(make_config(ClassifierConfig, "fast", **CLF, generator=str(g.run_dir), method_options={"parents": 4}),
                       root=tmp_path)
    with pytest.raises(ChimeraMixError, match="--parents 3 needs --generator"):
        fit_classifier(make_config(ClassifierConfig, "fast", **CLF, parents=3), root=tmp_path)
    with pytest.raises(ChimeraMixError, match="composes 3 parents; export writes pairs only"):
        export_dataset(g.run_dir, tmp_path / "export", 2)
    assert not (tmp_path / "export").exists()


def test_cli_refuses_more_parents_than_images_per_class_before_making_a_folder(tmp_path):
    r = CliRunner().invoke(app, ["fit-generator", "--data", "digits", "--spc", "3", "--parents", "4", "--device", "cpu",
                                 "--checkpoints", str(tmp_path / "runs")])
    assert r.exit_code == 2
    assert "--parents 4 is more than --spc 3" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()
