"""Compositions of K parents (--parents): one K-way path for masks, mixer, losses, trainer and export, whose K = 2 case
is the paper's pair rule bit for bit."""

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.app import app

from chimeramix import masks as M
from chimeramix.config import ClassifierConfig, GeneratorConfig, generator_from_record, generator_run_config, make_config, resolve_generator
from chimeramix.data.device import DeviceData
from chimeramix.data.imageset import ImageSet
from chimeramix.errors import ChimeraMixError
from chimeramix.export import _pack, _unpack, export_dataset, regenerate_file
from chimeramix.losses import laplacian, laplacian_sum, reconstruction
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
         ("seg", dict(seg_mask="range")), ("seg", dict(seg_mask="bernoulli")),
         ("seg", dict(seg_mask="bernoulli", mask_resize="majority"))]


@pytest.mark.parametrize("kind,kw", RULES)
@pytest.mark.parametrize("k", [3, 4])
def test_k_way_masks_give_every_location_exactly_one_parent(kind, kw, k):
    seg = _labels(32)
    w = _spec(kind, k, **kw).sample(32, 8, _gen(k), "cpu", [seg] * k, num_segments=16)
    assert w.shape == (32, k, 8, 8)
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(w.sum(1), torch.ones(32, 8, 8))  # a partition: one parent per location
    share = w.mean((0, 2, 3))
    assert (share > 0.25 / k).all(), share  # every parent is used, none dominates
    if kind == "seg":  # a union of whole segments of the first image, before the reduction to feature size
        pixel = _spec(kind, k, **kw).sample(32, 32, _gen(k), "cpu", [seg] * k, num_segments=16).argmax(1)
        for labels, assign in zip(seg, pixel):
            for lab in labels.unique():
                assert len(assign[labels == lab].unique()) == 1


def test_k_way_range_rule_cuts_the_label_order_into_k_nonempty_contiguous_ranges():
    k = 4
    stripes = torch.arange(8).repeat_interleave(4)[None, None, :].expand(40, 1, 32, 32)[:, 0].contiguous()  # labels 0..7
    assign = M.segment_range_parents([stripes] * k, k, _gen(1), num_segments=8)[:, 0]
    orders = set()
    for a in assign:
        per_label = a[0].reshape(8, 4)[:, 0]  # the parent of labels 0..7 in order
        runs = [int(per_label[0])] + [int(p) for p, q in zip(per_label[1:], per_label[:-1]) if p != q]
        assert sorted(runs) == list(range(k))  # K contiguous ranges, each parent one of them, none empty
        orders.add(tuple(runs))
    assert len(orders) > 3  # the cut points and the order of the parents vary
    # fewer labels than parents: the labels still go to distinct parents, the rest get nothing
    few = torch.arange(2).repeat_interleave(16)[None, None].expand(5, 1, 32, 32)[:, 0]
    two = M.segment_range_parents([few] * 3, 3, _gen(2))
    for a in two[:, 0]:
        assert a[0, 0] != a[0, -1]


def _public_pair_mask(kind, kw, n, size, rng, seg1, seg2):
    """The public code's pair rules, written out from its description (1: the first image's features)."""
    if kind == "grid" and kw.get("grid_offset") == "batch":
        pad = size // 4
        cells = (torch.rand(n, 1, 4, 4, generator=rng) < 0.5).float()
        big = torch.nn.functional.interpolate(cells, size=(size + pad, size + pad), mode="nearest")
        oy, ox = torch.randint(0, pad, (2,), generator=rng)
        return big[:, :, oy: oy + size, ox: ox + size]
    if kind == "grid":
        cell = size // 4
        cells = (torch.rand(n, 5, 5, generator=rng) < 0.5).float()
        big = cells.repeat_interleave(cell, 1).repeat_interleave(cell, 2)
        oy, ox = torch.randint(0, cell, (n,), generator=rng), torch.randint(0, cell, (n,), generator=rng)
        return torch.stack([big[i, oy[i]: oy[i] + size, ox[i]: ox[i] + size] for i in range(n)])[:, None]
    if kw["seg_mask"] == "range":
        pixel = M.segment_range_masks(seg2, rng)
    else:
        take = (torch.rand(n, 16, generator=rng) < 0.5).float()
        pixel = torch.gather(take, 1, seg1.reshape(n, -1).long()).reshape(n, 1, *seg1.shape[1:])
    if kw.get("mask_resize") == "majority":
        return (torch.nn.functional.adaptive_avg_pool2d(pixel, size) >= 0.5).float()
    return torch.nn.functional.interpolate(pixel, size=(size, size), mode="nearest")


@pytest.mark.parametrize("kind,kw", RULES)
def test_two_parent_masks_are_the_public_pair_rules_bit_for_bit(kind, kw):
    seg1, seg2 = _labels(16), _labels(16, seed=3)
    two = _spec(kind, 2, **kw).sample(16, 8, _gen(5), "cpu", [seg1, seg2], num_segments=16)
    pair = _public_pair_mask(kind, kw, 16, 8, _gen(5), seg1, seg2)
    assert torch.equal(two, torch.cat([pair, 1 - pair], 1))


def test_two_parent_mixer_and_losses_are_the_pair_formulas_bit_for_bit():
    torch.manual_seed(0)
    G = MixingGenerator(ngf=4).eval()
    x1, x2 = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    w = M.one_hot(M.grid_parents(3, 8, 4, 2, _gen(), "cpu"), 2)
    m = w[:, :1]
    with torch.no_grad():
        f1, f2 = G.encoder(x1), G.encoder(x2)
        assert torch.equal(G.mix([f1, f2], w), f1 * m + f2 * (1 - m))
        assert torch.equal(G([x1, x2], w), G.decoder(f1 * m + f2 * (1 - m)))
        recs, mix = G.train_outputs([x1, x2], w)
        assert torch.allclose(mix, G([x1, x2], w), atol=1e-5) and torch.allclose(recs[1], G.decoder(f2), atol=1e-5)
    r1, r2 = recs
    mse = torch.nn.functional.mse_loss
    assert torch.equal(reconstruction(recs, [x1, x2]), mse(r1, x1) + mse(r2, x2))
    assert torch.equal(laplacian_sum(recs, [x1, x2]), laplacian(r1, x1) + laplacian(r2, x2))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_manifest_mask_codes_round_trip_and_a_pairs_code_is_its_mask_bits(k):
    w = M.one_hot(M.grid_parents(1, 8, 4, k, _gen(k), "cpu"), k)
    assert torch.equal(_unpack(_pack(w), 8, k), w[0])
    if k == 2:  # the format pair exports have always had: row-major bits, 1 where the first parent is kept
        bits = (w[0, 0].flatten().numpy() > 0.5)
        import numpy as np
        assert _pack(w) == np.packbits(bits).tobytes().hex()


def test_each_parents_all_one_mask_reproduces_its_features_exactly():
    torch.manual_seed(1)
    G = MixingGenerator(ngf=4).eval()
    xs = [torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3)]
    with torch.no_grad():
        fs = G.encoder(torch.cat(xs)).split(2)
        for j in range(3):
            only_j = M.one_hot(torch.full((2, 8, 8), j), 3)
            assert torch.equal(G.mix(fs, only_j), fs[j])
        # a composition takes each location's feature vector from the parent its mask names
        w = M.one_hot(M.grid_parents(2, 8, 4, 3, _gen(), "cpu"), 3)
        mixed, owner = G.mix(fs, w), w.argmax(1)
        for j in range(3):
            sel = (owner == j)[:, None].expand_as(mixed)
            assert torch.equal(mixed[sel], fs[j][sel])
        recs, _ = G.train_outputs(xs, w)
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
    # a pair's partner is the paper's: uniform over the class, itself included
    pair = data.parent_indices(idx, 2, _gen(1))
    assert len(pair) == 1 and torch.equal(pair[0], data.partners(idx, _gen(1)))
    assert (pair[0] == idx).any() and torch.equal(labels[pair[0]], labels[idx])


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
    assert variant_suffix(generator_from_record({"mask": "seg", "parents": 4, "seg_mask": "bernoulli"})) == "-k4-bern"
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
    xs, w, draw = tr.batch(0)
    assert len(xs) == 3 and all(x.shape == (6, 3, 32, 32) for x in xs)
    assert w.shape == (6, 3, 8, 8) and torch.equal(w.sum(1), torch.ones(6, 8, 8))
    assert not torch.equal(w, draw())
    losses = [tr.step(s, 4) for s in range(2)]
    for out in losses:
        assert all(torch.isfinite(v) for v in out.values())
        assert out["rec"] > 0 and 0 < out["d"] < 2


def test_k_parent_runs_through_both_stages(tmp_path):
    g = fit_generator(make_config(GeneratorConfig, "fast", **GEN, steps=2, mask="seg", parents=3), root=tmp_path)
    assert g.run_dir.name.startswith("gen-digits-spc4-seed0-seg-k3-fast-c")
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
    # export writes K-parent compositions, and each file is rebuilt from its manifest entry
    ex = export_dataset(g.run_dir, tmp_path / "export", 2)
    manifest = json.loads(ex.manifest.read_text())
    gen = [e for e in manifest["files"] if e["kind"] == "generated"]
    assert len(gen) == 2 * 10 and manifest["mask"]["parents"] == 3
    for e in gen:
        ps = e["parents"]["subset"]
        assert len(ps) == 3 and len(set(ps)) == 3  # three distinct images
        w = _unpack(e["mask"], manifest["mask"]["feature_size"], 3)
        assert torch.equal(w.sum(0), torch.ones_like(w[0])) and e["share_first"] == pytest.approx(float(w[0].mean()))
    with Image.open(ex.out / gen[0]["file"]) as im:
        png = torch.from_numpy(__import__("numpy").asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    assert torch.equal(regenerate_file(ex.out, gen[0]["file"]), png)
    # a K = 3 code holds 2 bits per cell: a mask cut to a pair's length is refused in one line, not a traceback
    fs = manifest["mask"]["feature_size"]
    manifest["files"][0]["mask"] = manifest["files"][0]["mask"][: fs * fs // 4]
    (ex.out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChimeraMixError, match=rf"files\[0\]\.mask' holds fewer than the {2 * fs * fs} bits"):
        regenerate_file(ex.out, manifest["files"][0]["file"])
    with Image.open(ex.samples) as im:  # 3 parents, the mask, the composition
        assert im.width == 5 * (32 + 2) * 2 + 2 * 2


def test_cli_refuses_more_parents_than_images_per_class_before_making_a_folder(tmp_path):
    r = CliRunner().invoke(app, ["fit-generator", "--data", "digits", "--spc", "3", "--parents", "4", "--device", "cpu",
                                 "--checkpoints", str(tmp_path / "runs")])
    assert r.exit_code == 2
    assert "--parents 4 is more than --spc 3" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()
