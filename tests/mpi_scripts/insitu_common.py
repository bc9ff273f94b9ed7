"""Shared by the in-situ tests (tests/lammps/test_insitu_*.py) and the benchmark: a tiny
deterministic model file, LAMMPS dump reading, and the single-process reference."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad", "A_cP1_221_a")
BACKBONE = {"channels": 8, "correlation": 2, "max_ell": 2, "num_interactions": 2, "r_max": 3.3}


def make_tiny_model(path, phases=PHASES, backbone=BACKBONE, seed=0, averaging_radius=0.0,
                    log_prior=None, step_log_priors=None):
    """A small untrained LPFM whose labels vary from atom to atom in a hot fcc crystal.

    An untrained MACE gives nearly the same features to all fcc-like atoms, so the
    decoder's last layer is re-centred on a rattled fcc reference and scaled to unit
    spread: the argmax then follows each atom's environment, and the threshold (median
    confidence) leaves about half of the atoms unknown.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        from ase.build import bulk

        from lpfm_insitu.model.graph import periodic_graph
        from lpfm_insitu.model.inference import PhaseModel
        from lpfm_insitu.model.network import ModelSpec, build_network
        from lpfm_insitu.model.files import save_model

    torch.manual_seed(seed)
    spec = ModelSpec(phases=tuple(phases), backbone=dict(backbone))
    net = build_network(spec)
    model = PhaseModel(net, spec.phases)
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.12, seed=3)
    scale = model.length_scale(atomic_volume=atoms.get_volume() / len(atoms))
    graph = periodic_graph(atoms.positions * scale, np.asarray(atoms.cell) * scale, True,
                           model.cutoff)
    with torch.no_grad():
        features = net.features(torch.tensor(atoms.positions * scale, dtype=torch.float32),
                                torch.as_tensor(graph.edge_index),
                                torch.tensor(graph.shifts, dtype=torch.float32))
        hidden = net.decoder.mlp[:-1](features)
        last = net.decoder.mlp[-1]
        spread = (hidden @ last.weight.T).std(dim=0).mean()
        last.weight.div_(spread)
        last.bias.copy_(-(last.weight @ hidden.mean(dim=0)))
    model.averaging_radius = averaging_radius
    threshold = float(np.median(model.classify_atoms(atoms).confidence))
    # denoising as the shipped model does it: small steps, capped at 0.03 A
    model = PhaseModel(net, spec.phases, confidence_threshold=threshold, step_size=0.005,
                       max_step=0.03, averaging_radius=averaging_radius, log_prior=log_prior,
                       step_log_priors=step_log_priors)
    return save_model(Path(path), model, spec)


def decided(result, threshold, margin=1e-3):
    """Atoms whose label is not a numerical tie (top two logits, or confidence vs threshold)."""
    top2 = np.sort(result.logits, axis=1)[:, -2:]
    return ((top2[:, 1] - top2[:, 0]) > margin) & (np.abs(result.confidence - threshold) > margin)


def read_dump_frames(path):
    """All frames of a LAMMPS text dump: list of (step, columns dict, bounds (3,2), tilts)."""
    lines = Path(path).read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("ITEM: TIMESTEP")]
    frames = []
    for start in starts:
        frame = lines[start:]
        step = int(frame[1])
        n_atoms = int(frame[3])
        bounds_header = frame[4]
        rows3 = [[float(v) for v in frame[5 + k].split()] for k in range(3)]
        bounds = np.array([r[:2] for r in rows3])
        tilts = tuple(r[2] for r in rows3) if "xy" in bounds_header else (0.0, 0.0, 0.0)
        header = frame[8].split()[2:]
        data = np.array([[float(v) for v in line.split()] for line in frame[9:9 + n_atoms]])
        data = data.reshape(n_atoms, len(header))
        frames.append((step, {name: data[:, k] for k, name in enumerate(header)}, bounds, tilts))
    return frames


def stack(columns, prefix):
    """Columns ``prefix[1]``, ``prefix[2]``, ... as one (n, k) array."""
    k = 1
    out = []
    while f"{prefix}[{k}]" in columns:
        out.append(columns[f"{prefix}[{k}]"])
        k += 1
    return np.stack(out, axis=1)


def atoms_of(columns, bounds):
    """An orthogonal periodic ase.Atoms from dumped x y z and box bounds."""
    from ase import Atoms

    positions = np.stack([columns["x"], columns["y"], columns["z"]], axis=1)
    cell = np.diag(bounds[:, 1] - bounds[:, 0])
    return Atoms(f"Cu{len(positions)}", positions=positions - bounds[:, 0],
                 cell=cell, pbc=True)
