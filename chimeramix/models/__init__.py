"""Networks: the mixing generator, the PatchGAN discriminator, the classifiers."""

from .classifiers import ARCHS, WideResNet, build_classifier
from .discriminator import PatchDiscriminator
from .generator import Decoder, Encoder, MixingGenerator

__all__ = ["ARCHS", "Decoder", "Encoder", "MixingGenerator", "PatchDiscriminator", "WideResNet", "build_classifier"]
