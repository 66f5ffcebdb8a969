"""The fast paths compute the same steps as the plain eager ones (CPU; timings live in benchmarks/)."""

import pytest
import torch

from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config, resolve_classifier, resolve_generator
from chimeramix.data.device import DeviceData
from chimeramix.methods import build_method
from chimeramix.speed import SpeedOptions
from chimeramix.train.classifier import ClassifierTrainer
from chimeramix.train.generator import GeneratorTrainer, device_data
from chimeramix.train.setup import prepare_data, seeded_generator


def _gen_losses(speed, steps=3, mask="seg"):
    cfg = make_config(GeneratorConfig, "fast", data="digits", spc=2, device="cpu", ngf=4, ndf=4, batch_size=4, mask=mask)
    prep = prepare_data(cfg)
    cfg = resolve_generator(cfg, 32, len(prep.subset))
    data = device_data(cfg, prep.subset, prep.device, 0)
    tr = GeneratorTrainer(cfg, data, seeded_generator(prep.device, 0, 1), speed=speed)
    return [{k: v.item() for k, v in tr.step(s, steps).items()} for s in range(steps)]


def _clf_losses(speed, steps=3, dropout=0.3, trainers=None):
    cfg = make_config(ClassifierConfig, "fast", data="digits", spc=2, device="cpu", batch_size=4, steps=steps, dropout=dropout)
    prep = prepare_data(cfg)
    cfg = resolve_classifier(cfg, 32, len(prep.subset))
    data = DeviceData(prep.subset, prep.device, 0)
    tr = ClassifierTrainer(cfg, data, seeded_generator(prep.device, 0, 2), build_method("none"), speed=speed)
    if trainers is not None:
        trainers.append(tr)
    return [tr.step(s)["loss"].item() for s in range(steps)]


def test_auto_switches_per_device():
    cpu = SpeedOptions.resolve(torch.device("cpu"))
    assert cpu == SpeedOptions(amp=False, channels_last=True, fused=True)
    cuda = SpeedOptions.resolve(torch.device("cuda"))
    assert cuda.amp and cuda.channels_last and cuda.fused and not cuda.compile
    assert SpeedOptions.resolve(torch.device("cpu"), amp="on").amp
    assert SpeedOptions.resolve(torch.device("cpu"), channels_last="off", fused="off") == SpeedOptions.reference()
    assert SpeedOptions.resolve(torch.device("cuda"), compile="graphs").compile == "reduce-overhead"


def test_channels_last_and_fused_generator_steps_match_plain():
    ref = _gen_losses(SpeedOptions.reference())
    fast = _gen_losses(SpeedOptions(channels_last=True, fused=True))
    for a, b in zip(ref, fast):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-5), k


def test_channels_last_and_fused_classifier_steps_match_plain():
    # dropout draws its mask in memory order, so channels_last gives other (equally random) masks: compare without it
    ref = _clf_losses(SpeedOptions.reference(), dropout=0.0)
    fast = _clf_losses(SpeedOptions(channels_last=True, fused=True), dropout=0.0)
    assert fast == pytest.approx(ref, rel=1e-3)
    assert _clf_losses(SpeedOptions(fused=True)) == pytest.approx(_clf_losses(SpeedOptions.reference()), rel=1e-4)


def test_bf16_autocast_stays_close():
    ref = _gen_losses(SpeedOptions.reference(), steps=2)
    amp = _gen_losses(SpeedOptions(amp=True), steps=2)
    for a, b in zip(ref, amp):
        assert b["rec"] == pytest.approx(a["rec"], rel=0.05)
        assert b["lap"] == pytest.approx(a["lap"], rel=0.05)
    assert _clf_losses(SpeedOptions(amp=True), steps=2) == pytest.approx(_clf_losses(SpeedOptions.reference(), steps=2), rel=0.05)


def test_compiled_classifier_steps_match_plain():
    # the one torch.compile path the CPU suite can afford (inductor builds C++ kernels: ~1 min)
    ref = _clf_losses(SpeedOptions.reference(), steps=2, dropout=0.0)
    trainers = []
    compiled = _clf_losses(SpeedOptions(compile="default"), steps=2, dropout=0.0, trainers=trainers)
    assert isinstance(trainers[0]._forward, torch._dynamo.eval_frame.OptimizedModule)  # really the compiled path
    assert compiled == pytest.approx(ref, rel=1e-3)


def test_bf16_on_a_cpu_without_bf16_hardware_is_warned_about():
    import torch

    from chimeramix.speed import SpeedOptions, bf16_warning, cpu_has_native_bf16

    avx2 = "processor : 0\nflags : fpu sse2 avx avx2 fma\n"
    epyc = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    assert cpu_has_native_bf16(avx2) is False and cpu_has_native_bf16(epyc) is True
    assert cpu_has_native_bf16("no flags here") is None  # cannot tell: no warning either
    cpu, on, off = torch.device("cpu"), SpeedOptions(amp=True), SpeedOptions(amp=False)
    assert "--amp off" in bf16_warning(cpu, on, avx2) and "\n" not in bf16_warning(cpu, on, avx2)
    assert bf16_warning(cpu, on, epyc) is None and bf16_warning(cpu, off, avx2) is None
    assert bf16_warning(torch.device("meta"), on, avx2) is None  # only the CPU emulates
