import pytest
import torch
import torch.nn.functional as F

from chimeramix.losses import cosine_loss, laplacian, lsgan, reconstruction, soft_cross_entropy


def test_lsgan_targets():
    p = torch.tensor([0.25, 0.75])
    assert lsgan(p, True).item() == pytest.approx(((0.75**2) + (0.25**2)) / 2)
    assert lsgan(p, False).item() == pytest.approx(((0.25**2) + (0.75**2)) / 2)
    assert lsgan(torch.ones(3), True).item() == 0


def test_reconstruction_is_the_mean_of_both_mses():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert reconstruction(a, b, b, b).item() == pytest.approx(0.5)


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


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    assert soft_cross_entropy(logits, F.one_hot(y, 4).float()).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


def test_cosine_loss():
    t = torch.eye(3)
    assert cosine_loss(t * 5, t).item() == pytest.approx(0, abs=1e-6)
    assert cosine_loss(-t, t).item() == pytest.approx(2)
