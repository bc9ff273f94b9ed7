"""Section 4: hot crystals under compression keep their class (the shock case).

The first frame of each near-melting crystal of the md section is compressed affinely,
uniaxially along z (HCP's c axis), uniaxially along x (HCP's a axis), or hydrostatically
to the same volume, and classified with the nearest-neighbour distance of the unstrained
crystal: in a shock run one length serves the whole box, so the shocked region reaches the
model compressed. Labels after 0 and 8 denoising steps use the stored thresholds (unknown
counts as wrong); PTM without its cutoff labels the same atoms. The same crystal is also
classified over the crystal family's candidates only (fcc/bcc/hcp/omega, or the diamond
family for Si, as the md section and the shock example do), where a compressed FCC cannot
become bct In. The shipped models were trained with uniaxial compression up to 15% and
isotropic scaling of 0.90-1.08, on cold noisy crystals.
"""

from __future__ import annotations

import time

import numpy as np

from ..training.synthetic import apply_strain
from .baselines import ptm_labels
from .md_snapshots import DEFAULT_CACHE, snapshots
from .md_templates import SYSTEMS
from .metrics import UNKNOWN, label_breakdown, labels_from_logits

COMPRESSIONS = (0.05, 0.10, 0.15)
MODES = ("uniaxial z", "uniaxial x", "hydrostatic")
KNOWN_MODES = ("uniaxial x", "uniaxial y", "uniaxial z", "hydrostatic")
STEPS = (0, 8)


def deformation(mode: str, compression: float) -> np.ndarray:
    """The deformation gradient that shrinks the volume by ``compression``."""
    if mode not in KNOWN_MODES:
        raise ValueError(f"unknown strain mode {mode!r}; choose from {KNOWN_MODES}")
    if not 0 <= compression < 1:
        raise ValueError(f"compression must be in [0, 1), got {compression}")
    if mode == "hydrostatic":
        return np.eye(3) * (1.0 - compression) ** (1.0 / 3.0)
    axis = "xyz".index(mode.split()[1])
    F = np.eye(3)
    F[axis, axis] -= compression
    return F


def _scores(model, atoms, true_label, nn_distance, diamond, candidates=None) -> dict:
    result = model.classify_atoms(atoms, denoise_steps=max(STEPS), nn_distance=nn_distance,
                                  keep_history=True)
    out = {}
    if candidates is not None:
        restricted = model.classify_atoms(atoms, denoise_steps=max(STEPS),
                                          nn_distance=nn_distance, candidates=list(candidates),
                                          keep_history=True)
        out["candidates"] = {
            str(r["step"]): float(np.mean(labels_from_logits(
                r["logits"], model.phases, model.unknown_thresholds(r["step"], candidates),
                candidates, model.candidate_margin(r["step"], candidates)) == true_label))
            for r in restricted.history if r["step"] in STEPS}
    for record in result.history:
        if record["step"] not in STEPS:
            continue
        step = record["step"]
        labels = labels_from_logits(record["logits"], model.phases, model.unknown_thresholds(step))
        argmax = labels_from_logits(record["logits"], model.phases)
        wrong = labels[labels != true_label]
        out[str(step)] = {
            "labelled": float(np.mean(labels == true_label)),
            "argmax": float(np.mean(argmax == true_label)),
            "unknown": float(np.mean(labels == UNKNOWN)),
            # fractions of all atoms, not of the wrong ones
            "wrong_labels": [(label, fraction * len(wrong) / len(labels))
                             for label, fraction in label_breakdown(wrong, top=2)]}
    ptm = np.asarray(ptm_labels(atoms, 0.0, diamond=diamond))
    out["ptm_nocut"] = float(np.mean(ptm == true_label))
    return out


def crystal_under_compression(model, atoms, true_label: str, diamond: bool = False,
                              compressions=COMPRESSIONS, modes=MODES, candidates=None) -> dict:
    """One crystal's scores, unstrained and under every compression, at its own length;
    with ``candidates`` also over those phases only."""
    from ..model.inference import equivalent_nn_distance

    nn_distance = equivalent_nn_distance(atoms.get_volume() / len(atoms))
    entry = {"n_atoms": len(atoms), "true_label": true_label, "nn_distance": nn_distance,
             "unstrained": _scores(model, atoms, true_label, nn_distance, diamond, candidates),
             "strained": {}}
    if candidates is not None:
        entry["candidates"] = list(candidates)
    for mode in modes:
        entry["strained"][mode] = {
            f"{c:g}": _scores(model, apply_strain(atoms, deformation(mode, c)), true_label,
                              nn_distance, diamond, candidates)
            for c in compressions}
    return entry


def run_strain(model, cache=DEFAULT_CACHE, n_ranks: int = 2, systems=SYSTEMS,
               compressions=COMPRESSIONS, modes=MODES, log=print) -> dict:
    start = time.time()
    section = {"compressions": list(compressions), "modes": list(modes), "steps": list(STEPS),
               "systems": {}}
    for system in systems:
        if system.true_label is None:
            continue
        frames, _ = snapshots(system, cache, n_ranks, log)
        t0 = time.time()
        entry = crystal_under_compression(model, frames[0], system.true_label, system.diamond,
                                          compressions, modes, system.candidates)
        entry["wall_s"] = time.time() - t0
        section["systems"][system.name] = entry
        log(f"  {system.name}: {entry['n_atoms']} atoms, {entry['wall_s']:.0f} s")
    section["wall_s"] = time.time() - start
    return section


def plot_strain(section: dict, path) -> None:
    from .figures import new_figure, save

    modes = section["modes"]
    x = [0.0] + [float(c) for c in section["compressions"]]
    fig, axes = new_figure(1, len(modes), size=(4.2 * len(modes), 3.8), sharey=True)
    for ax, mode in zip(axes, modes):
        for k, (name, entry) in enumerate(section["systems"].items()):
            colour = f"C{k}"
            rows = [entry["unstrained"]] + [entry["strained"][mode][f"{c:g}"]
                                            for c in section["compressions"]]
            ax.plot(100 * np.array(x), [r["0"]["labelled"] for r in rows], "-o", ms=3,
                    color=colour, label=name.replace("_", " "))
            ax.plot(100 * np.array(x), [r["8"]["labelled"] for r in rows], "--", color=colour)
            ax.plot(100 * np.array(x), [r["ptm_nocut"] for r in rows], ":", color=colour,
                    lw=0.8)
        ax.set_title(f"{mode} compression", fontsize=9)
        ax.set_xlabel("volume compression (%)")
        ax.axhline(0.995, color="k", lw=0.5, ls=":")
    axes[0].set_ylabel("fraction labelled right (solid 0 steps, dashed 8, dotted PTM)")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="lower left")
    save(fig, path)
