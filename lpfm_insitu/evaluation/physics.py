"""Section 2: logits along the Bain and Burgers paths, and logit versus displacement.

Along a transformation path every atom is equivalent (Bain) or nearly so (Burgers), so
the mean logit per phase is the order parameter. For Gaussian-perturbed crystals, LPFM
Eq. 13 says the correct logit falls linearly with the mean squared displacement.
"""

from __future__ import annotations

import time

import numpy as np

from ..training.prototypes import BCC, FCC, HCP, report_name
from ..training.synthetic import ideal_supercell
from .metrics import labels_from_logits
from .paths import (SQRT2, bain_cell, burgers_cell, gaussian_perturbation, linear_fit,
                    mean_squared_displacement)


def _path_logits(model, cells):
    out = []
    for atoms in cells:
        result = model.classify_atoms(atoms)
        out.append(result.logits.mean(axis=0))
    return np.array(out)


def _crossing(coord, logits, phases, a, b):
    """Coordinate where logit a - logit b changes sign (linear interpolation), or None."""
    diff = logits[:, phases.index(a)] - logits[:, phases.index(b)]
    for k in range(len(diff) - 1):
        if diff[k] == 0:
            return float(coord[k])
        if diff[k] * diff[k + 1] < 0:
            return float(coord[k] - diff[k] * (coord[k + 1] - coord[k]) / (diff[k + 1] - diff[k]))
    return None


def _smoothness(logits):
    """Largest second difference of any logit relative to its range: small for smooth curves."""
    second = np.abs(np.diff(logits, n=2, axis=0)).max(axis=0)
    span = np.ptp(logits, axis=0) + 1e-9
    return float(np.max(second / span))


def path_section(model, n_points: int = 21) -> dict:
    phases = list(model.phases)
    c_over_a = np.linspace(1.0, SQRT2, n_points)
    bain = _path_logits(model, [bain_cell(r) for r in c_over_a])
    x = np.linspace(0.0, 1.0, n_points)
    burgers = _path_logits(model, [burgers_cell(v) for v in x])

    def summary(coord, logits, start, end):
        labels = labels_from_logits(logits, phases).tolist()
        return {"coordinate": coord.tolist(), "logits": logits.tolist(),
                "argmax": labels, "start_label": labels[0], "end_label": labels[-1],
                "crossing": _crossing(coord, logits, phases, start, end),
                "max_relative_second_difference": _smoothness(logits)}

    return {"bain": summary(c_over_a, bain, BCC, FCC),
            "burgers": summary(x, burgers, HCP, BCC)}


def msd_section(model, sigmas=(0.0, 0.03, 0.06, 0.09, 0.12, 0.15, 0.20, 0.25, 0.30),
                structures: int = 2, target_atoms: int = 200, seed: int = 7,
                fit_max_sigma: float = 0.15) -> dict:
    phases = list(model.phases)
    rng = np.random.default_rng(seed)
    out = {}
    for label in (FCC, BCC, HCP):
        ideal = ideal_supercell(label, 15.0, target_atoms)
        k = phases.index(label)
        rows, atom_msd, atom_logit = [], [], []
        for sigma in sigmas:
            for _ in range(1 if sigma == 0 else structures):
                atoms, delta = gaussian_perturbation(ideal, sigma, rng)
                logits = model.classify_atoms(atoms).logits
                centred = delta - delta.mean(axis=0)
                rows.append({"sigma": float(sigma), "msd": mean_squared_displacement(delta),
                             "mean_logit": float(logits[:, k].mean()),
                             "accuracy": float(np.mean(np.argmax(logits, axis=1) == k))})
                atom_msd.append(np.sum(centred ** 2, axis=1))
                atom_logit.append(logits[:, k])
        use = [r for r in rows if r["sigma"] <= fit_max_sigma]
        fit = linear_fit([r["msd"] for r in use], [r["mean_logit"] for r in use])
        fit["max_sigma"] = float(fit_max_sigma)
        full_fit = linear_fit([r["msd"] for r in rows], [r["mean_logit"] for r in rows])
        atom_fit = linear_fit(np.concatenate(atom_msd), np.concatenate(atom_logit))
        sub = np.random.default_rng(0).choice(len(np.concatenate(atom_msd)), 1500, replace=False)
        out[label] = {"structures": rows, "fit": fit, "full_range_fit": full_fit,
                      "per_atom_fit": atom_fit,
                      "n_atoms": len(ideal),
                      "scatter": {"msd": np.concatenate(atom_msd)[sub].round(5).tolist(),
                                  "logit": np.concatenate(atom_logit)[sub].round(4).tolist()}}
    return out


def run_physics(model, log=print) -> dict:
    start = time.time()
    section = {"paths": path_section(model)}
    log(f"  paths done ({time.time() - start:.0f} s)")
    section["msd"] = msd_section(model)
    section["wall_s"] = time.time() - start
    return section


def _top_phases(logits, phases, keep=(), n=5):
    peak = np.asarray(logits).max(axis=0)
    order = [int(k) for k in np.argsort(-peak)]
    chosen = [phases.index(p) for p in keep]
    for k in order:
        if len(chosen) >= n:
            break
        if k not in chosen:
            chosen.append(k)
    return chosen


def plot_paths(section: dict, phases, path) -> None:
    from .figures import new_figure, save

    phases = list(phases)
    fig, axes = new_figure(1, 2, size=(11, 4))
    specs = [("bain", "Bain path: c/a of the bct cell (1 = bcc, √2 = fcc)", (BCC, FCC)),
             ("burgers", "Burgers path coordinate (0 = hcp, 1 = bcc)", (HCP, BCC))]
    for ax, (key, xlabel, keep) in zip(axes, specs):
        data = section["paths"][key]
        coord, logits = np.array(data["coordinate"]), np.array(data["logits"])
        for k in _top_phases(logits, phases, keep):
            name = phases[k]
            ax.plot(coord, logits[:, k], marker="o", ms=3,
                    lw=2.2 if name in keep else 1.0, label=report_name(name))
        if data["crossing"] is not None:
            ax.axvline(data["crossing"], color="grey", ls=":", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean logit (order parameter)")
        ax.legend(fontsize=8)
    save(fig, path)


def plot_msd(section: dict, path) -> None:
    from .figures import new_figure, save

    fig, axes = new_figure(1, 3, size=(13, 3.8))
    for ax, label in zip(axes, (FCC, BCC, HCP)):
        data = section["msd"][label]
        ax.scatter(data["scatter"]["msd"], data["scatter"]["logit"], s=2, alpha=0.25,
                   color="grey", label="atoms")
        msd = np.array([r["msd"] for r in data["structures"]])
        logit = np.array([r["mean_logit"] for r in data["structures"]])
        ax.plot(msd, logit, "o", color="C3", label="structure means")
        fit, full = data["fit"], data.get("full_range_fit")
        near = msd[[r["sigma"] <= fit.get("max_sigma", np.inf) for r in data["structures"]]]
        xs = np.linspace(0, near.max(), 50)
        ax.plot(xs, fit["intercept"] + fit["slope"] * xs, color="C0",
                label=f"fit σ ≤ {fit.get('max_sigma', 0):g} Å: slope {fit['slope']:.1f} /Å², "
                      f"R² = {fit['r2']:.3f}")
        if full:
            xs = np.linspace(0, msd.max(), 50)
            ax.plot(xs, full["intercept"] + full["slope"] * xs, color="C0", ls="--", lw=0.8,
                    label=f"fit, all σ: R² = {full['r2']:.3f}")
        ax.set_xlim(-0.01, 1.6 * msd.max())
        ax.set_xlabel("squared displacement from ideal sites (Å²): atom |Δr|², structure MSD")
        ax.set_ylabel(f"logit of the correct class ({report_name(label)})")
        ax.set_title(report_name(label))
        ax.legend(fontsize=7)
    save(fig, path)
