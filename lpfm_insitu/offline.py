"""Classifying structure files after a run: ``lpfm classify``.

Input is anything ASE reads (LAMMPS text dumps included); output is extended XYZ or a
LAMMPS text dump with extra columns, both of which OVITO opens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .inference import PhaseResult


def read_frames(path: str | Path, index: str = "-1", fmt: str | None = None):
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    if fmt is None and (".dump" in path.name or path.name.startswith("dump.")
                        or path.suffix == ".lammpstrj"):
        fmt = "lammps-dump-text"
    frames = read(str(path), index=index, format=fmt)
    return frames if isinstance(frames, list) else [frames]


def op_column_names(phases) -> list[str]:
    return [f"lpfm_op_{p}" for p in phases]


def write_extxyz(path: Path, frames, results: list[PhaseResult]) -> None:
    from ase.io import write

    out = []
    for atoms, result in zip(frames, results):
        atoms = atoms.copy()
        atoms.new_array("lpfm_phase_index", result.labels.astype(np.int32))
        atoms.new_array("lpfm_phase", np.array(result.label_names, dtype="U16"))
        atoms.new_array("lpfm_conf", result.confidence.astype(np.float64))
        atoms.new_array("lpfm_prob", result.probability.astype(np.float64))
        atoms.new_array("lpfm_op", result.logits.astype(np.float64))
        if np.any(result.displacement):
            atoms.new_array("lpfm_disp", result.displacement.astype(np.float64))
        atoms.info["lpfm_phases"] = " ".join(result.phases)
        out.append(atoms)
    write(str(path), out, format="extxyz")


def write_lammps_dump(path: Path, frames, results: list[PhaseResult]) -> None:
    """A LAMMPS text dump: id type x y z, the label index, confidence and one column per OP."""
    with open(path, "w") as fh:
        for k, (atoms, result) in enumerate(zip(frames, results)):
            n = len(atoms)
            ids = atoms.arrays.get("id", np.arange(1, n + 1))
            types = atoms.arrays.get("type", atoms.numbers)
            step = atoms.info.get("timestep", k)
            cell = np.asarray(atoms.cell)
            if not np.allclose(cell, np.diag(np.diag(cell))):
                raise ValueError("writing a triclinic cell as a LAMMPS dump is not supported; "
                                 "use an .xyz output")
            origin = np.asarray(atoms.info.get("celldisp", np.zeros(3))).reshape(3)
            fh.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{n}\n")
            # open directions as LAMMPS' fixed boundaries, so OVITO keeps them open
            flags = " ".join("pp" if periodic else "ff" for periodic in atoms.pbc)
            fh.write(f"ITEM: BOX BOUNDS {flags}\n")
            for axis in range(3):
                fh.write(f"{origin[axis]:.10g} {origin[axis] + cell[axis, axis]:.10g}\n")
            columns = ["id", "type", "x", "y", "z", "lpfm_phase", "lpfm_conf"]
            columns += op_column_names(result.phases)
            fh.write("ITEM: ATOMS " + " ".join(columns) + "\n")
            table = np.column_stack([ids, types, atoms.positions, result.labels,
                                     result.confidence, result.logits])
            fmt = ["%d", "%d", "%.6f", "%.6f", "%.6f", "%d", "%.5f"] + ["%.5f"] * len(result.phases)
            np.savetxt(fh, table, fmt=fmt)


def summary(results: list[PhaseResult], model_name: str, denoise_steps: int) -> dict:
    phases = results[0].phases
    labels = np.concatenate([r.labels for r in results])
    counts = np.bincount(labels + 1, minlength=len(phases) + 1)
    n = int(len(labels))
    fractions = {"unknown": float(counts[0] / max(n, 1))}
    fractions.update({p: float(counts[i + 1] / max(n, 1)) for i, p in enumerate(phases)})
    out = {"n_atoms": n, "n_frames": len(results), "model": model_name,
           "denoise_steps": denoise_steps,
           "fractions": {k: v for k, v in fractions.items() if v > 0 or k == "unknown"},
           "mean_confidence": float(np.mean(np.concatenate([r.confidence for r in results])))
           if n else 0.0}
    if len(results) > 1:
        out["frames"] = [{"n_atoms": len(r.labels), "fractions": {
            k: v for k, v in r.fractions().items() if v > 0}} for r in results]
    return out


def classify_command(args) -> int:
    from .modelfile import load_model

    model = load_model(args.model, precision=args.precision)
    candidates = args.candidates.split(",") if args.candidates else None
    if getattr(args, "averaging_radius", None) is not None:
        model.averaging_radius = args.averaging_radius
    frames = read_frames(args.input, args.index, args.format)
    results = [model.classify_atoms(atoms, denoise_steps=args.denoise_steps,
                                    tolerance=getattr(args, "tolerance", None),
                                    nn_distance=args.nn_distance, candidates=candidates)
               for atoms in frames]
    if args.output:
        output = Path(args.output)
        if output.suffix in (".xyz", ".extxyz"):
            write_extxyz(output, frames, results)
        elif ".dump" in output.name or output.suffix == ".lammpstrj":
            write_lammps_dump(output, frames, results)
        else:
            raise ValueError(f"output {str(output)!r}: use a .xyz (extended XYZ) or .dump "
                             "(LAMMPS dump) file name")
    report = summary(results, str(args.model), args.denoise_steps)
    report["averaging_radius"] = model.averaging_radius
    if args.json:
        print(json.dumps(report))
    else:
        phases = ", ".join(f"{k} {v:.1%}" for k, v in sorted(report["fractions"].items(),
                                                            key=lambda kv: -kv[1]))
        print(f"{report['n_atoms']} atoms in {report['n_frames']} frame(s): {phases}",
              file=sys.stdout)
    return 0

