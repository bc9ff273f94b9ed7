"""``lpfm classify``: per-atom phase labels for the frames of a structure or dump file.

Input is anything ASE reads (:mod:`.inputs`); ``--output`` writes the labels as extended
XYZ or a LAMMPS dump (:mod:`.labelled_files`); stdout gets one summary line, or one JSON
object with ``--json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("classify", help="classify the atoms of a structure or dump file")
    p.add_argument("input", help="any file ASE reads (LAMMPS text dumps and data files "
                                 "included)")
    p.add_argument("--model", default="default", help="shipped model name or model file")
    p.add_argument("--denoise-steps", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=None,
                   help="stop denoising once no atom moves more than this (length units)")
    p.add_argument("--nn-distance", type=float, default=None,
                   help="density-equivalent nearest-neighbour distance in Å (the FCC NN "
                        "distance at the input's volume per atom) for all atoms; default: each "
                        "atom's own, from its neighbourhood")
    p.add_argument("--candidates", default=None,
                   help="comma-separated phases to restrict the classification to, by common "
                        "name or AFLOW label (e.g. bcc,hcp,omega)")
    p.add_argument("--averaging-radius", type=float, default=None,
                   help="labels and OPs from logits averaged over each atom's neighbours "
                        "within this radius, in Å at the model's reference density of "
                        "15 Å^3/atom (4.0 takes the first two FCC shells); 0: each atom's "
                        "own logits; default: the model file's setting")
    p.add_argument("--index", default="-1", help="frame(s) to read, ASE syntax (default: last; "
                                                 "':' all)")
    p.add_argument("--format", default=None,
                   help="input format for ASE (default: guessed; e.g. lammps-dump-text, "
                        "lammps-data, extxyz)")
    p.add_argument("--atom-style", default=None,
                   help="atom style of a LAMMPS data file (default: from its Atoms # comment, "
                        "else atomic)")
    p.add_argument("--output", default=None,
                   help="write per-atom labels, confidence and OPs (.xyz: extended XYZ; "
                        ".dump: LAMMPS dump with the in-situ fix's column names); both open "
                        "in OVITO with the phase as a typed, colour-coded property")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _is_extxyz(path: Path) -> bool:
    return path.suffix in (".xyz", ".extxyz")


def _is_lammps_dump(path: Path) -> bool:
    return ".dump" in path.name or path.suffix == ".lammpstrj"


def run(args) -> int:
    from ..errors import LPFMError
    from ..progress import progress
    from ..training.prototypes import common_name, resolve_phases
    from .inputs import load_model_for_cli, read_frames
    from .labelled_files import write_extxyz, write_lammps_dump
    from .paths import writable_output

    output = Path(args.output) if args.output else None
    if output is not None:
        if not (_is_extxyz(output) or _is_lammps_dump(output)):
            raise LPFMError(f"output {str(output)!r}: use a .xyz (extended XYZ) or .dump "
                            "(LAMMPS dump) file name")
        writable_output(output)
    frames = read_frames(args.input, args.index, args.format, args.atom_style)
    model = load_model_for_cli(args.model, precision=args.precision)
    candidates = resolve_phases(args.candidates.split(","), model.phases) \
        if args.candidates else None
    if args.averaging_radius is not None:
        try:
            model.averaging_radius = args.averaging_radius
        except (TypeError, ValueError) as exc:
            raise LPFMError(f"--averaging-radius {args.averaging_radius:g}: {exc}") from None
    results = [model.classify_atoms(atoms, denoise_steps=args.denoise_steps,
                                    tolerance=args.tolerance, nn_distance=args.nn_distance,
                                    candidates=candidates)
               for atoms in progress(frames, desc="classify", unit="frame",
                                     enabled=not args.quiet)]
    if output is not None:
        write = write_extxyz if _is_extxyz(output) else write_lammps_dump
        write(output, frames, results)
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


def summary(results: list, model_name: str, denoise_steps: int) -> dict:
    """Fractions keyed by the model's phase labels (``phase_names`` gives common names)."""
    import numpy as np

    from ..training.prototypes import common_name

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
