"""PatchGAN discriminator (LSGAN on sigmoid outputs, as the public code)."""

from __future__ import annotations

from torch import nn


class PatchDiscriminator(nn.Module):
    """Four 4x4 stride-2 convs (ndf, 2, 4, 8 ndf), InstanceNorm from the second, LeakyReLU 0.2, zero pad, 4x4 conv to 1, sigmoid."""

    def __init__(self, ndf: int = 64, channels: int = 3, sigmoid: bool = True):
        super().__init__()
        layers = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for _ in range(3):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.InstanceNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        # The public code pads one row and column (top, left) first: a 4x4 patch map at 64 px where 3x3 would be.
        layers += [nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(ch, 1, 4, 1, 1)]
        if sigmoid:
            layers += [nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
