"""MACE's first-layer convolution, fused into one gather-multiply-scatter.

In the first interaction layer the node features entering the convolution are scalars
(``U x 0e``), so every path of MACE's ``uvu`` tensor product is ``0e x l -> l``: the
message of an edge is ``alpha_l * w[e, l, u] * x[sender, u] * Y[e, lm]``. e3nn evaluates
that through its generic tensor-product code, which on a CPU spends most of a compact
model's time in broadcasting multiplies and concatenations (profiled: 13.5 of 20 us/atom
in the interaction block). Here the same numbers come from one broadcast product over
(edge, component, channel), summed onto receivers before the one permutation to e3nn's
layout, so the permutation touches atoms rather than edges.

The path constants ``alpha_l`` are read from the e3nn module itself (by evaluating it on
unit inputs), and the fused module is checked against it on random inputs when it is
built, so a change in e3nn's conventions fails loudly instead of changing answers.
MACE calls a convolution with the whole graph when its interaction block has a
``conv_fusion`` attribute; that is the hook used.
"""

from __future__ import annotations

import torch

from . import torch_compat as _torch_compat  # noqa: F401  (must precede e3nn)


class ScalarFusedConvolution(torch.nn.Module):
    """Drop-in for a ``uvu`` e3nn ``TensorProduct`` whose first input holds only scalars."""

    def __init__(self, conv_tp: torch.nn.Module):
        super().__init__()
        irreps_in1, irreps_in2, irreps_out = conv_tp.irreps_in1, conv_tp.irreps_in2, conv_tp.irreps_out
        reason = _unsupported(conv_tp)
        if reason:
            raise ValueError(f"cannot fuse this convolution: {reason}")
        channels = irreps_in1[0].mul
        component_scale = torch.zeros(irreps_in2.dim)
        out_slices, in2_slices = irreps_out.slices(), irreps_in2.slices()
        blocks = []  # (start in e3nn's output, path, component slice)
        for path, ins in enumerate(conv_tp.instructions):
            component_scale[in2_slices[ins.i_in2]] = _path_constant(conv_tp, path, channels)
            blocks.append((out_slices[ins.i_out].start, path, in2_slices[ins.i_in2]))
        self.output_blocks = [(path, comp) for _, path, comp in sorted(blocks, key=lambda b: b[0])]
        self.channels, self.n_paths = channels, len(conv_tp.instructions)
        self.register_buffer("component_scale", component_scale, persistent=False)
        # the replaced module's own (empty) weight and mask, under the same names, so model
        # files written before or after fusing load into either
        for name, param in conv_tp.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buffer in conv_tp.named_buffers(recurse=False):
            self.register_buffer(name, buffer,
                                 persistent=name not in conv_tp._non_persistent_buffers_set)
        _check_against(self, conv_tp)
        # kept (unregistered, so not in state_dict) for unfuse_convolutions
        object.__setattr__(self, "original", conv_tp)

    def forward(self, node_feats: torch.Tensor, edge_attrs: torch.Tensor,
                tp_weights: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        n_nodes, n_edges = node_feats.shape[0], edge_attrs.shape[0]
        # atoms past the last receiver get no message: the network orders the atoms a
        # layer needs first, and a rank's outer ghosts (most of its atoms) only send
        n_out, n_nodes = n_nodes, int(receiver.max()) + 1 if n_edges else 0
        weighted = (tp_weights.view(n_edges, self.n_paths, self.channels)
                    * node_feats[sender].unsqueeze(1)).view(n_edges, -1)
        harmonics = edge_attrs * self.component_scale
        # Each atom's edges side by side (padded with zeros to the longest list), so the
        # sum over edges becomes one batched matrix product per atom instead of an
        # (edges x components x channels) tensor in memory.
        slot, width = _slots(receiver, n_nodes)
        flat = receiver * width + slot
        harmonics_padded = harmonics.new_zeros(n_nodes * width, harmonics.shape[1]).index_copy_(
            0, flat, harmonics).view(n_nodes, width, -1)
        weighted_padded = weighted.new_zeros(n_nodes * width, weighted.shape[1]).index_copy_(
            0, flat, weighted).view(n_nodes, width, -1)
        # every (component, path) pair; only the pairs where the component belongs to the
        # path are kept, which wastes flops but keeps it to one well-vectorised product
        summed = torch.bmm(harmonics_padded.transpose(1, 2), weighted_padded)
        summed = summed.view(n_nodes, -1, self.n_paths, self.channels)
        blocks = [summed[:, s, path, :].transpose(1, 2).reshape(n_nodes, -1)
                  for path, s in self.output_blocks]
        message = torch.cat(blocks, dim=1)
        if n_nodes < n_out:
            message = torch.cat([message, message.new_zeros(n_out - n_nodes, message.shape[1])])
        return message


def _slots(receiver: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, int]:
    """Position of every edge in its receiver's list, and the longest list."""
    if receiver.numel() == 0:
        return receiver, 1
    counts = torch.bincount(receiver, minlength=n_nodes)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(receiver.numel(), device=receiver.device)
    if bool((receiver[1:] >= receiver[:-1]).all()):  # the package's graphs come sorted
        return position - starts[receiver], int(counts.max())
    order = torch.argsort(receiver, stable=True)
    slot = torch.empty_like(receiver)
    slot[order] = position - starts[receiver[order]]
    return slot, int(counts.max())


def _unsupported(conv_tp) -> str:
    irreps_in1, irreps_in2, irreps_out = conv_tp.irreps_in1, conv_tp.irreps_in2, conv_tp.irreps_out
    if len(irreps_in1) != 1 or irreps_in1[0].ir.l != 0 or irreps_in1[0].ir.p != 1:
        return f"first input {irreps_in1} is not a single block of scalars"
    if any(mul != 1 for mul, _ in irreps_in2):
        return f"second input {irreps_in2} repeats an irrep"
    seen = set()
    for ins in conv_tp.instructions:
        if ins.connection_mode != "uvu" or not ins.has_weight or ins.i_in1 != 0:
            return f"instruction {ins} is not a weighted uvu path from the scalars"
        if irreps_in2[ins.i_in2].ir != irreps_out[ins.i_out].ir or ins.i_in2 in seen:
            return f"instruction {ins} is not 0e x l -> l"
        if irreps_out[ins.i_out].mul != irreps_in1[0].mul:
            return f"instruction {ins} changes the channel count"
        seen.add(ins.i_in2)
    if conv_tp.internal_weights or conv_tp.shared_weights:
        return "weights are not per edge"
    return ""


def _path_constant(conv_tp, path: int, channels: int) -> float:
    """e3nn's normalisation of one path: its output for unit scalars, weights and harmonics."""
    ins = conv_tp.instructions[path]
    x = torch.ones(1, conv_tp.irreps_in1.dim)
    y = torch.zeros(1, conv_tp.irreps_in2.dim)
    y[0, conv_tp.irreps_in2.slices()[ins.i_in2].start] = 1.0
    w = torch.zeros(1, conv_tp.weight_numel)
    w[0, path * channels:(path + 1) * channels] = 1.0
    with torch.no_grad():
        out = conv_tp(x, y, w)[0, conv_tp.irreps_out.slices()[ins.i_out]]
    return float(out[0])


def _check_against(fused, conv_tp, n_nodes: int = 5, n_edges: int = 11) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n_nodes, conv_tp.irreps_in1.dim, generator=generator)
    y = torch.randn(n_edges, conv_tp.irreps_in2.dim, generator=generator)
    w = torch.randn(n_edges, conv_tp.weight_numel, generator=generator)
    edge_index = torch.randint(0, n_nodes, (2, n_edges), generator=generator)
    with torch.no_grad():
        reference = torch.zeros(n_nodes, conv_tp.irreps_out.dim).index_add_(
            0, edge_index[1], conv_tp(x[edge_index[0]], y, w))
        mine = fused(x, y, w, edge_index)
    error = float((mine - reference).abs().max())
    if error > 1e-4 * max(1.0, float(reference.abs().max())):
        raise RuntimeError(f"fused convolution differs from e3nn's by {error:.3g}; "
                           "this e3nn version lays out tensor products differently")


def fuse_first_convolutions(mace: torch.nn.Module) -> int:
    """Swap every fusable interaction convolution of ``mace`` for the fused one; return how many."""
    fused = 0
    for interaction in mace.interactions:
        conv = getattr(interaction, "conv_tp", None)
        if conv is None or hasattr(interaction, "conv_fusion") or _unsupported(conv):
            continue
        interaction.conv_tp = ScalarFusedConvolution(conv)
        interaction.conv_fusion = True
        fused += 1
    return fused


def unfuse_convolutions(mace: torch.nn.Module) -> int:
    """Put e3nn's tensor products back (for benchmarking the fusion); return how many."""
    restored = 0
    for interaction in mace.interactions:
        if isinstance(getattr(interaction, "conv_tp", None), ScalarFusedConvolution):
            interaction.conv_tp = interaction.conv_tp.original
            del interaction.conv_fusion
            restored += 1
    return restored
