"""Fast paths, each switchable: bf16 autocast, channels_last, fused optimizers, torch.compile.

'auto' turns each on where it was measured to pay: bf16 on CUDA only,
channels_last and fused optimizers on CPU and CUDA. A run is bit-reproducible
for a given device and set of switches (resume included). The benchmark
measures the switches against the plain eager step (`SpeedOptions.reference()`).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ChimeraMixError


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX); None where it cannot be told.

    Measured on two of this project's machines: a WRN-16-2 step in bf16 autocast ran 1.6x faster than fp32 on
    an EPYC with AVX512-BF16 and 7.5x slower on one with AVX2 only, where bf16 is emulated (docs/benchmarks.md).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def bf16_warning(device: torch.device, speed: "SpeedOptions", cpuinfo: str | None = None) -> str | None:
    """A one-line warning for bf16 autocast on a CPU without bf16 hardware (it works, several times slower)."""
    if speed.amp and device.type == "cpu" and cpu_has_native_bf16(cpuinfo) is False:
        return ("warning: --amp on asks for bf16 on a CPU without AVX512-BF16 or AMX, where it is emulated and "
                "several times slower than fp32: --amp off (or auto) trains faster here")
    return None


@dataclass(frozen=True)
class SpeedOptions:
    amp: bool = False  # bf16 autocast for forward passes; losses in fp32
    channels_last: bool = False
    fused: bool = False  # single-kernel optimizer steps
    compile: str = ""  # torch.compile mode of the networks: "" (eager), "default", or "reduce-overhead" (CUDA graphs)

    @classmethod
    def reference(cls) -> "SpeedOptions":
        return cls()

    @classmethod
    def resolve(cls, device: torch.device, amp="auto", channels_last="auto", fused="auto", compile="off") -> "SpeedOptions":
        cuda = device.type == "cuda"

        def pick(v, name, auto):
            v = str(v).lower()
            if v not in ("auto", "on", "off", "true", "false"):
                raise ChimeraMixError(f"--{name} takes auto, on or off (got '{v}')")
            return auto if v == "auto" else v in ("on", "true")

        modes = {"off": "", "false": "", "on": "default", "true": "default", "default": "default", "graphs": "reduce-overhead",
                 "reduce-overhead": "reduce-overhead"}
        c = str(compile).lower()
        if c not in modes:
            raise ChimeraMixError(f"--compile takes off, on or graphs (CUDA graphs via mode reduce-overhead), got '{compile}'")
        # 'auto': bf16 only on CUDA (slow on most CPUs); channels_last and fused optimizers everywhere (measured on
        # this project's 2-core CPU: 1.1x per training step, 1.3x evaluation; docs/benchmarks.md).
        return cls(pick(amp, "amp", cuda), pick(channels_last, "channels-last", True), pick(fused, "fused", True), modes[c])

    def autocast(self, device: torch.device):
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def prepare_module(self, m: nn.Module) -> nn.Module:
        if self.channels_last:
            m = m.to(memory_format=torch.channels_last)
        return m

    def compiled(self, fn):
        """The callable to run: a module (or bound method) itself, or its torch.compile'd wrapper (same parameters)."""
        if not self.compile:
            return fn
        return torch.compile(fn, mode=self.compile, dynamic=False)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def optimizer_kwargs(self) -> dict:
        return {"fused": True} if self.fused else {}
