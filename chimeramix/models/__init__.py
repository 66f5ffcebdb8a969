"""Networks: the mixing generator, the PatchGAN discriminator, the classifiers."""

from .classifiers import ARCH_NAMES, ARCHS, BACKBONE_ARCHS, WideResNet, build_classifier, is_backbone, network_of
from .discriminator import PatchDiscriminator
from .generator import Decoder, Encoder, MixingGenerator

__all__ = ["ARCH_NAMES", "ARCHS", "BACKBONE_ARCHS", "Decoder", "Encoder", "MixingGenerator", "PatchDiscriminator", "WideResNet", "build_classifier", "is_backbone",
           "network_of"]
