"""The LPFM network: a MACE featurizer and a K-headed per-phase logit decoder.

``log p(x) = sum_i logsumexp_c l[i, c]`` (LPFM Eq. 1); the score is its gradient
with respect to positions (Eq. 2), so it is conservative by construction.

Two backbones share this module:

* ``compact``: a small MACE built here from ``BackboneConfig`` and trained end to end
  (the shipped default);
* ``mace_file``: the embedding and interaction layers of an existing MACE model
  (for example a MACE-MP foundation model stored locally), frozen, with only the
  decoder trained (the paper's path).

Both run the MACE blocks directly on a graph given as tensors, so the same code serves
a periodic cell (edges carry cell shifts) and an MPI subdomain with ghost atoms
(no shifts: periodic images arrive as ghosts).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from . import torch_compat as _torch_compat  # noqa: F401  (must precede e3nn)
from e3nn import o3  # noqa: E402

from .mace_import import mace_network_parts  # noqa: E402

_mace = mace_network_parts()

from .fused_convolution import fuse_first_convolutions  # noqa: E402


def _known_settings(cls, values: dict[str, Any], kind: str) -> dict[str, Any]:
    """A copy of ``values``, refused with the known names if it has a field ``cls`` lacks."""
    known = set(cls.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {kind} setting(s) {sorted(unknown)}; "
                         f"known settings: {sorted(known)}")
    return dict(values)


@dataclass(frozen=True)
class BackboneConfig:
    """Hyper-parameters of the compact MACE backbone (lengths in model units, Å at 15 Å^3/atom)."""

    r_max: float = 4.6
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    max_ell: int = 3
    correlation: int = 3
    num_interactions: int = 2
    channels: int = 16
    avg_num_neighbors: float = 16.0
    radial_mlp: tuple[int, ...] = (32, 32)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BackboneConfig":
        values = _known_settings(cls, values, "backbone")
        if "radial_mlp" in values:
            values["radial_mlp"] = tuple(values["radial_mlp"])
        return cls(**values)


@dataclass(frozen=True)
class DecoderConfig:
    hidden: tuple[int, ...] = (64,)
    # Standardise each invariant feature with statistics taken from training data at
    # initialisation. MACE's angular invariants start ~1e-5 the size of the radial ones,
    # and those small ones are what tells FCC from HCP.
    standardize: bool = False
    # Three local shape invariants beside MACE's features (``shape_invariants``): a
    # correlation-2 MACE sees a tetragonal distortion mostly through terms even in it, so
    # it cannot tell FCC compressed along a cube axis from bct In (FCC stretched); the
    # Lode-angle cosine of the neighbour second moment is -1 for one, +1 for the other.
    shape_invariants: bool = False
    shape_cutoff: tuple[float, float] = (3.05, 3.55)  # smooth first-shell weight, model units

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DecoderConfig":
        values = _known_settings(cls, values, "decoder")
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        if "standardize" in values:
            values["standardize"] = bool(values["standardize"])
        if "shape_cutoff" in values:
            values["shape_cutoff"] = tuple(float(r) for r in values["shape_cutoff"])
        return cls(**values)


#: J2 below this (a ~3% distortion) damps the Lode cosine, whose direction noise decides
SHAPE_J2_FLOOR = 1e-3


def shape_invariants(vectors: torch.Tensor, lengths: torch.Tensor, receiver: torch.Tensor,
                     sender: torch.Tensor, n_atoms: int,
                     cutoff: tuple[float, float]) -> torch.Tensor:
    """Per atom: sqrt(J2), the Lode cosine and their product, of the deviatoric part of the
    first-shell second moment of bond directions averaged once over the first shell.

    Smooth in the positions (cosine weight between the two radii), rotation invariant,
    and odd in a uniaxial distortion through the cosine: -1 compressed, +1 stretched.
    """
    with torch.autocast(device_type=vectors.device.type, enabled=False):
        dtype = torch.promote_types(vectors.dtype, torch.float32)  # half -> fp32, fp64 stays
        vectors, lengths = vectors.to(dtype), lengths.to(dtype).squeeze(-1)
        r_on, r_off = cutoff
        x = ((lengths - r_on) / (r_off - r_on)).clamp(0.0, 1.0)
        weight = 0.5 * (1.0 + torch.cos(torch.pi * x))
        unit = vectors / lengths.clamp_min(1e-9)[:, None]
        outer = (weight[:, None, None] * unit[:, :, None] * unit[:, None, :]).reshape(-1, 9)
        total = torch.zeros(n_atoms, dtype=dtype, device=vectors.device).index_add_(
            0, receiver, weight)
        moment = torch.zeros(n_atoms, 9, dtype=dtype, device=vectors.device).index_add_(
            0, receiver, outer)
        moment = moment / total.clamp_min(1e-9)[:, None]
        # one average over the first shell, as a second message-passing layer would see it
        summed = torch.zeros_like(moment).index_add_(0, receiver,
                                                     weight[:, None] * moment[sender])
        moment = ((moment + summed) / (1.0 + total)[:, None]).reshape(-1, 3, 3)
        eye = torch.eye(3, dtype=dtype, device=vectors.device)
        dev = moment - moment.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None] / 3.0 * eye
        j2 = 0.5 * (dev * dev).sum(dim=(1, 2))
        cosine = 1.5 * 3.0 ** 0.5 * torch.linalg.det(dev) / (j2 + SHAPE_J2_FLOOR) ** 1.5
        magnitude = torch.sqrt(j2 + 1e-12)
        return torch.stack([magnitude, cosine, magnitude * cosine], dim=-1)


def build_compact_mace(config: BackboneConfig) -> torch.nn.Module:
    """A one-element MACE: the model is chemistry-agnostic, so every atom gets one embedding."""
    return _mace.MACE(
        r_max=config.r_max,
        num_bessel=config.num_bessel,
        num_polynomial_cutoff=config.num_polynomial_cutoff,
        max_ell=config.max_ell,
        interaction_cls=_mace.blocks.RealAgnosticResidualInteractionBlock,
        interaction_cls_first=_mace.blocks.RealAgnosticInteractionBlock,
        num_interactions=config.num_interactions,
        num_elements=1,
        hidden_irreps=o3.Irreps(f"{config.channels}x0e"),
        MLP_irreps=o3.Irreps("8x0e"),
        atomic_energies=np.zeros(1),
        avg_num_neighbors=config.avg_num_neighbors,
        atomic_numbers=[1],
        correlation=config.correlation,
        gate=torch.nn.functional.silu,
        radial_MLP=list(config.radial_mlp),
    )


def scalar_feature_mask(mace: torch.nn.Module) -> torch.Tensor:
    """Boolean mask selecting the invariant (0e) channels of MACE's concatenated node features.

    The decoder must be rotation invariant; MACE-MP also carries 1o channels in all but the
    last layer, which a plain MLP would turn into orientation-dependent logits.
    """
    pieces = []
    for product in mace.products:
        irreps = o3.Irreps(str(product.linear.irreps_out))
        for mul, ir in irreps:
            keep = ir.l == 0 and ir.p == 1
            pieces.append(torch.full((mul * ir.dim,), keep, dtype=torch.bool))
    return torch.cat(pieces)


class PhaseDecoder(torch.nn.Module):
    """Invariant node features -> one logit per candidate phase (the K heads)."""

    def __init__(self, n_features: int, n_phases: int, hidden: tuple[int, ...],
                 standardize: bool = False):
        super().__init__()
        self.standardize = standardize
        if standardize:
            self.register_buffer("feature_mean", torch.zeros(n_features))
            self.register_buffer("feature_scale", torch.ones(n_features))
        layers: list[torch.nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.SiLU()]
            width = h
        layers.append(torch.nn.Linear(width, n_phases))
        self.mlp = torch.nn.Sequential(*layers)

    @torch.no_grad()
    def fit_standardization(self, features: torch.Tensor) -> None:
        """Set the per-feature shift and scale from a sample of features."""
        if not self.standardize:
            raise ValueError("this decoder was built without standardize=True")
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_scale.copy_(1.0 / features.std(dim=0).clamp_min(1e-12))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            features = (features - self.feature_mean) * self.feature_scale
        return self.mlp(features)


def keep_in_fp32(module: torch.nn.Module) -> None:
    """Run ``module`` outside autocast, on fp32 inputs.

    MACE's symmetric contraction multiplies activations with its own fp32 weights in a
    ``tensordot`` that autocast does not cover; under bf16/fp16 autocast the two dtypes
    meet and torch refuses. Keeping this one block in fp32 lets the rest run in half
    precision; in fp32 runs it changes nothing.
    """
    original = module.forward

    def up(value):
        half = torch.is_tensor(value) and value.dtype in (torch.float16, torch.bfloat16)
        return value.float() if half else value

    def forward(*args, **kwargs):
        with torch.autocast(device_type=input_device_type(args, kwargs), enabled=False):
            return original(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})

    module.forward = forward


def input_device_type(args: tuple, kwargs: dict) -> str:
    """The device type ("cpu", "cuda", ...) of a call's tensor arguments, positional or keyword.

    Autocast is switched per device type, so turning off the wrong one leaves the block in
    half precision. MACE calls its interaction blocks with keyword arguments only: there
    is deliberately no default device to fall back on when none is found.
    """
    for value in (*args, *kwargs.values()):
        if torch.is_tensor(value):
            return value.device.type
    raise TypeError("a block kept in fp32 was called without tensor arguments, so the device "
                    "whose autocast to turn off is unknown")


class LPFMNetwork(torch.nn.Module):
    """MACE featurizer + phase decoder, evaluated on an explicit graph."""

    def __init__(self, mace: torch.nn.Module, n_phases: int, decoder: DecoderConfig,
                 element_index: int = 0, freeze_backbone: bool = False):
        super().__init__()
        self.mace = mace
        self.register_buffer("feature_mask", scalar_feature_mask(mace), persistent=False)
        self.shape_cutoff = decoder.shape_cutoff if decoder.shape_invariants else None
        n_features = int(self.feature_mask.sum()) + (3 if self.shape_cutoff else 0)
        self.decoder = PhaseDecoder(n_features, n_phases, decoder.hidden, decoder.standardize)
        self.n_elements = len(mace.atomic_numbers)
        self.element_index = element_index
        self.freeze_backbone = freeze_backbone
        from mace.modules.symmetric_contraction import SymmetricContraction

        for module in self.mace.modules():
            if isinstance(module, SymmetricContraction):
                keep_in_fp32(module)
        fuse_first_convolutions(self.mace)
        # the first layer sums raw neighbour geometry (radial x harmonics) over ~40 edges per
        # atom; a thermal distortion is a small difference of such sums, which bf16's 8-bit
        # mantissa rounds away (measured: 0.3% of hot BCC Fe relabelled, 0.05% with this)
        keep_in_fp32(self.mace.interactions[0])
        # e3nn's linear maps and tensor products (the skip connections, the channel mixes,
        # the readouts) are small, and in bf16 they moved labels of hot BCC crystals near a
        # tie: Zr at 1,400 K agreed with fp32 on 99.35% of its atoms, 100% with these in
        # fp32 (the default model; TorchScript-built e3nn modules ran them half-cast)
        for module in self.mace.modules():
            if isinstance(module, (o3.Linear, o3.TensorProduct)):
                keep_in_fp32(module)
        # a radial MLP's output weights every edge's message, and ~40 of them are summed per
        # atom: in bf16 hot BCC Ti (1,400 K, a third of its atoms near the unknown
        # threshold) agreed with fp32 on 99.75% of its labels, 100% with these in fp32
        # (largest logit error 0.037 -> 0.024). What stays in half precision is the later
        # layers' convolution, the bulk of the edge work.
        for interaction in self.mace.interactions[1:]:
            keep_in_fp32(interaction.conv_tp_weights)
        #: what runs in fp32 under half-precision autocast, for reports of the bf16 path
        self.fp32_parts = ["first interaction", "symmetric contractions",
                           "e3nn linear maps and tensor products", "radial MLPs"]
        if self.shape_cutoff is not None:
            self.fp32_parts.append("shape invariants")
        if decoder.standardize:
            # standardising divides by each feature's spread, which can be 1e-3 of its
            # value: in bf16 (3 significant digits) that would be rounding noise
            keep_in_fp32(self.decoder)
            self.fp32_parts.append("decoder")
        if freeze_backbone:
            for p in self.mace.parameters():
                p.requires_grad_(False)

    @property
    def r_max(self) -> float:
        return float(self.mace.r_max)

    @property
    def num_interactions(self) -> int:
        return int(self.mace.num_interactions)

    def features(self, positions: torch.Tensor, edge_index: torch.Tensor,
                 shifts: torch.Tensor, n_owned: int | None = None,
                 atom_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Concatenated invariant node features after every interaction layer.

        ``atom_scale`` (one factor per atom) maps input lengths onto the model's: each
        atom sees the edges it receives scaled by its own factor. Without it, positions
        and shifts are already in model units.

        With ``n_owned``, only the first ``n_owned`` atoms' features are returned, and each
        layer sends messages only to the atoms whose output a later layer (or the answer)
        uses: the last layer to the owned atoms, the one before to them and their
        neighbours, and so on. A subdomain's outer ghosts then only send. The atoms are
        put in the order of how many layers need them (``_nested_order``), so that each
        layer's atoms are a prefix, and a layer's node-wise work (the products, the
        linear maps of the next layer) runs on that prefix only: in situ, a rank's ghosts
        outnumber its owned atoms two to three times.
        """
        mace = self.mace
        n_atoms = positions.shape[0]
        layers = len(mace.interactions)
        prune = n_owned is not None and n_owned < n_atoms
        rows = [n_atoms] * layers  # atoms whose output of each layer is used: a prefix
        if prune:  # edges into atoms no layer needs go before any geometry is computed
            needed = _needed_per_layer(edge_index, n_atoms, n_owned, layers)
            keep = needed[0][edge_index[1]]
            edge_index, shifts = edge_index[:, keep], shifts[keep]
            order, new_index, rows = _nested_order(needed)
            positions = positions[order]
            atom_scale = atom_scale[order] if atom_scale is not None else None
            edge_index = new_index[edge_index]
            # receivers stay sorted (the fused convolution's fast path), each one's
            # edges in their old order, so every sum adds the same terms in the same order
            by_receiver = torch.argsort(edge_index[1], stable=True)
            edge_index, shifts = edge_index[:, by_receiver], shifts[by_receiver]
        node_attrs = torch.zeros(n_atoms, self.n_elements, dtype=positions.dtype,
                                 device=positions.device)
        node_attrs[:, self.element_index] = 1.0
        sender, receiver = edge_index[0], edge_index[1]
        vectors = positions[receiver] - positions[sender] + shifts
        if atom_scale is not None:
            vectors = vectors * atom_scale[receiver].unsqueeze(-1)
        lengths = torch.linalg.norm(vectors, dim=-1, keepdim=True)
        node_feats = mace.node_embedding(node_attrs)
        edge_attrs = mace.spherical_harmonics(vectors)
        edge_feats, cutoff = mace.radial_embedding(lengths, node_attrs, edge_index,
                                                   mace.atomic_numbers)
        shape = None
        if self.shape_cutoff is not None:
            # only first-shell edges weigh anything; the rest would add exact zeros
            first_shell = lengths.squeeze(-1) < self.shape_cutoff[1]
            shape = shape_invariants(vectors[first_shell], lengths[first_shell],
                                     receiver[first_shell], sender[first_shell], n_atoms,
                                     self.shape_cutoff)
        collected = []
        rows_in = n_atoms
        for i, (interaction, product) in enumerate(zip(mace.interactions, mace.products)):
            if prune and i > 0:
                keep = edge_index[1] < rows[i]
                edge_index, edge_attrs, edge_feats = (edge_index[:, keep], edge_attrs[keep],
                                                      edge_feats[keep])
                cutoff = cutoff[keep] if cutoff is not None else None
            # MACE's own ghost truncation (built for LAMMPS' ML-IAP): the block's node-wise
            # work after the convolution runs on the first rows[i] atoms only. Marking
            # every layer "first" skips MACE's LAMMPS exchange of ghost features: the
            # ghosts a layer reads were computed here, by the layer before.
            truncation = dict(lammps_class=_GHOSTS_COMPUTED_HERE,
                              lammps_natoms=(rows[i], rows_in - rows[i]),
                              first_layer=True) if prune else dict(first_layer=(i == 0))
            node_feats, sc = interaction(
                node_attrs=node_attrs[:rows_in], node_feats=node_feats, edge_attrs=edge_attrs,
                edge_feats=edge_feats, edge_index=edge_index, cutoff=cutoff, **truncation,
            )
            node_feats = node_feats[:rows[i]]
            sc = sc[:rows[i]] if sc is not None else None
            node_feats = product(node_feats=node_feats, sc=sc, node_attrs=node_attrs[:rows[i]])
            rows_in = rows[i]
            collected.append(node_feats[:n_owned] if n_owned is not None else node_feats)
        features = torch.cat(collected, dim=-1)[:, self.feature_mask]
        if shape is not None:
            own = shape[:n_owned] if n_owned is not None else shape
            # promote, never round: the Lode cosine decides the sign of a distortion, and
            # in bf16 its third digit is gone (the decoder standardises in fp32 anyway)
            dtype = torch.promote_types(features.dtype, own.dtype)
            features = torch.cat([features.to(dtype), own.to(dtype)], dim=-1)
        return features

    def forward(self, positions: torch.Tensor, edge_index: torch.Tensor,
                shifts: torch.Tensor, n_owned: int | None = None,
                atom_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Per-atom, per-phase logits ``l[i, c]`` (of the first ``n_owned`` atoms if given)."""
        return self.decoder(self.features(positions, edge_index, shifts, n_owned, atom_scale))


def _needed_per_layer(edge_index: torch.Tensor, n_atoms: int, n_owned: int,
                      layers: int) -> list[torch.Tensor]:
    """For each layer, a mask of the atoms whose output of that layer is used."""
    need = torch.zeros(n_atoms, dtype=torch.bool, device=edge_index.device)
    need[:n_owned] = True
    needed = [need]
    for _ in range(layers - 1):  # one more hop of senders per earlier layer
        need = need.clone()
        need[edge_index[0][need[edge_index[1]]]] = True
        needed.append(need)
    return needed[::-1]


#: a stand-in for MACE's LAMMPS handle: only its being set matters (it turns truncation on)
_GHOSTS_COMPUTED_HERE = "ghost features computed in this process"


def _nested_order(needed: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(order, new_index, rows)``: the atoms ordered by how many layers need them (the
    owned atoms first, as they were), each atom's index in that order, and how many atoms
    each layer needs, so that layer ``i``'s atoms are the first ``rows[i]``."""
    needed = torch.stack(needed)
    order = torch.argsort(needed.sum(dim=0), descending=True, stable=True)
    new_index = torch.empty_like(order)
    new_index[order] = torch.arange(len(order), device=order.device)
    return order, new_index, [int(n) for n in needed.sum(dim=1).tolist()]


@dataclass
class ModelSpec:
    """Everything needed to rebuild a network, stored beside its weights in a model file."""

    phases: tuple[str, ...]
    backbone_kind: str = "compact"  # or "mace_file"
    backbone: dict[str, Any] = field(default_factory=dict)
    decoder: dict[str, Any] = field(default_factory=dict)
    element_index: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["phases"] = list(self.phases)
        return d


@contextlib.contextmanager
def e3nn_without_torchscript():
    """Build e3nn modules as plain ``torch.fx`` modules instead of TorchScript ones.

    Scripting them cost every process ~1 s when the network was built and ~1 s more in
    its first call (TorchScript's profiling runs), for no speed afterwards: the same
    logits to the bit and no slower a classification (measured on the default model,
    10^4 atoms, 2 threads). e3nn's setting is global, so it is restored on the way out,
    as mace-torch's own compile helper does.
    """
    from e3nn import get_optimization_defaults, set_optimization_defaults

    before = get_optimization_defaults()["jit_script_fx"]
    set_optimization_defaults(jit_script_fx=False)
    try:
        yield
    finally:
        set_optimization_defaults(jit_script_fx=before)


def build_network(spec: ModelSpec, mace: torch.nn.Module | None = None) -> LPFMNetwork:
    """Build the network of a spec; ``mace`` supplies a ready featurizer for ``mace_file``."""
    with e3nn_without_torchscript():
        return _build_network(spec, mace)


def _build_network(spec: ModelSpec, mace: torch.nn.Module | None) -> LPFMNetwork:
    decoder = DecoderConfig.from_dict(spec.decoder)
    if spec.backbone_kind == "compact":
        backbone = build_compact_mace(BackboneConfig.from_dict(spec.backbone))
        return LPFMNetwork(backbone, len(spec.phases), decoder)
    if spec.backbone_kind == "mace_file":
        if mace is None:
            mace = rebuild_mace(spec.backbone)
        return LPFMNetwork(mace, len(spec.phases), decoder, element_index=spec.element_index,
                           freeze_backbone=True)
    raise ValueError(
        f"unknown backbone kind {spec.backbone_kind!r}; this version knows 'compact' and 'mace_file'"
    )


# --- frozen MACE featurizer (the paper's path) -------------------------------------------

_SERIALISABLE_IRREPS = ("hidden_irreps", "MLP_irreps", "edge_irreps")


def mace_architecture(mace: torch.nn.Module) -> dict[str, Any]:
    """A JSON-able description of a MACE model, from which ``rebuild_mace`` makes it again."""
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(mace)
    if "error" in config:
        raise ValueError(f"cannot use this MACE model as featurizer: {config['error']}")
    out: dict[str, Any] = {"model_class": mace.__class__.__name__}
    for key, value in config.items():
        if key in ("interaction_cls", "interaction_cls_first"):
            out[key] = value.__name__
        elif key in _SERIALISABLE_IRREPS:
            out[key] = None if value is None else str(value)
        elif key == "gate":
            out[key] = None if value is None else value.__name__
        elif isinstance(value, torch.Tensor):
            out[key] = value.tolist()
        elif isinstance(value, np.ndarray):
            out[key] = value.tolist()
        elif key == "readout_cls":
            out[key] = value.__name__
        else:
            out[key] = value
    return out


def rebuild_mace(arch: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a MACE module from ``mace_architecture`` output, without unpickling anything."""
    from mace import modules as mace_modules
    from mace.modules import blocks

    kwargs = {k: v for k, v in arch.items() if k != "model_class"}
    for key in ("interaction_cls", "interaction_cls_first"):
        kwargs[key] = mace_modules.interaction_classes[kwargs[key]]
    for key in _SERIALISABLE_IRREPS:
        if kwargs.get(key) is not None:
            kwargs[key] = o3.Irreps(kwargs[key])
    gates = {None: None, "silu": torch.nn.functional.silu, "tanh": torch.tanh,
             "abs": torch.abs}
    kwargs["gate"] = gates[kwargs.get("gate")]
    if "readout_cls" in kwargs:
        kwargs["readout_cls"] = getattr(blocks, kwargs["readout_cls"])
    for key in ("atomic_energies", "atomic_inter_scale", "atomic_inter_shift"):
        if key in kwargs and kwargs[key] is not None:
            kwargs[key] = np.asarray(kwargs[key])
    model_class = getattr(mace_modules, arch.get("model_class", "ScaleShiftMACE"))
    return model_class(**kwargs)
