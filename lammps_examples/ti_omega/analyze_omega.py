#!/usr/bin/env python
"""Check the model's omega on a frame of ti_omega.dump without the model.

Usage:
    python analyze_omega.py ti_omega.dump [--index -1] [--json result.json]

For the frame (default: the last, which carries the denoised pass of in.ti_omega):
  * the model's labels in situ: at step 0 (i_lpfm_phase) and, where the frame has them,
    after the denoising steps (i_lpfmd_phase), argmax over fcc/bcc/hcp/omega;
  * PTM (OVITO) with no RMSD cutoff and with its default 0.1, on the dumped positions and
    on the denoised ones (x + d2_lpfmd_disp): PTM has no omega template;
  * a template match that has one (lpfm_insitu.template_match): every atom's nearest
    neighbours against the ideal first shells of hcp, both omega sites (1a: 14
    neighbours, 2d: 11), bcc and fcc, built from the prototypes; which one fits best,
    on the denoised positions and on the dumped ones. An omega crystal has twice as
    many 2d as 1a sites.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from ase.io import read

from lpfm_insitu.evaluation.baselines import ptm_labels
from lpfm_insitu.template_match import default_templates, match_templates

CANDIDATES = {"A_cI2_229_a": "bcc", "A_hP2_194_c": "hcp", "A_cF4_225_a": "fcc",
              "A_hP3_191_ad": "omega"}


def model_phase_names(model: str = "default") -> list[str]:
    from lpfm_insitu.modelfile import load_model

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


def analyse(path: str, index: str = "-1", model: str = "default") -> dict:
    atoms = read(path, index=index, format="lammps-dump-text")
    phases = model_phase_names(model)
    out = {"step": int(atoms.info.get("timestep", -1)), "n_atoms": len(atoms)}
    insitu = label_names(np.asarray(atoms.arrays["i_lpfm_phase"], int), phases)
    out["model_step0"] = fractions(insitu)
    denoised = denoised_copy(atoms)
    final = insitu
    if denoised is not None:
        final = label_names(np.asarray(atoms.arrays["i_lpfmd_phase"], int), phases)
        out["model_denoised"] = fractions(final)
        disp = np.linalg.norm(denoised.positions - atoms.positions, axis=1)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--index", default="-1", help="frame (ASE index syntax; default: last)")
    ap.add_argument("--model", default="default", help="the model the run used (phase names)")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)
    result = analyse(args.dump, args.index, args.model)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
