"""The offline twin of in-situ tracking: ``lpfm track DUMP`` writes the same HDF5 time series.

Users can then compare what the run reported while it went on with a post-hoc analysis
of its dumps: the same tracker (``PhaseTracker``), statistics, trigger rules and file
format. Offline there is no simulation to restart, so a fired trigger is recorded in the
time series like in situ (step, rules, files) and, with ``--write-frames``, the frame
is written with its labels as extxyz next to the output
(``<output stem>.checkpoint.<step>.extxyz``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LPFMError
from .options import AXES, TrackingOptions
from .tracker import PhaseTracker, TrackedFrame


def track_frames(model, frames, output: str | Path, *, denoise_steps: int = 0,
                 candidates=None, nn_distance: float | None = None, timestep: float = 1.0,
                 profile_axis: str | None = None, profile_bins: int = 20,
                 attrs: dict | None = None, quiet: bool = True, triggers: str | None = None,
                 cooldown: int = 0, max_checkpoints: int | None = None,
                 write_frames: bool = False) -> Path:
    """Classify each frame and append its global statistics (and profile) to ``output``.

    ``timestep`` is the time per MD step in ps (the time axis); ``quiet=False`` shows a
    progress bar on stderr. ``triggers``, ``cooldown`` and ``max_checkpoints`` are the
    rules of in-situ tracking; ``write_frames`` writes each triggering frame as extxyz.
    """
    from ..cli.classify import progress

    if profile_axis is not None and profile_axis not in AXES:
        raise LPFMError(f"profile axis {profile_axis!r} must be one of x, y, z")
    output = Path(output)
    base = {"model": str(model.metadata.get("path", "")),
            "model_name": str(model.metadata.get("name", "")),
            "denoise_steps": denoise_steps, "source": "offline", "time_unit": "ps"}
    options = TrackingOptions(h5=str(output), profile_axis=profile_axis,
                              profile_bins=profile_bins, profile_range="box",
                              triggers=triggers, cooldown=cooldown,
                              max_checkpoints=max_checkpoints, snapshot_dir=str(output.parent),
                              attrs=attrs, verbose=False)
    results: dict[int, tuple] = {}

    def write_frame(frame, event) -> list[str]:
        if not write_frames:
            return []
        from ..cli.classify import write_extxyz

        path = output.with_name(f"{output.stem}.checkpoint.{event.step}.extxyz")
        write_extxyz(path, *results[event.step])
        return [str(path)]

    try:
        # the tracking options describe a file only where triggers were asked for, so
        # a plain `lpfm track` file keeps the attributes of earlier versions
        tracker = PhaseTracker(model.phases, options, attributes=base, checkpoint=write_frame,
                               describe_options=bool(triggers))
    except ValueError as exc:  # a bad rule or option: one line from `lpfm`
        if isinstance(exc, LPFMError):
            raise
        raise LPFMError(f"lpfm track: {exc}") from None
    try:
        for k, atoms in enumerate(progress(frames, len(frames), "track", quiet)):
            result = model.classify_atoms(atoms, denoise_steps=denoise_steps,
                                          candidates=candidates, nn_distance=nn_distance)
            step = int(atoms.info.get("timestep", k))
            box_lo = np.asarray(atoms.get_celldisp(), dtype=np.float64).reshape(3)
            results = {step: ([atoms], [result])}
            tracker(TrackedFrame(step=step, time=step * timestep, labels=result.labels,
                                 confidence=result.confidence, ops=result.logits,
                                 positions=atoms.positions, box_lo=box_lo,
                                 box_hi=box_lo + np.diag(np.asarray(atoms.cell))))
    finally:
        tracker.close()
    return output


def _track(args) -> int:
    from ..cli.classify import load_model_for_cli, read_frames
    from ..training.prototypes import resolve_phases
    from .timeseries import read_time_series

    frames = read_frames(args.input, args.index, args.format)
    model = load_model_for_cli(args.model)
    candidates = resolve_phases(args.candidates, model.phases) if args.candidates else None
    path = track_frames(model, frames, args.output, denoise_steps=args.denoise_steps,
                        candidates=candidates, nn_distance=args.nn_distance,
                        timestep=args.timestep, profile_axis=args.profile_axis,
                        profile_bins=args.profile_bins, quiet=args.quiet,
                        triggers=args.triggers, cooldown=args.cooldown,
                        max_checkpoints=args.max_checkpoints, write_frames=args.write_frames)
    print(f"wrote {len(frames)} frame(s) to {path}")
    if args.triggers:
        trig = read_time_series(path)["triggers"]
        print(f"checkpoint triggers fired: {len(trig['step'])}")
        for step, description, files in zip(trig["step"], trig["description"], trig["files"]):
            print(f"  step {int(step)}: {description}" + (f" ({', '.join(files)})" if files else ""))
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
    p.add_argument("--triggers", "--trigger", default=None, metavar="RULES",
                   help="checkpoint trigger rules as in situ, e.g. "
                        "'appear:hcp>0.05, change:bcc>0.2, confidence<2.0'; a fired trigger "
                        "is recorded in the time series")
    p.add_argument("--cooldown", type=int, default=0,
                   help="steps after a trigger during which no trigger fires")
    p.add_argument("--max-checkpoints", type=int, default=None,
                   help="at most this many triggers in the series (default: no limit)")
    p.add_argument("--write-frames", action="store_true",
                   help="write each triggering frame with its labels as extxyz next to the "
                        "output (OUTPUT_STEM.checkpoint.STEP.extxyz)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_track)

    p = subparsers.add_parser("plot", help="PNG figures of a phase time series (HDF5)")
    p.add_argument("track", help="HDF5 time series written in situ or by 'lpfm track'")
    p.add_argument("--output-dir", default=None, help="default: beside the HDF5 file")
    p.add_argument("--hide-parent", action="store_true",
                   help="leave the parent phase (the dominant one at the start) out of the "
                        "space-time maps")
    p.set_defaults(func=_plot)
