"""Quick-look plots of a phase time series (works on a file still being written).

Uses matplotlib's object API with the Agg canvas rather than pyplot, so it
runs on headless compute nodes and inside a LAMMPS Python callback without
touching global matplotlib state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .timeseries import read_time_series

__all__ = ["plot_time_series"]

#: A phase gets a line only if its fraction ever exceeds this (keeps legends short).
MIN_FRACTION_SHOWN = 0.01
#: Space-time maps show at most this many non-parent phases.
MAX_MAPPED_PHASES = 3


def _axis(data):
    """Time if it is usable, otherwise step (e.g. time not set by the caller)."""
    t = np.asarray(data["time"], dtype=float)
    if t.size and np.all(np.isfinite(t)) and np.ptp(t) > 0:
        return t, np.asarray(data["triggers"]["time"], dtype=float), "time"
    return (
        np.asarray(data["step"], dtype=float),
        np.asarray(data["triggers"]["step"], dtype=float),
        "step",
    )


def _span(lo: float, hi: float) -> tuple[float, float]:
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


def _new_figure(**kw) -> Figure:
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _plot_fractions(data, x, trig_x, xlabel, title, path: Path) -> Path:
    phases = data["phases"]
    fr = np.asarray(data["fractions"])
    fig = _new_figure(figsize=(8, 6), layout="constrained")
    ax, ax_conf = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for j, name in enumerate(phases):
        is_unknown = j == len(phases) - 1
        if is_unknown or (fr.shape[0] and np.nanmax(fr[:, j]) > MIN_FRACTION_SHOWN):
            style = {"color": "0.3", "linestyle": ":"} if is_unknown else {}
            ax.plot(x, fr[:, j], label=name, **style)
    ax_conf.plot(x, data["mean_confidence"], color="k", lw=1)
    for tx in trig_x:
        for a in (ax, ax_conf):
            a.axvline(tx, color="tab:red", linestyle="--", lw=0.8)
    if len(trig_x):
        ax.plot([], [], color="tab:red", linestyle="--", lw=0.8, label="checkpoint trigger")
    if not fr.shape[0]:
        ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("phase fraction")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title)
    ax_conf.set_ylabel("mean confidence")
    ax_conf.set_xlabel(xlabel)
    fig.savefig(path, dpi=120)
    return path


def _profile_extent(data, x):
    edges = np.asarray(data["profile_edges"])
    finite = np.all(np.isfinite(edges), axis=1) if edges.size else np.zeros(0, bool)
    if np.any(finite):
        e = edges[np.argmax(finite)]
        xlo, xhi, xlabel = e[0], e[-1], "position"
    else:
        xlo, xhi, xlabel = 0.0, float(data["profile"].shape[1]), "bin"
    return [*_span(xlo, xhi), *_span(float(x[0]), float(x[-1]))], xlabel


def _plot_profiles(data, x, trig_x, ylabel, title, out_dir: Path, stem: str) -> list[Path]:
    """Space-time maps; imshow assumes roughly uniform output intervals and
    takes bin positions from the first row with edges (box may move later)."""
    prof = np.asarray(data["profile"], dtype=float)  # (n, bins, K)
    phases = data["phases"]
    n_known = len(phases) - 1
    extent, xlabel = _profile_extent(data, x)
    written = []
    # Parent = dominant known phase at the start; show what grows out of it.
    first = np.asarray(data["fractions"][0])
    parent = int(np.argmax(first[:n_known])) if n_known else -1
    peak = np.max(np.nan_to_num(prof, nan=0.0), axis=(0, 1))  # rows without profile are NaN
    ranked = [j for j in np.argsort(-peak, kind="stable") if j != parent and peak[j] > MIN_FRACTION_SHOWN]
    chosen = ranked[:MAX_MAPPED_PHASES]
    if chosen:
        fig = _new_figure(figsize=(4.2 * len(chosen), 4.5), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(chosen), sharey=True))
        for ax, j in zip(axes, chosen):
            im = ax.imshow(prof[:, :, j], origin="lower", aspect="auto", extent=extent,
                           vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            for ty in trig_x:
                ax.axhline(ty, color="w", linestyle="--", lw=0.8)
            ax.set_title(f"{phases[j]} fraction")
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel(ylabel)
        fig.colorbar(im, ax=list(axes), shrink=0.8)
        fig.suptitle(title)
        path = out_dir / f"{stem}_profile_fractions.png"
        fig.savefig(path, dpi=120)
        written.append(path)

    # Dominant class per bin and time: one picture of the whole front.
    empty = ~np.isfinite(prof).all(axis=2) | (np.nan_to_num(prof).sum(axis=2) <= 0)
    dom = np.ma.masked_array(np.argmax(np.nan_to_num(prof, nan=-1.0), axis=2), mask=empty)
    colors = [f"C{j % 10}" for j in range(n_known)] + ["0.6"]
    fig = _new_figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(dom, origin="lower", aspect="auto", extent=extent, cmap=ListedColormap(colors),
              vmin=-0.5, vmax=len(phases) - 0.5, interpolation="nearest")
    for ty in trig_x:
        ax.axhline(ty, color="k", linestyle="--", lw=0.8)
    present = sorted(set(np.unique(dom.compressed()).tolist()))
    ax.legend(handles=[Patch(color=colors[j], label=phases[j]) for j in present],
              loc="upper right", fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: dominant phase")
    path = out_dir / f"{stem}_profile_dominant.png"
    fig.savefig(path, dpi=120)
    written.append(path)
    return written


def plot_time_series(h5_path, out_dir) -> list[Path]:
    """Write PNGs for a time series file and return their paths.

    * ``<stem>_fractions.png``: fraction of every phase that ever exceeds 1%,
      plus unknown, and mean confidence, vs time; checkpoint triggers as
      dashed vertical lines.
    * if profiles are stored: ``<stem>_profile_fractions.png`` (space-time
      maps of the up to 3 most prominent phases other than the parent
      phase, if any) and ``<stem>_profile_dominant.png`` (dominant class).
    """
    data = read_time_series(h5_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(h5_path).stem
    x, trig_x, xlabel = _axis(data)
    model = data["attrs"].get("model") or data["attrs"].get("model_name")
    title = f"{stem} ({model})" if isinstance(model, str) and model else stem
    written = [_plot_fractions(data, x, trig_x, xlabel, title, out_dir / f"{stem}_fractions.png")]
    if "profile" in data and np.isfinite(data["profile"]).any():
        written += _plot_profiles(data, x, trig_x, xlabel, title, out_dir, stem)
    return written
