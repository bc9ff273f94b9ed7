"""Draws the README's picture from the output folder of the shock demo.

    lpfm demo --quick --workdir lpfm_demo
    python docs/readme_figure.py lpfm_demo docs/images/shock_demo.png

Left: one atomic layer of the last dumped frame, coloured by the label the model wrote in
situ (``i_lpfm_phase``). Right: the phase fractions of the time series (``track.h5``).
Colours and names are those of the OVITO modifier.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.io import read
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lpfm_insitu.constants import UNKNOWN_PHASE
from lpfm_insitu.ovito_modifier import UNKNOWN_COLOUR, common_name, phase_colours
from lpfm_insitu.tracking.timeseries import read_time_series

#: A phase gets a line and a legend entry only if its fraction ever exceeds this.
SHOWN = 0.01
#: Half-thickness (Å) of the atomic layer drawn on the left.
LAYER = 0.6


def draw(demo: Path, output: Path) -> Figure:
    series = read_time_series(demo / "track.h5")
    phases = series["phases"][:-1]  # the model's phases; "unknown" is last
    colours = phase_colours(phases)
    fractions = np.asarray(series["fractions"])
    shown = [j for j in range(len(phases)) if fractions[:, j].max() > SHOWN]

    frame = read(demo / "shock.dump", index=-1, format="lammps-dump-text")
    labels = frame.arrays["i_lpfm_phase"].astype(int).ravel()
    x, y, z = frame.positions.T
    layer = np.abs(y - np.median(y)) < LAYER
    point_colours = np.array([UNKNOWN_COLOUR if k == UNKNOWN_PHASE else colours[phases[k]]
                              for k in labels[layer]])

    fig = Figure(figsize=(11, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    left.scatter(z[layer], x[layer], c=point_colours, s=22, edgecolors="0.3", linewidths=0.3)
    left.set_aspect("equal")
    left.set_xlabel("z (Å): the shock runs to +z from the wall at z = 0")
    left.set_ylabel("x (Å)")
    time = series["time"]
    (row,) = np.flatnonzero(series["step"] == frame.info["timestep"])
    left.set_title(f"labels written in situ at t = {time[row]:.1f} ps (one atomic layer)")
    left.legend(handles=[Patch(color=colours[phases[j]], label=common_name(phases[j]))
                         for j in shown] + [Patch(color=UNKNOWN_COLOUR, label="unknown")],
                loc="upper left", bbox_to_anchor=(0, -0.22), ncol=len(shown) + 1, frameon=False)

    for j in shown:
        right.plot(time, fractions[:, j], color=colours[phases[j]], lw=2,
                   label=common_name(phases[j]))
    right.plot(time, fractions[:, -1], color="0.5", ls=":", lw=2, label="unknown")
    for k, t in enumerate(series["triggers"]["time"]):
        right.axvline(t, color="k", ls="--", lw=0.8, label="checkpoint" if k == 0 else None)
    right.set_xlabel("time after the shock started (ps)")
    right.set_ylabel("fraction of atoms")
    right.set_ylim(0, 1)
    right.set_title(f"phase fractions (model {series['attrs'].get('model_name', '')})")
    right.legend(fontsize=8)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="the demo's output folder (--workdir)")
    parser.add_argument("output", type=Path, help="PNG to write")
    args = parser.parse_args()
    draw(args.demo, args.output)


if __name__ == "__main__":
    main()
