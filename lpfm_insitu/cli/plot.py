"""``lpfm plot``: PNG figures of a phase time series (HDF5), written in situ or by
``lpfm track`` (:func:`lpfm_insitu.tracking.plotting.plot_time_series`)."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("plot", help="PNG figures of a phase time series (HDF5)")
    p.add_argument("track", help="HDF5 time series written in situ or by 'lpfm track'")
    p.add_argument("--output-dir", default=None, help="default: beside the HDF5 file")
    p.add_argument("--hide-parent", action="store_true",
                   help="leave the parent phase (the dominant one at the start) out of the "
                        "space-time maps")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..tracking.plotting import plot_time_series

    for path in plot_time_series(args.track, args.output_dir or Path(args.track).parent,
                                 show_parent=not args.hide_parent):
        print(path)
    return 0
