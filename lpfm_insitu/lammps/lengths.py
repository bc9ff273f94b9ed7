"""Lengths in LAMMPS units: an invocation's length scale, and the ghost cutoff it needs.

The model works at a reference density; LAMMPS lengths are mapped onto it per atom, or
with one fixed scale (``nn_distance``/``atomic_volume``). The ghosts must then cover the
model's receptive field at the smallest scale; if they do not, the message names the
``comm_modify cutoff`` to add (the reach plus the neighbor skin of the unit style).
"""

from __future__ import annotations

import numpy as np

from ..model.local_scale import equivalent_nn_distance
from .errors import agreed_error

#: Default neighbor skin of each LAMMPS unit style (the ``neighbor`` command's defaults).
DEFAULT_SKIN = {"lj": 0.3, "real": 2.0, "metal": 2.0, "si": 0.001, "cgs": 0.1,
                "electron": 2.0, "micro": 0.1, "nano": 0.1}


def scale_and_typical_distance(model, settings, lmp, sub, n_selected_local: int, comm,
                               sync) -> tuple[float | None, float]:
    """The fixed length scale (``None``: read per atom), and the box's neighbour distance
    that sizes the local scale's search (LAMMPS units, the same on every rank).

    Collective when ``settings.types`` selects atoms (they are counted over all ranks).
    """
    s = settings
    if s.types is None:
        natoms = int(lmp.get_natoms())
    else:
        sync.check()  # a sync point before this invocation's first collective
        natoms = int(comm.allreduce(int(n_selected_local)))
    if natoms == 0:
        raise agreed_error(f"fix {s.fix}: no atoms of types {list(s.types or [])} to classify")
    h = np.asarray(sub.box_hi) - np.asarray(sub.box_lo)
    volume = float(np.prod(h))  # triclinic tilts do not change the volume
    typical = equivalent_nn_distance(volume / natoms)
    if s.nn_distance is not None:
        return model.length_scale(nn_distance=float(s.nn_distance)), typical
    if s.atomic_volume is not None:
        return model.length_scale(atomic_volume=float(s.atomic_volume)), typical
    return None, typical


def suggested_cutoff(reach: float, units) -> float:
    """The ``comm_modify cutoff`` for ghosts out to ``reach``: plus the default skin."""
    skin = DEFAULT_SKIN.get(str(units), 0.0)
    return float(np.ceil((reach + skin) * 100.0) / 100.0)


def ghost_message(settings, model, units, coverage, scale: float, reach: float) -> str:
    """Why the ghosts are too few (``halo.ghost_coverage``), and the cutoff to add."""
    s = settings
    net = model.network
    skin = DEFAULT_SKIN.get(str(units))
    suggest = suggested_cutoff(reach, units)
    denoise = (f" + 2 x {s.denoise_steps} denoising steps x max_step {model.max_step:g}"
               if s.denoise_steps else "")
    skin_text = (f"{reach:.4g} + the default neighbor skin {skin:g} of units {units}; "
                 f"if you set another skin with `neighbor`, use {reach:.4g} + that skin"
                 if skin is not None else f"{reach:.4g} + your neighbor skin")
    return (f"fix {s.fix}: LAMMPS' ghost atoms do not cover the model's receptive field: "
            f"{coverage.missing_total} atom(s) within {reach:.4g} of some rank's atoms are "
            f"missing on {coverage.ranks_missing} rank(s), so answers near subdomain "
            f"boundaries would depend on the number of MPI ranks. The model needs ghosts out "
            f"to {reach:.4g} length units (({net.num_interactions} interactions x r_max "
            f"{net.r_max:g}{denoise}) / length scale {scale:.4g}); ghosts now reach about "
            f"{coverage.ghost_reach:.3g}.\nAdd before the run:\n  comm_modify cutoff "
            f"{suggest:g}\n({skin_text})")
