"""The mixing generator: encoder f, feature mixer, decoder g (x_hat = g(f(x1) m + f(x2) (1 - m))).

With K parents the mask is K one-hot channels m_j and x_hat = g(sum_j f(x_j) m_j); at K = 2 with
m = [m, 1 - m] that is the pair formula, operation for operation.
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

    def mix(self, f1: torch.Tensor, f2: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per location, the feature vector of f1 where mask = 1, of f2 where mask = 0."""
        return f1 * mask + f2 * (1 - mask)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.mix(self.encoder(x1), self.encoder(x2), mask))

    def train_outputs(self, x1, x2, mask):
        """One encode of x1 and x2 (batched), one decode of [all-ones, all-zeros, mask] (batched).

        Returns (rec1, rec2, mix): the two reconstructions and the composition.
        The public code decodes nine images per step; three are needed.
        """
        n = x1.shape[0]
        f = self.encoder(torch.cat([x1, x2]))
        f1, f2 = f[:n], f[n:]
        z = torch.cat([f1, f2, self.mix(f1, f2, mask)])
        out = self.decoder(z)
        return out[:n], out[n: 2 * n], out[2 * n:]

    @staticmethod
    def mix_parents(fs, weights: torch.Tensor) -> torch.Tensor:
        """Per location, the feature vector of the parent whose one-hot channel is 1 (fs: K feature maps)."""
        out = fs[0] * weights[:, 0:1]
        for j in range(1, len(fs)):
            out = out + fs[j] * weights[:, j: j + 1]
        return out

    def forward_parents(self, xs, weights: torch.Tensor) -> torch.Tensor:
        """The composition of K parents (a list of N x 3 x H x W) under one-hot weights N x K x h x w."""
        n = xs[0].shape[0]
        return self.decoder(self.mix_parents(self.encoder(torch.cat(list(xs))).split(n), weights))

    def train_outputs_parents(self, xs, weights):
        """`train_outputs` for K parents: one encode of all, one decode of [f_1, ..., f_K, mix].

        Decoding f_j is decoding the all-parent-j mask (mix_parents with channel j all ones gives f_j exactly).
        Returns (reconstructions as a list of K, composition).
        """
        n = xs[0].shape[0]
        fs = self.encoder(torch.cat(list(xs))).split(n)
        out = self.decoder(torch.cat([*fs, self.mix_parents(fs, weights)])).split(n)
        return list(out[:-1]), out[-1]
