"""What an in-situ classification of a very large run would cost, from measured figures.

An invocation's work on one rank is modelled as ``c_owned * owned + c_ghost * ghosts``:
the owned atoms get the whole model, the ghosts the model evaluates (those within its
reach) only the first layer and the neighbour searches. The two per-atom costs are
fitted to ``classify_subdomain`` timed in one process, one thread, on cubic cells of
several sizes whose periodic images are the ghosts (``model.image_halo``): a small cell
has many ghosts per owned atom, a large one few. (CPU times of MPI ranks would not do:
a rank waiting in a collective spins, and oversubscribed ranks wait a lot.) A
subdomain is taken as a cube; its ghost shell is as thick as the model's reach.

For GPUs nothing here is measured on a GPU: the per-atom cost of the model alone comes
from an H200 measurement of the package (0.19 us/atom at 10^5 atoms, 0.17 at 10^6;
issue 20), and ghosts are assumed to cost the same fraction of an owned atom as on the
CPU. It is the floor that a fully device-resident invocation would reach.
"""

from __future__ import annotations

import numpy as np

#: the run the model is for: a shock in 10^8 atoms
RUN_ATOMS = 1e8
#: cores of one CPU node (one rank each), a common dual-socket node
CORES_PER_NODE = 128
#: the model alone on an H200, us/atom per classification at >= 10^6 atoms per GPU
GPU_MODEL_US_PER_ATOM = 0.17
DEVICE_COUNTS = (8, 64, 512, 4096)


def time_subdomains(model, atomic_volume: float, cells=(5, 7, 9, 12), repeat: int = 3,
                    seed: int = 5) -> list[dict]:
    """``classify_subdomain`` (per-atom length scale) on hot-ish fcc cells of ``cells``
    cubic cells each, ghosts within the model's reach: owned atoms, ghosts, best time."""
    import torch

    from ..model.image_halo import ImageHalo, with_ghost_images
    from ..model.local_scale import equivalent_nn_distance
    from ..training.prototypes import FCC, build_prototype
    from .timing import best_time, perturbed_crystal

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        typical = equivalent_nn_distance(atomic_volume)
        reach = model.receptive_field(model.length_scale(atomic_volume=atomic_volume))
        rows = []
        for n in cells:
            atoms = perturbed_crystal(build_prototype(FCC, atomic_volume, primitive=False), n,
                                      seed)
            positions, owners = with_ghost_images(atoms, reach)
            halo = ImageHalo(owners)
            seconds, _ = best_time(lambda: model.classify_subdomain(
                positions, len(atoms), None, halo, typical_distance=typical), repeat, warmup=1)
            rows.append({"cells": n, "owned": len(atoms), "ghosts": len(positions) - len(atoms),
                         "seconds": seconds})
        return rows
    finally:
        torch.set_num_threads(previous)


def fit_costs(rows: list[dict]) -> dict | None:
    """``c_owned``, ``c_ghost`` (us per atom per invocation, one thread) from
    ``time_subdomains`` rows; None if fewer than two rows differ in their ghost ratio."""
    if len(rows) < 2:
        return None
    owned = np.array([r["owned"] for r in rows], dtype=float)
    ghosts = np.array([r["ghosts"] for r in rows], dtype=float)
    if np.ptp(ghosts / owned) == 0:
        return None
    seconds_us = np.array([r["seconds"] for r in rows]) * 1e6
    (c_owned, c_ghost), *_ = np.linalg.lstsq(np.stack([owned, ghosts], 1), seconds_us,
                                             rcond=None)
    predicted = c_owned * owned + c_ghost * ghosts
    return {"c_owned_us": float(c_owned), "c_ghost_us": float(c_ghost),
            "largest_misfit": float(np.max(np.abs(predicted - seconds_us) / seconds_us)),
            "rows": len(rows)}


def ghost_ratio(atoms: float, atomic_volume: float, reach: float) -> float:
    """Ghosts within ``reach`` per owned atom of a cubic subdomain of ``atoms`` atoms."""
    side = (atoms * atomic_volume) ** (1.0 / 3.0)
    return ((side + 2 * reach) ** 3 - side ** 3) / side ** 3


def cost_table(costs: dict, atomic_volume: float, reach: float,
               md_us_per_atom_step: float | None = None, every: int = 100) -> list[dict]:
    """Per-invocation seconds for ``RUN_ATOMS`` on N CPU nodes and on N GPUs."""
    ghost_share = costs["c_ghost_us"] / costs["c_owned_us"]
    rows = []
    for n in DEVICE_COUNTS:
        per_device = RUN_ATOMS / n
        per_rank = per_device / CORES_PER_NODE
        g_cpu = ghost_ratio(per_rank, atomic_volume, reach)
        cpu_s = per_rank * (costs["c_owned_us"] + costs["c_ghost_us"] * g_cpu) * 1e-6
        g_gpu = ghost_ratio(per_device, atomic_volume, reach)
        gpu_s = per_device * GPU_MODEL_US_PER_ATOM * (1.0 + ghost_share * g_gpu) * 1e-6
        row = {"devices": n, "atoms_per_cpu_rank": per_rank, "cpu_ghost_ratio": g_cpu,
               "cpu_node_s": cpu_s, "atoms_per_gpu": per_device, "gpu_ghost_ratio": g_gpu,
               "gpu_s": gpu_s}
        if md_us_per_atom_step:
            # classifying every `every` steps, against the MD those steps cost on one core
            row["cpu_added_to_md"] = cpu_s / (every * per_rank * md_us_per_atom_step * 1e-6)
        rows.append(row)
    return rows
