import pytest
import torch
import torch.nn.functional as F

from chimeramix.losses import cosine_loss, laplacian, laplacian_pyramid, lsgan, reconstruction, soft_cross_entropy


def test_lsgan_targets():
    p = torch.tensor([0.25, 0.75])
    assert lsgan(p, True).item() == pytest.approx(((0.75**2) + (0.25**2)) / 2)
    assert lsgan(p, False).item() == pytest.approx(((0.25**2) + (0.75**2)) / 2)
    assert lsgan(torch.ones(3), True).item() == 0


def test_reconstruction_is_the_sum_of_both_mses():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert reconstruction([a, b], [b, b]).item() == pytest.approx(1.0)  # mse 1 + mse 0
    half = torch.full((2, 3, 4, 4), 0.5)
    assert reconstruction([a, half], [b, b]).item() == pytest.approx(1.25)  # 1 + 0.25, as the public code's sum
    assert reconstruction([a, half, a], [b, b, b]).item() == pytest.approx(2.25)  # K parents: one term each


def test_laplacian_pyramid_l1():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert laplacian(x, x).item() == 0
    y = x + 0.1
    # a constant shift only shows in the coarsest (Gaussian) level of the pyramid
    assert 0 < laplacian(y, x).item() < 0.2
    noisy = x + 0.1 * torch.randn_like(x)
    assert laplacian(noisy, x).item() > laplacian(y, x).item()
    assert laplacian(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), levels=10).isfinite()  # levels clamp to the size


def _reference_pyramid(x, levels):
    """Burt & Adelson written out with plain convolutions: blur, decimate; zero-insert, blur x 4; subtract."""
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16
    k = torch.outer(k1, k1).repeat(x.shape[1], 1, 1, 1)

    def blur(t, kernel):
        return F.conv2d(F.pad(t, (2, 2, 2, 2), mode="reflect"), kernel, groups=t.shape[1])

    out, cur = [], x.double()
    for _ in range(levels):
        down = blur(cur, k)[..., ::2, ::2]
        up = torch.zeros_like(cur)
        up[..., ::2, ::2] = down
        out.append(cur - blur(up, 4 * k))
        cur = down
    return out


@pytest.mark.parametrize("size", [32, 64, 96])
def test_laplacian_pyramid_is_three_band_pass_levels_without_residual(size):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
    ours = laplacian_pyramid(x, 3)
    ref = _reference_pyramid(x, 3)
    assert [p.shape[-1] for p in ours] == [size, size // 2, size // 4]  # no 96 -> 128 padding, no residual level
    for a, b in zip(ours, ref):
        assert torch.allclose(a.double(), b, atol=1e-5)
    const = torch.full((1, 3, size, size), 0.3)
    assert all(p.abs().max() < 1e-5 for p in laplacian_pyramid(const, 3))  # band-pass: flat images have no bands


def test_kornia_pyramid_levels_differ_from_the_published_ones():
    """Why losses.py builds the pyramid itself: kornia's bilinear pyrdown/pyrup give other band-pass levels."""
    from kornia.geometry.transform import build_laplacian_pyramid

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    theirs = build_laplacian_pyramid(x, 4)[:3]
    ours = laplacian_pyramid(x, 3)
    rel = [float((a - b).norm() / b.norm()) for a, b in zip(theirs, ours)]
    assert max(rel) > 0.2  # measured 0.06, 0.49, 0.65 for the three levels


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    assert soft_cross_entropy(logits, F.one_hot(y, 4).float()).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


def test_cosine_loss():
    t = torch.eye(3)
    assert cosine_loss(t * 5, t).item() == pytest.approx(0, abs=1e-6)
    assert cosine_loss(-t, t).item() == pytest.approx(2)
