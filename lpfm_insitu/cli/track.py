"""``lpfm track``: a phase-fraction time series (HDF5) from a dump trajectory, the offline
twin of in-situ tracking (:func:`lpfm_insitu.tracking.offline.track_frames`)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
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
    # the keys of tracking.offline.AXES, which this module must not import for --help
    p.add_argument("--profile-axis", choices=("x", "y", "z"), default=None)
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
    p.set_defaults(func=run)


def run(args) -> int:
    from ..tracking.offline import track_frames
    from ..training.prototypes import resolve_phases
    from .inputs import load_model_for_cli, read_frames
    from .paths import writable_output

    output = writable_output(args.output)
    frames = read_frames(args.input, args.index, args.format)
    model = load_model_for_cli(args.model)
    candidates = resolve_phases(args.candidates, model.phases) if args.candidates else None
    path = track_frames(model, frames, output, denoise_steps=args.denoise_steps,
                        candidates=candidates, nn_distance=args.nn_distance,
                        timestep=args.timestep, profile_axis=args.profile_axis,
                        profile_bins=args.profile_bins, quiet=args.quiet,
                        triggers=args.triggers, cooldown=args.cooldown,
                        max_checkpoints=args.max_checkpoints, write_frames=args.write_frames)
    print(f"wrote {len(frames)} frame(s) to {path}")
    if args.triggers:
        from ..tracking.timeseries import read_time_series

        fired = read_time_series(path)["triggers"]
        print(f"checkpoint triggers fired: {len(fired['step'])}")
        for step, description, files in zip(fired["step"], fired["description"],
                                            fired["files"]):
            print(f"  step {int(step)}: {description}"
                  + (f" ({', '.join(files)})" if files else ""))
    return 0
