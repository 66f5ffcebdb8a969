import pytest
import torch

from chimeramix import checkpoint as ckpt
from chimeramix.errors import ChimeraMixError
from chimeramix.fileio import atomic_path, write_json, read_json


def test_tensors_and_metadata_round_trip(tmp_path):
    t = {"a.w": torch.randn(3, 4), "b": torch.arange(5)}
    ckpt.save_tensors(tmp_path / "x.safetensors", t, {"config": {"lr": 0.1}, "n": [1, 2]})
    back, meta = ckpt.load_tensors(tmp_path / "x.safetensors")
    assert back.keys() == t.keys() and all(torch.equal(back[k], t[k]) for k in t)
    assert meta == {"config": {"lr": 0.1}, "n": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]  # no temp file left


def test_optimizer_state_round_trip_without_pickles(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters(), lr=0.01, betas=(0.5, 0.9))
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(4, 3)).sum().backward()
        opt.step()
    t, meta = ckpt.optimizer_tensors("opt", opt)
    ckpt.save_tensors(tmp_path / "s.safetensors", {**t, **ckpt.module_tensors("m", m)}, meta)
    tensors, meta2 = ckpt.load_tensors(tmp_path / "s.safetensors")
    m2 = torch.nn.Linear(3, 2)
    ckpt.load_module("m", m2, tensors)
    opt2 = torch.optim.Adam(m2.parameters(), lr=0.5)
    ckpt.load_optimizer("opt", opt2, tensors, meta2)
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[0]["betas"] == (0.5, 0.9)
    x = torch.randn(4, 3)
    for o, mm in ((opt, m), (opt2, m2)):
        o.zero_grad()
        mm(x).sum().backward()
        o.step()
    assert torch.equal(m.weight, m2.weight)  # same moments -> same next step


def test_wrong_architecture_and_damaged_files_are_clear_errors(tmp_path):
    ckpt.save_tensors(tmp_path / "w.safetensors", ckpt.module_tensors("m", torch.nn.Linear(3, 2)))
    tensors, _ = ckpt.load_tensors(tmp_path / "w.safetensors")
    with pytest.raises(ChimeraMixError, match="another architecture"):
        ckpt.load_module("m", torch.nn.Linear(4, 2), tensors)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ChimeraMixError, match="not a readable safetensors"):
        ckpt.load_tensors(tmp_path / "bad.safetensors")
    with pytest.raises(ChimeraMixError, match="does not exist"):
        ckpt.load_tensors(tmp_path / "missing.safetensors")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    write_json(tmp_path / "r.json", {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(tmp_path / "r.json") == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_fused_optimizer_state_keeps_channels_last_strides(tmp_path):
    """Saved state is contiguous; restored state must get its parameter's strides back or fused steps go wrong."""
    torch.manual_seed(0)

    def make():
        m = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        return m, torch.optim.Adam(m.parameters(), lr=0.01, fused=True)

    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    m, opt = make()
    for _ in range(2):
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
    t, meta = ckpt.optimizer_tensors("opt", opt)
    ckpt.save_tensors(tmp_path / "s.safetensors", {**t, **ckpt.module_tensors("m", m)}, meta)
    tensors, meta2 = ckpt.load_tensors(tmp_path / "s.safetensors")
    m2, opt2 = make()
    ckpt.load_module("m", m2, tensors)
    ckpt.load_optimizer("opt", opt2, tensors, meta2)
    assert opt2.state[m2.weight]["exp_avg"].stride() == m2.weight.stride()
    for o, mm in ((opt, m), (opt2, m2)):
        o.zero_grad()
        mm(x).square().mean().backward()
        o.step()
    assert torch.equal(m.weight, m2.weight)
