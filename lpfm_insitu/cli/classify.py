"""Classifying structure files after a run: ``lpfm classify``.

Input is anything ASE reads (LAMMPS text dumps and data files included); output is
extended XYZ or a LAMMPS text dump with the in-situ fix's columns, both of which OVITO
opens. A file that cannot be read stops with one line naming it and the ``--format`` to
give (:class:`~lpfm_insitu.errors.LPFMError`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import LPFMError
from ..training.prototypes import common_name

FORMAT_HINT = ("give the format with --format (e.g. lammps-dump-text, lammps-data, extxyz, "
               "vasp, cif; any name `ase info --formats` lists)")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def guess_format(path: Path) -> str | None:
    """The ASE format of a LAMMPS file (dump or data) from its name or first lines; None
    lets ASE guess. An HDF5 file is refused with what to do instead."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise LPFMError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if head.startswith(_HDF5_SIGNATURE):
        raise LPFMError(f"{str(path)!r} is an HDF5 file, not a structure: an lpfm time series "
                        f"is plotted with `lpfm plot {path}`; to classify atoms give a dump, "
                        "data or structure file")
    name = path.name
    if head.startswith(b"ITEM: TIMESTEP") or ".dump" in name or name.startswith("dump.") \
            or path.suffix == ".lammpstrj":
        return "lammps-dump-text"
    text = head.decode("utf-8", "replace")
    if re.search(r"^\s*\d+\s+atoms\s*$", text, re.M) and "xlo xhi" in text:
        return "lammps-data"
    return None


def _data_atom_style(path: Path) -> str:
    """The atom style of a LAMMPS data file from its ``Atoms # style`` line (default atomic)."""
    with open(path, errors="replace") as fh:
        for line in fh:
            m = re.match(r"\s*Atoms\s*#\s*(\w+)", line)
            if m:
                return m.group(1)
    return "atomic"


def read_frames(path: str | Path, index: str = "-1", fmt: str | None = None,
                atom_style: str | None = None):
    """The frames ``index`` of ``path`` as ``ase.Atoms``; LPFMError if unreadable."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise LPFMError(f"input file {str(path)!r} does not exist")
    fmt = fmt or guess_format(path)
    kwargs = {}
    if fmt == "lammps-data":
        kwargs = {"atom_style": atom_style or _data_atom_style(path), "units": "metal"}
    as_what = f"as {fmt}" if fmt else "(format guessed by ASE from the file name)"
    try:
        frames = read(str(path), index=index, format=fmt, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ASE raises anything on a foreign file
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise LPFMError(f"cannot read {str(path)!r} {as_what} ({why}); {FORMAT_HINT}"
                        + (", and --atom-style for a data file" if fmt == "lammps-data"
                           else "")) from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames or not len(frames[0]):
        raise LPFMError(f"{str(path)!r} {as_what} holds no atoms for --index {index!r}; "
                        f"{FORMAT_HINT}")
    return frames


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


def summary(results: list, model_name: str, denoise_steps: int) -> dict:
    """Fractions keyed by the model's phase labels (``phase_names`` gives common names)."""
    phases = results[0].phases
    labels = np.concatenate([r.labels for r in results])
    counts = np.bincount(labels + 1, minlength=len(phases) + 1)
    n = int(len(labels))
    fractions = {"unknown": float(counts[0] / max(n, 1))}
    fractions.update({p: float(counts[i + 1] / max(n, 1)) for i, p in enumerate(phases)})
    out = {"n_atoms": n, "n_frames": len(results), "model": model_name,
           "denoise_steps": denoise_steps,
           "fractions": {k: v for k, v in fractions.items() if v > 0 or k == "unknown"},
           "phase_names": {p: common_name(p) for p in phases},
           "mean_confidence": float(np.mean(np.concatenate([r.confidence for r in results])))
           if n else 0.0}
    if len(results) > 1:
        out["frames"] = [{"n_atoms": len(r.labels), "fractions": {
            k: v for k, v in r.fractions().items() if v > 0}} for r in results]
    return out


def progress(iterable, total: int, what: str, quiet: bool = False, unit: str = "frame"):
    """A tqdm bar on stderr when there is more than one item (and not ``quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=what, unit=unit, file=sys.stderr,
                disable=quiet or total < 2, leave=False)


def load_model_for_cli(name: str, **kwargs):
    """``load_model`` with a model file error as one line (LPFMError)."""
    from ..model.torch_compat import import_mace_quietly

    import_mace_quietly()
    from ..model.files import ModelFileError, load_model

    try:
        return load_model(name, **kwargs)
    except ModelFileError as exc:
        raise LPFMError(f"cannot load model {name!r}: {exc}") from None


def classify_command(args) -> int:
    output = Path(args.output) if args.output else None
    if output is not None and not (output.suffix in (".xyz", ".extxyz")
                                   or ".dump" in output.name or output.suffix == ".lammpstrj"):
        raise LPFMError(f"output {str(output)!r}: use a .xyz (extended XYZ) or .dump "
                        "(LAMMPS dump) file name")
    frames = read_frames(args.input, args.index, args.format,
                         getattr(args, "atom_style", None))
    model = load_model_for_cli(args.model, precision=args.precision)
    candidates = args.candidates.split(",") if args.candidates else None
    if candidates is not None:
        from ..training.prototypes import resolve_phases

        candidates = resolve_phases(candidates, model.phases)
    if getattr(args, "averaging_radius", None) is not None:
        try:
            model.averaging_radius = args.averaging_radius
        except (TypeError, ValueError) as exc:
            raise LPFMError(f"--averaging-radius {args.averaging_radius:g}: {exc}") from None
    results = [model.classify_atoms(atoms, denoise_steps=args.denoise_steps,
                                    tolerance=getattr(args, "tolerance", None),
                                    nn_distance=args.nn_distance, candidates=candidates)
               for atoms in progress(frames, len(frames), "classify",
                                     getattr(args, "quiet", False))]
    if output is not None:
        if output.suffix in (".xyz", ".extxyz"):
            write_extxyz(output, frames, results)
        else:
            write_lammps_dump(output, frames, results)
    name = str(model.metadata.get("name") or args.model)
    report = summary(results, name, args.denoise_steps)
    report["averaging_radius"] = model.averaging_radius
    if args.json:
        print(json.dumps(report))
    else:
        phases = ", ".join(f"{common_name(k)} {v:.1%}"
                           for k, v in sorted(report["fractions"].items(), key=lambda kv: -kv[1]))
        print(f"{report['n_atoms']} atoms in {report['n_frames']} frame(s): {phases}",
              file=sys.stdout)
    return 0
