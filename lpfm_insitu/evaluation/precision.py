"""bf16 inference for the comparison with fp32.

``PhaseModel.to(device, "bf16")`` runs the network under ``torch.autocast``. On the CPU,
MACE's symmetric contraction then mixes bf16 activations with fp32 weights in a
``tensordot`` and raises. When that happens the comparison falls back to the same
autocast with the symmetric contractions alone kept in fp32 (their inputs cast up),
which is what a fix in the model code would most likely do; the report says which mode
produced the numbers.
"""

from __future__ import annotations

import contextlib

import torch


def _run_in_fp32(module, device_type: str = "cpu") -> None:
    """Give this module an instance-level forward that leaves autocast and casts inputs up."""
    original = module.forward

    def up(value):
        return value.float() if torch.is_tensor(value) and value.is_floating_point() else value

    def forward(*args, **kwargs):
        with torch.autocast(device_type=device_type, enabled=False):
            return original(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})

    module.forward = forward


@contextlib.contextmanager
def bf16(model, contractions_in_fp32: bool = False):
    """Run ``model`` in bf16 autocast inside the block; restore fp32 afterwards."""
    patched = []
    if contractions_in_fp32:
        from mace.modules.symmetric_contraction import SymmetricContraction

        for module in model.network.modules():
            if isinstance(module, SymmetricContraction):
                _run_in_fp32(module, model.device.type)
                patched.append(module)
    model.to(model.device, "bf16")
    try:
        yield model
    finally:
        model.to(model.device, "fp32")
        for module in patched:
            del module.forward  # drop the instance attribute: the class method is back


def bf16_call(model, fn):
    """``fn(model)`` in bf16: native autocast, else contractions in fp32. -> (out, mode, error)."""
    try:
        with bf16(model):
            return fn(model), "autocast", None
    except RuntimeError as exc:
        error = str(exc).splitlines()[0]
    with bf16(model, contractions_in_fp32=True):
        return fn(model), "autocast, symmetric contractions in fp32", error
