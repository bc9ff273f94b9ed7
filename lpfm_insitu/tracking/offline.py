"""The offline twin of in-situ tracking: ``lpfm track DUMP`` writes the same HDF5 time series.

Users can then compare what the run reported while it went on with a post-hoc analysis
of its dumps, using the same statistics code and file format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LPFMError
from .statistics import profile_edges, reduce_phase_statistics, spatial_profile
from .timeseries import PhaseTimeSeries

AXES = {"x": 0, "y": 1, "z": 2}


def track_frames(model, frames, output: str | Path, *, denoise_steps: int = 0,
                 candidates=None, nn_distance: float | None = None, timestep: float = 1.0,
                 profile_axis: str | None = None, profile_bins: int = 20,
                 attrs: dict | None = None, quiet: bool = True) -> Path:
    """Classify each frame and append its global statistics (and profile) to ``output``.

    ``timestep`` is the time per MD step in ps (the time axis); ``quiet=False`` shows a
    progress bar on stderr.
    """
    from ..cli.classify import progress

    if profile_axis is not None and profile_axis not in AXES:
        raise LPFMError(f"profile axis {profile_axis!r} must be one of x, y, z")
    attrs = {"model": str(model.metadata.get("path", "")),
             "model_name": str(model.metadata.get("name", "")),
             "denoise_steps": denoise_steps, "source": "offline", "time_unit": "ps",
             **(attrs or {})}
    with PhaseTimeSeries.open(str(output), model.phases, attrs,
                              profile_bins=profile_bins if profile_axis else None) as series:
        for k, atoms in enumerate(progress(frames, len(frames), "track", quiet)):
            result = model.classify_atoms(atoms, denoise_steps=denoise_steps,
                                          candidates=candidates, nn_distance=nn_distance)
            stats = reduce_phase_statistics(result.labels, result.confidence, result.logits,
                                            model.phases)
            step = int(atoms.info.get("timestep", k))
            profile = edges = None
            if profile_axis:
                axis = AXES[profile_axis]
                lo = float(np.asarray(atoms.get_celldisp()).reshape(3)[axis])
                hi = lo + float(np.asarray(atoms.cell)[axis, axis])
                profile = spatial_profile(result.labels, atoms.positions[:, axis],
                                          len(model.phases), lo, hi, profile_bins)
                edges = profile_edges(lo, hi, profile_bins)
            series.append(step, step * timestep, stats, profile=profile, profile_edges=edges)
    return Path(output)


def _track(args) -> int:
    from ..cli.classify import load_model_for_cli, read_frames
    from ..training.prototypes import resolve_phases

    frames = read_frames(args.input, args.index, args.format)
    model = load_model_for_cli(args.model)
    candidates = resolve_phases(args.candidates, model.phases) if args.candidates else None
    path = track_frames(model, frames, args.output, denoise_steps=args.denoise_steps,
                        candidates=candidates, nn_distance=args.nn_distance,
                        timestep=args.timestep, profile_axis=args.profile_axis,
                        profile_bins=args.profile_bins, quiet=args.quiet)
    print(f"wrote {len(frames)} frame(s) to {path}")
    return 0


def _plot(args) -> int:
    from .plotting import plot_time_series

    for path in plot_time_series(args.track, args.output_dir or Path(args.track).parent,
                                 show_parent=not args.hide_parent):
        print(path)
    return 0


def register_command(subparsers) -> None:
    p = subparsers.add_parser("track", help="phase-fraction time series (HDF5) from a dump "
                                            "trajectory: the offline twin of in-situ tracking")
    p.add_argument("input", help="trajectory file ASE reads (LAMMPS text dump, extxyz, ...)")
    p.add_argument("--output", required=True, help="HDF5 file to write or continue")
    p.add_argument("--model", default="default")
    p.add_argument("--denoise-steps", type=int, default=0)
    p.add_argument("--candidates", default=None,
                   help="comma-separated phases (common names or AFLOW labels) to restrict to")
    p.add_argument("--nn-distance", type=float, default=None)
    p.add_argument("--index", default=":", help="frames to read (ASE syntax, default all)")
    p.add_argument("--format", default=None)
    p.add_argument("--timestep", type=float, default=0.001,
                   help="time per MD step (ps in LAMMPS metal units) for the time axis")
    p.add_argument("--profile-axis", choices=tuple(AXES), default=None)
    p.add_argument("--profile-bins", type=int, default=20)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_track)

    p = subparsers.add_parser("plot", help="PNG figures of a phase time series (HDF5)")
    p.add_argument("track", help="HDF5 time series written in situ or by 'lpfm track'")
    p.add_argument("--output-dir", default=None, help="default: beside the HDF5 file")
    p.add_argument("--hide-parent", action="store_true",
                   help="leave the parent phase (the dominant one at the start) out of the "
                        "space-time maps")
    p.set_defaults(func=_plot)
