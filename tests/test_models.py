import pytest
import torch

from chimeramix.models import MixingGenerator, PatchDiscriminator, build_classifier
from chimeramix.errors import ChimeraMixError


@pytest.mark.parametrize("ngf,size", [(16, 32), (64, 64)])  # fast preset (native 32) and paper preset (32 worked at 64)
def test_generator_shapes(ngf, size):
    G = MixingGenerator(ngf)
    x = torch.randn(2, 3, size, size)
    f = G.encoder(x)
    assert f.shape == (2, 4 * ngf, size // 4, size // 4)
    m = torch.ones(2, 1, size // 4, size // 4)
    w = torch.cat([m, 1 - m], 1)
    out = G([x, x], w)
    assert out.shape == x.shape
    assert out.abs().max() <= 1
    (r1, r2), mix = G.train_outputs([x, x.flip(0)], w)
    assert r1.shape == r2.shape == mix.shape == x.shape


@pytest.mark.parametrize("size,out", [(32, 2), (64, 4)])  # the public code's patch map: 4x4 at 64 px
def test_discriminator_patch_output(size, out):
    D = PatchDiscriminator(8)
    y = D(torch.randn(2, 3, size, size))
    assert y.shape == (2, 1, out, out)
    assert ((y > 0) & (y < 1)).all()  # sigmoid, as the public code


def test_all_ones_mask_ignores_x2():
    torch.manual_seed(0)
    G = MixingGenerator(8).eval()
    x1 = torch.randn(2, 3, 32, 32)
    x2 = torch.randn(2, 3, 32, 32, requires_grad=True)
    ones = torch.cat([torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)], 1)
    out = G([x1, x2], ones)
    out.sum().backward()
    assert x2.grad.abs().max() == 0
    out2 = G([x1, torch.randn(2, 3, 32, 32)], ones)
    assert torch.allclose(out, out2)
    half = ones.clone()
    half[:, 0, :, :4], half[:, 1, :, :4] = 0, 1
    x2.grad = None
    G([x1, x2], half).sum().backward()
    assert x2.grad.abs().max() > 0


def test_decoder_switch_changes_output_with_the_same_weights():
    torch.manual_seed(0)
    G = MixingGenerator(8, decoder_res_blocks=True)
    P = MixingGenerator(8, decoder_res_blocks=False)
    P.load_state_dict(G.state_dict())  # both variants hold the same weights
    x = torch.randn(1, 3, 32, 32)
    w = torch.cat([torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)], 1)
    assert not torch.allclose(G([x, x], w), P([x, x], w))


@pytest.mark.parametrize("arch,size", [("wrn16-2", 32), ("wrn16-8", 32), ("resnet50", 96)])
def test_classifiers(arch, size):
    m = build_classifier(arch, 7)
    assert m(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_unknown_arch():
    with pytest.raises(ChimeraMixError, match="wrn16-8"):
        build_classifier("vgg", 10)
