import torch

from chimeramix import masks as M


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _first(assign):
    """A pair's mask from parent indices: 1 where the first image is kept."""
    return (assign == 0).float()


def test_grid_masks_are_binary_with_cell_structure():
    size, k = 16, 4
    m = _first(M.grid_parents(64, size, k, 2, _gen(), "cpu"))
    assert m.shape == (64, 1, size, size)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    cell = size // k
    offsets = set()
    for mask in m[:, 0]:
        # A shifted grid: there is one offset (oy, ox) for which every cell is constant.
        found = None
        for oy in range(cell):
            for ox in range(cell):
                padded = torch.nn.functional.pad(mask[None, None], (ox, cell - ox, oy, cell - oy), mode="replicate")[0, 0]
                blocks = padded.unfold(0, cell, cell).unfold(1, cell, cell)
                if (blocks.amax((-1, -2)) == blocks.amin((-1, -2))).all():
                    found = (oy, ox)
                    break
            if found:
                break
        assert found is not None
        offsets.add(found)
    assert len(offsets) > 1  # offsets vary per sample
    frac = m.mean().item()
    assert 0.35 < frac < 0.65  # Bernoulli(0.5) cells


def test_grid_masks_differ_per_sample_and_follow_the_generator():
    a = M.grid_parents(8, 16, 4, 2, _gen(1), "cpu")
    b = M.grid_parents(8, 16, 4, 2, _gen(1), "cpu")
    assert torch.equal(a, b)
    assert not all(torch.equal(a[0], a[i]) for i in range(1, 8))


def _toy_images(n=6, size=32):
    g = torch.Generator().manual_seed(3)
    img = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    # blocky colour regions so felzenszwalb finds several clear segments
    for i in range(n):
        for _ in range(5):
            y, x = torch.randint(0, size - 8, (2,), generator=g).tolist()
            img[i, :, y:y + 10, x:x + 10] = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
    return img


def test_segments_are_consecutive_label_maps_computed_per_image():
    imgs = _toy_images()
    seg = M.compute_segments(imgs, scale=60, min_size=10)
    assert seg.shape == (6, 32, 32) and seg.dtype == torch.int32
    for s in seg:
        labels = s.unique()
        assert labels.tolist() == list(range(len(labels)))
    assert max(len(s.unique()) for s in seg) > 2


def test_segment_masks_are_unions_of_whole_segments():
    seg = M.compute_segments(_toy_images(), scale=60, min_size=10)
    masks = _first(M.segment_parents(seg, 2, _gen(5)))
    assert masks.shape == (6, 1, 32, 32)
    takes = 0
    for s, m in zip(seg, masks[:, 0]):
        for label in s.unique():
            vals = m[s == label].unique()
            assert len(vals) == 1  # a segment is taken whole or not at all
            takes += int(vals.item())
    assert takes > 0


def test_segment_masks_reduce_to_feature_size_by_majority():
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4, :4] = 1
    m[..., 0, 4] = 1  # a minority pixel in the top-right cell
    f = M.to_feature_size(torch.cat([m, 1 - m], 1), 2)
    assert f[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]] and torch.equal(f[0, 1], 1 - f[0, 0])
    tie = torch.zeros(1, 1, 2, 2)
    tie[..., 0, :] = 1  # half the cell: a tie goes to the lower parent, the first image
    assert M.to_feature_size(torch.cat([tie, 1 - tie], 1), 1)[0, :, 0, 0].tolist() == [1.0, 0.0]


# ------------------------------------------------ the public code's rules (docs/fidelity.md)


def _stripes(n=400, k=6, size=16):
    """Label maps of k vertical stripes: labels 0..k-1 from left to right."""
    cols = torch.arange(size) * k // size
    return cols[None, None, :].expand(n, size, size).to(torch.int32).contiguous()


def test_range_rule_takes_a_contiguous_label_range_never_the_last():
    seg = _stripes()
    m = M.segment_range_masks(seg, _gen(0))
    assert m.shape == (400, 1, 16, 16)
    lows, ups = [], []
    for s, mask in zip(seg, m[:, 0]):
        taken = sorted(s[mask > 0].unique().tolist())
        assert taken and taken == list(range(taken[0], taken[-1] + 1))  # contiguous
        assert 5 not in taken  # the last label (K - 1 = 5) is never taken
        for label in s.unique():  # whole segments only
            assert len(mask[s == label].unique()) == 1
        lows.append(taken[0])
        ups.append(taken[-1] + 1)
    # l uniform in [0, K - 2] = [0, 4]; u uniform in [l + 1, K - 1]
    assert set(lows) == {0, 1, 2, 3, 4} and set(ups) == {1, 2, 3, 4, 5}
    # E[u - l] over the rule: for l = 0..4, u - l uniform in 1..5-l, mean (6 - l) / 2 -> mean over l of 2.0
    width = torch.tensor(ups) - torch.tensor(lows)
    assert abs(width.float().mean().item() - 2.0) < 0.2


def test_range_rule_with_one_or_two_segments():
    one = torch.zeros(50, 8, 8, dtype=torch.int32)
    assert M.segment_range_masks(one, _gen(1)).min() == 1  # K = 1: [0, 1) is everything
    two = _stripes(50, 2, 8)
    m = M.segment_range_masks(two, _gen(1))[:, 0]
    assert torch.equal(m, (two == 0).float())  # K = 2: always label 0 alone


def test_range_and_bernoulli_rules_differ_in_area_and_regions_as_measured():
    """On 6 stripes: range takes 2 of 6 stripes on average (area 1/3) in one region; bernoulli half the area in ~2 regions."""
    seg = _stripes(2000)
    rng = M.mask_statistics(M.segment_range_masks(seg, _gen(2)))
    bern = M.mask_statistics(_first(M.segment_parents(seg, 2, _gen(2))))
    assert rng["regions"] == 1.0 and abs(rng["area_first"] - 1 / 3) < 0.02
    assert abs(bern["area_first"] - 0.5) < 0.02
    # runs of taken stripes among 6 Bernoulli(0.5) draws: P(first taken) + 5 P(taken after one not taken) = 1.75
    assert abs(bern["regions"] - (0.5 + 5 * 0.25)) < 0.1


def test_grid_batch_offset_has_public_cell_size_and_one_crop_per_batch():
    m = _first(M.grid_parents_batch_offset(64, 16, 4, 2, _gen(3), "cpu"))[:, 0]
    assert m.shape == (64, 16, 16) and set(m.unique().tolist()) <= {0.0, 1.0}
    ar = torch.arange(16)

    def fits(mask, oy, ox):  # constant on every 5 x 5 cell of a grid shifted by (oy, ox)
        key = ((ar + oy) // 5)[:, None] * 10 + ((ar + ox) // 5)[None, :]
        return all(len(mask[key == k].unique()) == 1 for k in key.unique())

    shared = [(oy, ox) for oy in range(4) for ox in range(4) if all(fits(x, oy, ox) for x in m)]
    assert len(shared) == 1  # the one crop offset of the batch
    offsets = {tuple(o for o in shared[0])}
    for seed in range(4, 12):  # and it moves from batch to batch
        b = _first(M.grid_parents_batch_offset(16, 16, 4, 2, _gen(seed), "cpu"))[:, 0]
        offsets |= {(oy, ox) for oy in range(4) for ox in range(4) if all(fits(x, oy, ox) for x in b)}
    assert len(offsets) > 1
    assert 0.35 < m.mean().item() < 0.65


def test_mask_spec_dispatches_to_the_rule_and_reduces_nearest():
    seg = _stripes(8, 4, 32)  # 8 px stripes at 32 px
    spec = M.MaskSpec("seg", seg_mask="range", mask_resize="nearest")
    w = spec.sample(8, 16, _gen(4), "cpu", [torch.zeros_like(seg), seg])  # a pair's range rule reads the partner's map
    assert w.shape == (8, 2, 16, 16)
    assert torch.equal(w[:, :1], M.segment_range_masks(seg, _gen(4))[..., ::2, ::2])
    eye = torch.eye(4)[None, None].repeat_interleave(2, -1).repeat_interleave(2, -2)
    nearest = M.to_feature_size(torch.cat([eye, 1 - eye], 1), 4, "nearest")
    assert torch.equal(nearest[0, 0], torch.eye(4))
    assert M.MaskSpec.from_config({"mask": "grid", "grid_k": 3}).grid_k == 3
    assert M.MaskSpec.from_config({}).seg_mask == "range"  # runs from before the rules were options read as defaults


def test_unknown_mask_rules_are_one_line_errors():
    import pytest

    from chimeramix.errors import ChimeraMixError

    for kw, word in [({"mask": "blob"}, "--mask"), ({"seg_mask": "all"}, "--seg-mask"), ({"grid_offset": "x"}, "--grid-offset"),
                     ({"mask_resize": "area"}, "--mask-resize"), ({"grid_k": 0}, "--grid-k")]:
        with pytest.raises(ChimeraMixError, match=word):
            M.MaskSpec(**kw)


def test_float_segmentation_input_gives_other_segments_than_uint8():
    imgs = _toy_images(6, 32)
    noise = torch.randint(0, 40, imgs.shape, generator=_gen(6), dtype=torch.uint8)
    imgs = imgs + noise  # texture, so the colour scale matters
    f = M.compute_segments(imgs, scale=60, min_size=10, as_float=True)
    u = M.compute_segments(imgs, scale=60, min_size=10, as_float=False)
    # the [-1, 1] image has twice the colour distances of skimage's [0, 1] reading of uint8: more segments
    assert sum(len(s.unique()) for s in f) > sum(len(s.unique()) for s in u)
