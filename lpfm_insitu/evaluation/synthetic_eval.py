"""Section 1: accuracy on ideal and Gaussian-perturbed prototype supercells, and denoising.

Every prototype is built at the reference density (15 Å^3/atom) as a near-cubic supercell,
then displaced by ``sigma * N(0, 1)`` per coordinate. One 8-step denoising run per
structure gives the labels after 0, 1 and 8 steps (its history) and the denoised positions.
"""

from __future__ import annotations

import time

import numpy as np

from ..training.synthetic import add_noise, ideal_supercell
from .metrics import label_breakdown, labels_from_logits

STEPS_REPORTED = (0, 1, 8)


def rmse_to_ideal(positions: np.ndarray, ideal: np.ndarray) -> float:
    """Per-coordinate RMS distance to the ideal sites after removing the mean displacement."""
    delta = np.asarray(positions, float) - np.asarray(ideal, float)
    delta -= delta.mean(axis=0)
    return float(np.sqrt(np.mean(delta ** 2)))


def run_synthetic(model, *, sigmas=(0.0, 0.15, 0.30), structures_per_sigma: int = 2,
                  target_atoms: int = 120, denoise_steps: int = 8, seed: int = 2024,
                  labels=None, log=print) -> dict:
    labels = tuple(labels or model.phases)
    phases = model.phases
    steps = tuple(s for s in STEPS_REPORTED if s <= denoise_steps)
    rng = np.random.default_rng(seed)
    per_proto = {}
    start = time.time()
    for label in labels:
        ideal = ideal_supercell(label, 15.0, target_atoms)
        entry = {"n_atoms": len(ideal)}
        for sigma in sigmas:
            n_struct = 1 if sigma == 0 else structures_per_sigma
            correct = {s: [0, 0] for s in steps}  # [argmax correct, thresholded correct]
            called = {s: [] for s in steps}
            n_total, rmse_before, rmse_after = 0, [], []
            for _ in range(n_struct):
                atoms = ideal.copy()
                if sigma > 0:
                    atoms.positions, _ = add_noise(ideal.positions, sigma, rng)
                result = model.classify_atoms(atoms, denoise_steps=denoise_steps,
                                              keep_history=True)
                for record in result.history:
                    if record["step"] in correct:
                        plain = labels_from_logits(record["logits"], phases)
                        thresholded = labels_from_logits(
                            record["logits"], phases, model.unknown_thresholds(record["step"]))
                        correct[record["step"]][0] += int(np.sum(plain == label))
                        correct[record["step"]][1] += int(np.sum(thresholded == label))
                        called[record["step"]].append(plain)
                n_total += len(atoms)
                rmse_before.append(rmse_to_ideal(atoms.positions, ideal.positions))
                rmse_after.append(rmse_to_ideal(atoms.positions + result.displacement,
                                                ideal.positions))
            entry[f"{sigma:.2f}"] = {
                "n_atoms": n_total,
                "accuracy": {str(s): correct[s][0] / n_total for s in steps},
                "accuracy_thresholded": {str(s): correct[s][1] / n_total for s in steps},
                "rmse_before": float(np.mean(rmse_before)),
                "rmse_after": float(np.mean(rmse_after)),
                "called": {str(s): label_breakdown(np.concatenate(called[s]), top=2)
                           for s in steps},
            }
        per_proto[label] = entry
        short = ", ".join(f"s={k}: {v['accuracy'][str(steps[0])]:.2f}->"
                          f"{v['accuracy'][str(steps[-1])]:.2f}"
                          for k, v in entry.items() if k != "n_atoms")
        log(f"  {label:18s} {short}")
    overall = {}
    for sigma in sigmas:
        key = f"{sigma:.2f}"
        n = sum(per_proto[l][key]["n_atoms"] for l in labels)
        overall[key] = {
            "accuracy": {str(s): sum(per_proto[l][key]["accuracy"][str(s)] *
                                     per_proto[l][key]["n_atoms"] for l in labels) / n
                         for s in steps},
            "accuracy_thresholded": {str(s): sum(
                per_proto[l][key]["accuracy_thresholded"][str(s)] * per_proto[l][key]["n_atoms"]
                for l in labels) / n for s in steps},
            "mean_prototype_accuracy": {str(s): float(np.mean(
                [per_proto[l][key]["accuracy"][str(s)] for l in labels])) for s in steps},
            "rmse_before": float(np.mean([per_proto[l][key]["rmse_before"] for l in labels])),
            "rmse_after": float(np.mean([per_proto[l][key]["rmse_after"] for l in labels])),
            "n_atoms": n,
        }
    return {"sigmas": [float(s) for s in sigmas], "steps": list(steps),
            "structures_per_sigma": structures_per_sigma, "target_atoms": target_atoms,
            "seed": seed, "per_prototype": per_proto, "overall": overall,
            "wall_s": time.time() - start}


def plot_synthetic(section: dict, path) -> None:
    from .figures import new_figure, save

    labels = list(section["per_prototype"])
    sigmas = [f"{s:.2f}" for s in section["sigmas"]]
    steps = [str(s) for s in section["steps"]]
    fig, axes = new_figure(len(sigmas), 1, size=(11, 2.6 * len(sigmas)), sharex=True)
    x = np.arange(len(labels))
    width = 0.8 / len(steps)
    for ax, sigma in zip(axes, sigmas):
        for k, step in enumerate(steps):
            acc = [section["per_prototype"][l][sigma]["accuracy"][step] for l in labels]
            ax.bar(x + (k - (len(steps) - 1) / 2) * width, acc, width, label=f"{step} steps")
        ax.set_ylim(0, 1.02)
        ax.axhline(0.995, color="k", lw=0.6, ls=":")
        ax.set_ylabel("accuracy")
        ax.set_title(f"sigma = {sigma} Å" + (" (ideal)" if float(sigma) == 0 else ""),
                     fontsize=9)
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    save(fig, path)
