import torch

from chimeramix import masks as M


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_grid_masks_are_binary_with_cell_structure():
    size, k = 16, 4
    m = M.grid_masks(64, size, k, _gen(), "cpu")
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
    a = M.grid_masks(8, 16, 4, _gen(1), "cpu")
    b = M.grid_masks(8, 16, 4, _gen(1), "cpu")
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
    masks = M.segment_pixel_masks(seg, _gen(5))
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
    f = M.to_feature_size(m, 2)
    assert f[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
