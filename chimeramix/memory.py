"""Will it fit? Memory a training run needs, checked before anything is allocated or a folder is made.

An extreme --ngf or --batch-size used to go straight to an allocation: the process was killed by the kernel
(or CUDA raised out-of-memory) after the run folder existed. The estimate is deliberately coarse, an order of
magnitude check that errs low: parameters counted exactly on the meta device (nothing allocated), times 16
bytes (fp32 weights, gradients and Adam's two moments), plus a low estimate of a step's activations.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ChimeraMixError

OPTIMIZER_BYTES = 16  # fp32 weight + gradient + two Adam moments, per parameter
# Saved activations per image and parent, as a multiple of ngf x H x W floats: the full-resolution layers of the
# encoder and decoder alone keep about this many maps of that size for backward. A low estimate on purpose (not
# measured): the check must refuse only what surely cannot fit, never a run that would.
ACTIVATION_FACTOR = 10
# A manifest entry (export, curate) as Python holds it: a dict of a dozen fields with its parents' lists, measured
# at 1.5 KiB; taken low, as every estimate here.
ENTRY_BYTES = 1024


def parameter_count(*build) -> int:
    """Parameters of the modules the callables build, counted on the meta device (no memory is touched)."""
    with torch.device("meta"):
        modules: list[nn.Module] = [b() for b in build]
    return sum(p.numel() for m in modules for p in m.parameters())


def available_bytes(device: torch.device) -> int | None:
    """Free memory for tensors on `device`: CUDA's free memory, else the kernel's MemAvailable; None if unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(what: str, need: int, device: torch.device, advice: str, available: int | None = None) -> None:
    """Refuse in one line work whose tensors and records (`need` bytes, a low estimate) cannot fit on `device`."""
    free = available_bytes(device) if available is None else available
    if free is not None and need > free:
        raise ChimeraMixError(f"{what} needs about {gib(need)} of memory but {device} has {gib(free)} free: {advice}")


def check_fits(what: str, params: int, activations: int, device: torch.device, options: str,
               available: int | None = None) -> None:
    """Refuse in one line a run whose weights, optimizer state and activations cannot fit on `device`."""
    need = params * OPTIMIZER_BYTES + activations
    free = available_bytes(device) if available is None else available
    if free is not None and need > free:
        raise ChimeraMixError(
            f"{what} needs about {gib(need)} ({params:,} parameters with their optimizer state, and a step's "
            f"activations) but {device} has {gib(free)} free: lower {options}"
        )


def check_classifier_fits(cfg, n_classes: int, image_size, device: torch.device, available: int | None = None) -> None:
    """The classifier stage's network (weights, gradients and SGD momentum) and a step's batch in fp32, as read and
    as augmented: a low estimate that only catches what surely cannot fit (an extreme --batch-size)."""
    from .models import network_of

    params = parameter_count(lambda: network_of(cfg, n_classes))
    side = getattr(cfg, "input_size", None)  # a backbone's input, resized inside the network
    pixels = 3 * int(side or image_size[0]) * int(side or image_size[-1])
    need = 12 * params + 2 * 4 * int(cfg.batch_size) * pixels
    check_memory(f"the classifier ({cfg.arch}, --batch-size {cfg.batch_size})", need, device, "lower --batch-size",
                 available)


def check_generator_fits(cfg, device: torch.device, available: int | None = None) -> None:
    """The generator stage's G and D at cfg's ngf/ndf, batch size and working resolution."""
    from .models.discriminator import PatchDiscriminator
    from .models.generator import MixingGenerator

    params = parameter_count(lambda: MixingGenerator(cfg.ngf, cfg.n_res, cfg.decoder_res_blocks),
                             lambda: PatchDiscriminator(cfg.ndf))
    size = cfg.work_size or 32
    acts = 4 * ACTIVATION_FACTOR * int(cfg.batch_size or 1) * max(cfg.ngf, cfg.ndf) * size * size * max(cfg.parents, 2)
    check_fits("the generator", params, acts, device, "--ngf, --ndf or --batch-size", available)
