"""The mixing generator: encoder f, feature mixer, decoder g: x_hat = g(sum_j f(x_j) m_j) for K parents x_j under
one-hot masks m_j. At K = 2, m = [m, 1 - m], that is the paper's g(f(x1) m + f(x2) (1 - m)), operation for operation
(tests/test_parents.py compares the two bit for bit).
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
        )

    def forward(self, x):
        return x + self.body(x)


class Encoder(nn.Module):
    """7x7 conv, two stride-2 3x3 convs (doubling channels), residual blocks: H x W -> H/4 x W/4 x 4 ngf."""

    def __init__(self, in_ch: int = 3, ngf: int = 64, n_res: int = 2):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(n_res)]
        self.net = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """Residual blocks, two 2x2 transposed convs, 7x7 conv, tanh.

    use_res_blocks=False reproduces the public code, whose forward computes the
    residual blocks and discards their output (its published numbers come from
    that variant); the weights exist in both variants so checkpoints line up.
    """

    def __init__(self, out_ch: int = 3, ngf: int = 64, n_res: int = 2, use_res_blocks: bool = True):
        super().__init__()
        ch = ngf * 4
        self.res = nn.Sequential(*[ResidualBlock(ch) for _ in range(n_res)])
        self.use_res_blocks = use_res_blocks
        up = []
        for _ in range(2):
            up += [nn.ConvTranspose2d(ch, ch // 2, 2, stride=2), nn.InstanceNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
        self.up = nn.Sequential(*up)

    def forward(self, z):
        return self.up(self.res(z) if self.use_res_blocks else z)


class MixingGenerator(nn.Module):
    def __init__(self, ngf: int = 64, n_res: int = 2, decoder_res_blocks: bool = True, channels: int = 3):
        super().__init__()
        self.encoder = Encoder(channels, ngf, n_res)
        self.decoder = Decoder(channels, ngf, n_res, decoder_res_blocks)

    @staticmethod
    def feature_size(image_size: int) -> int:
        return image_size // 4

    @staticmethod
    def mix(fs, weights: torch.Tensor) -> torch.Tensor:
        """Per location, the feature vector of the parent whose one-hot channel is 1 (fs: K feature maps)."""
        out = fs[0] * weights[:, 0:1]
        for j in range(1, len(fs)):
            out = out + fs[j] * weights[:, j: j + 1]
        return out

    def forward(self, xs, weights: torch.Tensor) -> torch.Tensor:
        """The composition of K parents (a list of N x 3 x H x W) under one-hot weights N x K x h x w.

        Each parent is encoded on its own, as pair compositions always were: a convolution over N and over K N
        images may round differently, and finished pair runs resume bit for bit only if their compositions do not
        move (train_outputs, which batches, has batched since pairs were its only case).
        """
        return self.decoder(self.mix([self.encoder(x) for x in xs], weights))

    def train_outputs(self, xs, weights):
        """One encode of all K parents (batched), one decode of [f_1, ..., f_K, mix] (batched).

        Decoding f_j is decoding the all-parent-j mask (mix with channel j all ones gives f_j exactly). The public
        code decodes nine images per pair step; K + 1 are needed. Returns (K reconstructions, composition).
        """
        n = xs[0].shape[0]
        fs = self.encoder(torch.cat(list(xs))).split(n)
        out = self.decoder(torch.cat([*fs, self.mix(fs, weights)])).split(n)
        return list(out[:-1]), out[-1]
