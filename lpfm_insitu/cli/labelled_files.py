"""Writing classified frames: extended XYZ or a LAMMPS text dump with the in-situ fix's
columns, both of which OVITO opens with the phase as a typed, colour-coded property."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LPFMError
from ..training.prototypes import common_name

def op_column_names(phases) -> list[str]:
    """The in-situ dump's order-parameter columns (``ops="all"``: every phase, model order)."""
    return [f"d2_lpfm_op[{k}]" for k in range(1, len(phases) + 1)]


def _origin(atoms) -> np.ndarray:
    return np.asarray(atoms.get_celldisp(), dtype=float).reshape(3)


def write_extxyz(path: Path, frames, results) -> None:
    """Extended XYZ with the in-situ fix's columns without the LAMMPS prefixes
    (``lpfm_phase`` index, ``lpfm_conf``, ``lpfm_op`` logits, ``lpfm_prob``, and
    ``lpfm_disp`` after denoising), the cell origin, and for OVITO ``structure_type``
    (common names: a typed "Structure Type" property) and ``color`` (by phase)."""
    from ase.io import write

    from ..tracking.colors import phase_color

    out = []
    for atoms, result in zip(frames, results):
        atoms = atoms.copy()
        names = [common_name(p) for p in result.phases] + ["unknown"]
        colors = np.array([phase_color(p, k) for k, p in enumerate(result.phases)]
                          + [phase_color("unknown")])
        atoms.new_array("lpfm_phase", result.labels.astype(np.int32))
        atoms.new_array("lpfm_conf", result.confidence.astype(np.float64))
        atoms.new_array("lpfm_prob", result.probability.astype(np.float64))
        atoms.new_array("lpfm_op", result.logits.astype(np.float64))
        if np.any(result.displacement):
            atoms.new_array("lpfm_disp", result.displacement.astype(np.float64))
        atoms.new_array("structure_type", np.array([names[k] for k in result.labels],
                                                   dtype="U24"))
        atoms.new_array("color", colors[result.labels])  # -1 (unknown) takes the last
        atoms.info["lpfm_phases"] = " ".join(result.phases)
        atoms.info["lpfm_phase_names"] = " ".join(names[:-1])
        atoms.info["Origin"] = _origin(atoms)  # OVITO reads the cell origin from here
        atoms.set_celldisp(np.zeros(3))
        out.append(atoms)
    write(str(path), out, format="extxyz")


def write_lammps_dump(path: Path, frames, results) -> None:
    """A LAMMPS text dump with the in-situ fix's columns: id type x y z i_lpfm_phase
    d_lpfm_conf d2_lpfm_op[1..K] (every phase in model order), in the input's box."""
    with open(path, "w") as fh:
        for k, (atoms, result) in enumerate(zip(frames, results)):
            n = len(atoms)
            ids = atoms.arrays.get("id", np.arange(1, n + 1))
            types = atoms.arrays.get("type", atoms.numbers)
            step = atoms.info.get("timestep", k)
            cell = np.asarray(atoms.cell)
            if not np.allclose(cell, np.diag(np.diag(cell))):
                raise LPFMError(f"{path}: writing a triclinic cell as a LAMMPS dump is not "
                                "supported; give an .xyz output")
            origin = _origin(atoms)
            fh.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{n}\n")
            # open directions as LAMMPS' fixed boundaries, so OVITO keeps them open
            flags = " ".join("pp" if periodic else "ff" for periodic in atoms.pbc)
            fh.write(f"ITEM: BOX BOUNDS {flags}\n")
            for axis in range(3):
                fh.write(f"{origin[axis]:.10g} {origin[axis] + cell[axis, axis]:.10g}\n")
            columns = ["id", "type", "x", "y", "z", "i_lpfm_phase", "d_lpfm_conf"]
            columns += op_column_names(result.phases)
            fh.write("ITEM: ATOMS " + " ".join(columns) + "\n")
            table = np.column_stack([ids, types, atoms.positions, result.labels,
                                     result.confidence, result.logits])
            fmt = ["%d", "%d", "%.6f", "%.6f", "%.6f", "%d", "%.5f"] + ["%.5f"] * len(result.phases)
            np.savetxt(fh, table, fmt=fmt)
