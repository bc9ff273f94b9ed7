#!/usr/bin/env python
"""Check the model's omega on a frame of ti_omega.dump without the model.

Usage:
    python analyze_omega.py ti_omega.dump [--index -1] [--json result.json]
                            [--timeline plots/ptm_vs_model.png]

For the frame (default: the last, which carries the denoised pass of in.ti_omega):
  * the model's labels in situ: at step 0 (i_lpfm_phase) and, where the frame has them,
    after the denoising steps (i_lpfmd_phase), argmax over fcc/bcc/hcp/omega;
  * PTM (OVITO) with no RMSD cutoff and with its default 0.1, on the dumped positions and
    on the denoised ones (x + d2_lpfmd_disp): PTM has no omega template;
  * a template match that has one (lpfm_insitu.evaluation.template_match): every atom's nearest
    neighbours against the ideal first shells of hcp, both omega sites (1a: 14
    neighbours, 2d: 11), bcc and fcc, built from the prototypes; which one fits best,
    on the denoised positions and on the dumped ones. An omega crystal has twice as
    many 2d as 1a sites; its first shells (largest gap in the sorted neighbour distances)
    hold 11 and 14 atoms, where hcp's hold 12.
--denoise-steps N: for a frame without the in-situ denoised pass (an earlier one), denoise
    it here with the model first.
--timeline: PTM (no cutoff) on every dumped frame beside the model's in-situ fractions
(the same atoms, the same steps), as a table in the JSON ("timeline") and a figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np
from ase.io import read

from lpfm_insitu.evaluation.baselines import ptm_labels
from lpfm_insitu.evaluation.template_match import default_templates, match_templates, shell_sizes

CANDIDATES = {"A_cI2_229_a": "bcc", "A_hP2_194_c": "hcp", "A_cF4_225_a": "fcc",
              "A_hP3_191_ad": "omega"}


def model_phase_names(model: str = "default") -> list[str]:
    from lpfm_insitu.model.files import load_model

    with warnings.catch_warnings():  # TorchScript's notes while the network is built
        warnings.simplefilter("ignore", UserWarning)
        return list(load_model(model).phases)


def label_names(indices: np.ndarray, phases: list[str]) -> np.ndarray:
    names = np.array([CANDIDATES.get(p, p) for p in phases] + ["unknown"])
    return names[np.where(indices < 0, len(phases), indices)]


def fractions(names: np.ndarray) -> dict[str, float]:
    values, counts = np.unique(names, return_counts=True)
    return {str(v): round(float(c) / len(names), 4) for v, c in
            sorted(zip(values, counts), key=lambda vc: -vc[1])}


def denoised_copy(atoms, prefix: str = "d2_lpfmd_disp"):
    keys = [f"{prefix}[{k}]" for k in (1, 2, 3)]
    if not all(k in atoms.arrays for k in keys):
        return None
    disp = np.column_stack([atoms.arrays[k] for k in keys])
    if not np.any(disp):
        return None
    out = atoms.copy()
    out.positions = atoms.positions + disp
    out.wrap()
    return out


def template_report(atoms, model_names: np.ndarray | None) -> dict:
    templates = default_templates()
    match = match_templates(atoms, templates)
    best = np.array([templates[b].name for b in match["best"]])
    family = np.array([n.split("-")[0] for n in best])
    report = {"best_template": fractions(best), "best_phase": fractions(family),
              "median_rmsd": {t.name: round(float(np.median(match["rmsd"][:, k])), 4)
                              for k, t in enumerate(templates)}}
    omega_cols = [k for k, t in enumerate(templates) if t.name.startswith("omega")]
    other_cols = [k for k, t in enumerate(templates) if t.name.split("-")[0] in ("hcp", "bcc")]
    omega_better = match["rmsd"][:, omega_cols].min(1) < match["rmsd"][:, other_cols].min(1)
    report["omega_better_than_hcp_bcc"] = round(float(omega_better.mean()), 4)
    # first-shell sizes (largest gap): omega 11 (2/3 of the atoms) and 14 (1/3), hcp 12
    sizes = shell_sizes(atoms)
    report["shell_size"] = {int(v): round(float(c) / len(sizes), 4)
                            for v, c in zip(*np.unique(sizes, return_counts=True))}
    is_omega = family == "omega"
    if is_omega.any():
        # omega sites: 1a (14 neighbours) and 2d (11), 1:2 in a perfect crystal
        sites = {t.name: int((best == t.name).sum()) for t in templates
                 if t.name.startswith("omega")}
        report["omega_site_counts"] = sites
    if model_names is not None:
        model_omega = model_names == "omega"
        report["model_omega_atoms"] = int(model_omega.sum())
        if model_omega.any():
            report["best_phase_on_model_omega"] = fractions(family[model_omega])
            report["omega_better_than_hcp_bcc_on_model_omega"] = round(
                float(omega_better[model_omega].mean()), 4)
        if is_omega.any():
            report["model_on_template_omega"] = fractions(model_names[is_omega])
    return report


def denoise_offline(atoms, model: str, steps: int):
    """The frame denoised by the model here (for frames without the in-situ pass)."""
    from lpfm_insitu.model.files import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = load_model(model)
    result = net.classify_atoms(atoms, denoise_steps=steps, candidates=list(CANDIDATES))
    out = atoms.copy()
    out.positions = atoms.positions + result.displacement
    out.wrap()
    return out, result.labels


def analyse(path: str, index: str = "-1", model: str = "default",
            denoise_steps: int = 0) -> dict:
    atoms = read(path, index=index, format="lammps-dump-text")
    phases = model_phase_names(model)
    out = {"step": int(atoms.info.get("timestep", -1)), "n_atoms": len(atoms)}
    insitu = label_names(np.asarray(atoms.arrays["i_lpfm_phase"], int), phases)
    out["model_step0"] = fractions(insitu)
    denoised = denoised_copy(atoms)
    final = insitu
    if denoised is None and denoise_steps:
        denoised, labels = denoise_offline(atoms, model, denoise_steps)
        final = label_names(labels, phases)
        out["model_denoised"] = fractions(final)
        out["denoised_offline_steps"] = denoise_steps
    elif denoised is not None:
        final = label_names(np.asarray(atoms.arrays["i_lpfmd_phase"], int), phases)
        out["model_denoised"] = fractions(final)
        disp = np.linalg.norm(np.column_stack(
            [atoms.arrays[f"d2_lpfmd_disp[{k}]"] for k in (1, 2, 3)]), axis=1)
        out["denoise_displacement_A"] = {"median": round(float(np.median(disp)), 4),
                                         "p95": round(float(np.percentile(disp, 95)), 4)}
    for what, frame in (("dumped", atoms), ("denoised", denoised)):
        if frame is None:
            continue
        for cutoff in (0.0, 0.1):
            raw = ptm_labels(frame, rmsd_cutoff=cutoff)
            ptm = np.array([CANDIDATES.get(p, "other" if p == "unknown" else p) for p in raw])
            key = f"ptm_{what}_cutoff_{cutoff:g}"
            out[key] = fractions(ptm)
            if (final == "omega").any():
                out[key + "_on_model_omega"] = fractions(ptm[final == "omega"])
        out[f"templates_{what}"] = template_report(frame, final)
    return out


def timeline(path: str, model: str, figure: str | None) -> list[dict]:
    """Model (in situ) and PTM (no cutoff) fractions on every dumped frame."""
    phases = model_phase_names(model)
    rows = []
    for atoms in read(path, index=":", format="lammps-dump-text"):
        model_names = label_names(np.asarray(atoms.arrays["i_lpfm_phase"], int), phases)
        ptm = np.array([CANDIDATES.get(p, "other" if p == "unknown" else p)
                        for p in ptm_labels(atoms, rmsd_cutoff=0.0)])
        rows.append({"step": int(atoms.info.get("timestep", -1)),
                     "model": fractions(model_names), "ptm": fractions(ptm)})
    if figure:
        _plot_timeline(rows, figure)
    return rows


def _plot_timeline(rows: list[dict], figure: str) -> None:
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    colours = {"hcp": "tab:blue", "omega": "tab:red", "bcc": "tab:green", "fcc": "tab:orange",
               "unknown": "0.4", "other": "0.4"}
    for ax, key, title in ((axes[0], "model", "LPFM (default model, in situ, step 0)"),
                           (axes[1], "ptm", "PTM, no RMSD cutoff (no omega template)")):
        names = sorted({n for r in rows for n in r[key]})
        for name in names:
            ax.plot(steps, [r[key].get(name, 0.0) for r in rows], label=name,
                    color=colours.get(name), linestyle=":" if name in ("unknown", "other")
                    else "-")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    axes[0].set_ylabel("fraction of atoms")
    axes[0].set_ylim(-0.02, 1.02)
    Path(figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--index", default="-1", help="frame (ASE index syntax; default: last)")
    ap.add_argument("--model", default="default", help="the model the run used (phase names)")
    ap.add_argument("--json", help="also write the result to this file")
    ap.add_argument("--timeline", help="PTM beside the model on every frame: figure file")
    ap.add_argument("--denoise-steps", type=int, default=0,
                    help="a frame without the in-situ denoised pass: denoise it here with "
                         "the model (candidates fcc/bcc/hcp/omega) this many steps")
    args = ap.parse_args(argv)
    result = analyse(args.dump, args.index, args.model, args.denoise_steps)
    if args.timeline:
        result["timeline"] = timeline(args.dump, args.model, args.timeline)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
