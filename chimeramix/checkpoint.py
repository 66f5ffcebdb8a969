"""Checkpoints: safetensors for tensors, JSON for everything else; written atomically; never pickles."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .errors import ChimeraMixError
from .fileio import atomic_path


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Write tensors (and a JSON-able dict as header metadata) atomically."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={"chimeramix": json.dumps(meta or {})})


def readable(path: str | Path) -> bool:
    """Whether `path` is a safetensors file whose header parses and covers the file (what truncation breaks)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
        return True
    except Exception:  # safetensors raises its own error types for every kind of damage
        return False


def load_tensors(path: str | Path, device="cpu", advice: str = "it may be truncated: delete it") -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and chimeramix metadata of a safetensors file; a damaged file is refused in one line ending in `advice`."""
    path = Path(path)
    if not path.is_file():
        raise ChimeraMixError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get("chimeramix", "{}"))
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (OSError, ValueError, json.JSONDecodeError, Exception) as e:
        if isinstance(e, ChimeraMixError):
            raise
        raise ChimeraMixError(f"{path} is not a readable safetensors file ({e.__class__.__name__}); {advice}") from None


def module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(prefix: str, module: nn.Module, tensors: dict[str, torch.Tensor], strict: bool = True) -> None:
    sub = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        missing, unexpected = module.load_state_dict(sub, strict=False)
    except RuntimeError as e:  # shape mismatches raise even with strict=False
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise ChimeraMixError(f"weights for '{prefix}' do not fit the network ({detail}): "
                              "the checkpoint was made with another architecture") from None
    if strict and (missing or unexpected):
        raise ChimeraMixError(
            f"weights for '{prefix}' do not fit the network (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "the checkpoint was made with another architecture"
        )


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state dict into tensors (for safetensors) and the JSON rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.state.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    head = prefix + ".state."
    for k, v in tensors.items():
        if k.startswith(head):
            pid, name = k[len(head):].split(".", 1)
            state.setdefault(int(pid), {})[name] = v
    for k, v in meta["scalars"].items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
    # Saved tensors are contiguous; give each state tensor its parameter's strides again (channels_last), since
    # fused optimizer kernels walk parameter and state memory in step and would pair the wrong elements otherwise.
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)
