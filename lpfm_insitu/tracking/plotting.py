"""Quick-look plots of a phase time series (works on a file still being written).

Uses matplotlib's object API with the Agg canvas rather than pyplot, so it
runs on headless compute nodes and inside a LAMMPS Python callback without
touching global matplotlib state.

Phases are shown by common name (fcc, hcp, omega; the AFLOW label where none exists) in
the colours OVITO gives those structures (``phase_colors``), time in ps and positions
in Å (or the units the file records), and titles name the model, not its file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .colors import phase_color
from ..training.prototypes import common_name
from .summary import parent_index
from .timeseries import read_time_series

__all__ = ["plot_time_series"]

#: A phase gets a line only if its fraction ever exceeds this (keeps legends short).
MIN_FRACTION_SHOWN = 0.01
#: Space-time maps show at most this many phases besides the parent phase.
MAX_MAPPED_PHASES = 3
#: LAMMPS unit style -> (time unit, length unit) of the values LAMMPS reports
UNITS = {"metal": ("ps", "Å"), "real": ("fs", "Å"), "si": ("s", "m"), "cgs": ("s", "cm"),
         "electron": ("fs", "Bohr"), "micro": ("µs", "µm"), "nano": ("ns", "nm"),
         "lj": ("τ", "σ")}


def _units(attrs) -> tuple[str, str]:
    """Time and length units of a file: recorded ones, else LAMMPS metal (ps, Å)."""
    style = attrs.get("units")
    time_unit, length_unit = UNITS.get(style, ("ps", "Å"))
    return attrs.get("time_unit", time_unit), attrs.get("length_unit", length_unit)


def _axis(data, time_unit: str):
    """Time if it is usable, otherwise step (e.g. time not set by the caller)."""
    t = np.asarray(data["time"], dtype=float)
    if t.size and np.all(np.isfinite(t)) and np.ptp(t) > 0:
        return t, np.asarray(data["triggers"]["time"], dtype=float), f"time ({time_unit})"
    return (
        np.asarray(data["step"], dtype=float),
        np.asarray(data["triggers"]["step"], dtype=float),
        "MD step",
    )


def _span(lo: float, hi: float) -> tuple[float, float]:
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


def _new_figure(**kw) -> Figure:
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def model_name(attrs) -> str:
    """The model's name ("lenient"), not its file path."""
    name = attrs.get("model_name")
    if isinstance(name, str) and name:
        return name
    path = attrs.get("model")
    return Path(path).name.split(".")[0] if isinstance(path, str) and path else ""


def _title(stem: str, attrs) -> str:
    model = model_name(attrs)
    return f"{stem} (model: {model})" if model else stem


def _colors(phases) -> list:
    return [phase_color(p, k) for k, p in enumerate(phases)]


def _line_color(rgb):
    """OVITO's light phase colours (fcc's pale green) darkened enough to read as a line
    on white; the hue stays, so a line matches its phase's colour in the maps."""
    rgb = np.asarray(rgb, dtype=float)
    luminance = float(rgb @ [0.299, 0.587, 0.114])
    return tuple(rgb * min(1.0, 0.62 / luminance)) if luminance > 0 else tuple(rgb)


def _mark_triggers(axes, trig_x, color="tab:red"):
    for tx in trig_x:
        for a in axes:
            a.axvline(tx, color=color, linestyle="--", lw=0.8)


def _plot_fractions(data, x, trig_x, xlabel, title, path: Path) -> Path:
    phases = data["phases"]
    fr = np.asarray(data["fractions"])
    colors = _colors(phases)
    fig = _new_figure(figsize=(9, 6), layout="constrained")
    ax, ax_conf = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    marker = "o" if len(x) <= 30 else None  # few rows: show where the samples are
    for j, name in enumerate(phases):
        is_unknown = j == len(phases) - 1
        if is_unknown or (fr.shape[0] and np.nanmax(fr[:, j]) > MIN_FRACTION_SHOWN):
            style = ({"color": "0.35", "linestyle": ":"} if is_unknown
                     else {"color": _line_color(colors[j]), "lw": 2})
            ax.plot(x, fr[:, j], label=common_name(name), marker=marker, ms=3, **style)
    ax_conf.plot(x, data["mean_confidence"], color="k", lw=1, marker=marker, ms=2)
    _mark_triggers((ax, ax_conf), trig_x)
    if len(trig_x):
        ax.plot([], [], color="tab:red", linestyle="--", lw=0.8, label="checkpoint")
    if not fr.shape[0]:
        ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction of atoms")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="phase", frameon=False)
    ax.set_title(title)
    ax_conf.set_ylabel("mean\nconfidence")
    ax_conf.grid(alpha=0.3)
    ax_conf.set_xlabel(xlabel)
    fig.savefig(path, dpi=120)
    return path


def _profile_extent(data, x, axis_name: str, length_unit: str):
    edges = np.asarray(data["profile_edges"])
    finite = np.all(np.isfinite(edges), axis=1) if edges.size else np.zeros(0, bool)
    if np.any(finite):
        e = edges[np.argmax(finite)]
        xlo, xhi, xlabel = e[0], e[-1], f"{axis_name} ({length_unit})"
    else:
        xlo, xhi, xlabel = 0.0, float(data["profile"].shape[1]), f"slab along {axis_name}"
    return [*_span(xlo, xhi), *_span(float(x[0]), float(x[-1]))], xlabel


def _plot_profiles(data, x, trig_x, ylabel, title, out_dir: Path, stem: str,
                   show_parent: bool, length_unit: str) -> list[Path]:
    """Space-time maps; imshow assumes roughly uniform output intervals and
    takes bin positions from the first row with edges (box may move later)."""
    prof = np.asarray(data["profile"], dtype=float)  # (n, bins, K)
    phases = data["phases"]
    n_known = len(phases) - 1
    axis_name = str(data["attrs"].get("profile_axis", "position"))
    if axis_name in ("none", ""):
        axis_name = "position"
    extent, xlabel = _profile_extent(data, x, axis_name, length_unit)
    written = []
    parent = parent_index(data)
    peak = np.max(np.nan_to_num(prof, nan=0.0), axis=(0, 1))  # rows without profile are NaN
    ranked = [j for j in np.argsort(-peak, kind="stable")
              if j != parent and peak[j] > MIN_FRACTION_SHOWN]
    chosen = ([parent] if show_parent and parent >= 0 else []) + ranked[:MAX_MAPPED_PHASES]
    empty = ~np.isfinite(prof).all(axis=2) | (np.nan_to_num(prof).sum(axis=2) <= 0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # slabs without atoms
    if chosen:
        fig = _new_figure(figsize=(3.6 * len(chosen) + 1.2, 4.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(chosen), sharey=True))
        for ax, j in zip(axes, chosen):
            im = ax.imshow(np.ma.masked_array(prof[:, :, j], mask=empty), origin="lower",
                           aspect="auto", extent=extent, vmin=0, vmax=1, cmap=cmap,
                           interpolation="nearest")
            for ty in trig_x:
                ax.axhline(ty, color="w", linestyle="--", lw=0.8)
            what = " (parent)" if j == parent else ""
            ax.set_title(f"{common_name(phases[j])}{what}")
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel(ylabel)
        fig.colorbar(im, ax=list(axes), shrink=0.85, label="fraction of the slab's atoms")
        fig.suptitle(f"{title}: fraction of each phase")
        path = out_dir / f"{stem}_profile_fractions.png"
        fig.savefig(path, dpi=120)
        written.append(path)

    # Dominant class per bin and time: one picture of the whole front.
    dom = np.ma.masked_array(np.argmax(np.nan_to_num(prof, nan=-1.0), axis=2), mask=empty)
    colors = _colors(phases)
    fig = _new_figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    ax.set_facecolor("white")  # empty slabs (outside the material) stay blank
    ax.imshow(dom, origin="lower", aspect="auto", extent=extent, cmap=ListedColormap(colors),
              vmin=-0.5, vmax=len(phases) - 0.5, interpolation="nearest")
    for ty in trig_x:
        ax.axhline(ty, color="k", linestyle="--", lw=0.8)
    present = sorted(set(np.unique(dom.compressed()).tolist()))
    if show_parent and parent >= 0 and parent not in present:
        present = [parent] + present
    handles = [Patch(facecolor=colors[j], edgecolor="0.3",
                     label=common_name(phases[j]) + (" (parent)" if j == parent else ""))
               for j in present]
    if len(trig_x):
        handles.append(Patch(facecolor="none", edgecolor="k", linestyle="--", label="checkpoint"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="phase",
              frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: dominant phase per slab")
    path = out_dir / f"{stem}_profile_dominant.png"
    fig.savefig(path, dpi=120)
    written.append(path)
    return written


def plot_time_series(h5_path, out_dir, show_parent: bool = True) -> list[Path]:
    """Write PNGs for a time series file and return their paths.

    * ``<stem>_fractions.png``: fraction of every phase that ever exceeds 1%,
      plus unknown, and mean confidence, vs time; checkpoint triggers as
      dashed vertical lines.
    * if profiles are stored: ``<stem>_profile_fractions.png`` (space-time
      maps of the parent phase, the dominant one at the start, unless
      ``show_parent`` is False, and of the up to 3 most prominent other
      phases) and ``<stem>_profile_dominant.png`` (dominant phase per slab).
    """
    data = read_time_series(h5_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(h5_path).stem
    time_unit, length_unit = _units(data["attrs"])
    x, trig_x, xlabel = _axis(data, time_unit)
    title = _title(stem, data["attrs"])
    written = [_plot_fractions(data, x, trig_x, xlabel, title, out_dir / f"{stem}_fractions.png")]
    if "profile" in data and np.isfinite(data["profile"]).any():
        written += _plot_profiles(data, x, trig_x, xlabel, title, out_dir, stem, show_parent,
                                  length_unit)
    return written
