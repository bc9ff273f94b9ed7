"""bf16 inference for the comparison with fp32.

``PhaseModel.to(device, "bf16")`` runs the network under ``torch.autocast``; the network
keeps the parts that cannot take bf16 in fp32 itself (``LPFMNetwork.fp32_parts``), so the
comparison is the model's own bf16 path.
"""

from __future__ import annotations


def bf16_call(model, fn):
    """``fn(model)`` with ``model`` in bf16, then back to fp32. -> (out, mode, error)."""
    model.to(model.device, "bf16")
    try:
        kept = ", ".join(model.network.fp32_parts)
        return fn(model), f"autocast ({kept} in fp32)", None
    finally:
        model.to(model.device, "fp32")
