"""The Markdown report, rendered from ``results.json`` alone (so partial reruns re-render)."""

from __future__ import annotations

from pathlib import Path

from ..training.prototypes import common_name, report_name
from .md_eval import METHOD_COLUMNS
from .real_report import real_targets, render_real

TARGETS = {
    "synthetic_perturbed_8steps": 0.995,
    "md_crystal_8steps": 0.995,
    "md_liquid_unknown": 0.95,
    "bf16_agreement": 0.999,
}


def pct(x, digits=1) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.{digits}f}"


def _stored_thresholds(model: dict) -> str:
    per_step = model.get("step_thresholds") or {}
    if not per_step:
        text = f"{model['confidence_threshold']:.4f}"
    else:
        text = ", ".join(f"{float(v):.3f} from {k} steps on" for k, v in per_step.items())
    own = model.get("phase_thresholds") or {}
    if any(own.values()):
        loss = (((model.get("calibration") or {}).get("phase_thresholds") or {})
                .get("hot_loss"))
        budget = "" if loss is None else f" {100 * loss:g} %"
        text += (f"; single phases' own (raised until no calibration-liquid atom is "
                 f"labelled them, or lowered where the shared one cost a hot MD crystal "
                 f"more than{budget or ' its budget'} of its atoms, never past a liquid "
                 f"atom): " + ", ".join(
                     f"{common_name(p)} {float(t):.3f} from {k} steps on"
                     for k, by_phase in own.items() for p, t in by_phase.items()))
    for names, by_steps in (model.get("candidate_margins") or {}).items():
        quantile = (((model.get("calibration") or {}).get("candidate_margins") or {})
                    .get("quantile"))
        share = "" if quantile is None else f" (what {100 * (1 - quantile):g} % of each " \
                                            f"calibration liquid's atoms reach)"
        text += (f"; over the candidates {'/'.join(common_name(p) for p in names.split(','))}"
                 f" an atom below the threshold keeps its label where it leads the next "
                 f"candidate by{share} " + ", ".join(
                     f"{float(v):.3f} from {k} steps on" for k, v in by_steps.items()))
    return text


def step_thresholds_text(md: dict) -> str:
    per_step = md.get("model_step_thresholds")
    if not per_step:
        return f"{md['model_threshold']:.3f}"
    return ", ".join(f"{float(v):.3f} after {k} steps" for k, v in per_step.items())


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _mark(ok) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def targets(results) -> list[tuple[str, str, str, object]]:
    rows = []
    syn = results.get("synthetic")
    if syn:
        acc = syn["overall"]["0.15"]["accuracy"]["8"]
        acc_thr = syn["overall"]["0.15"]["accuracy_thresholded"]["8"]
        rows.append(("synthetic, sigma 0.15 Å, 8 steps (argmax / with model threshold)",
                     "≥ 99.5 %", f"{pct(acc, 2)} / {pct(acc_thr, 2)} %", acc >= 0.995))
    md = results.get("md")
    if md:
        systems = md["systems"]
        crystals = {n: e for n, e in systems.items() if e["true_label"]}
        liquids = {n: e for n, e in systems.items() if not e["true_label"]}
        worst0 = min(crystals.items(), key=lambda kv: kv[1]["lpfm"]["0"]["argmax"]
                     - kv[1]["baselines"]["ptm_nocut"]["value"])
        diff = worst0[1]["lpfm"]["0"]["argmax"] - worst0[1]["baselines"]["ptm_nocut"]["value"]
        rows.append(("MD crystals: LPFM step 0 (argmax, no threshold) ≥ PTM (no cutoff), "
                     "every crystal",
                     "≥ 0 points", f"worst {worst0[0]}: {100 * diff:+.1f} points", diff >= 0))
        for step in ("0", "1", "8"):
            for thr_name, key in (("stored threshold", "model_threshold"),
                                  ("liquid-calibrated threshold", "liquid_threshold")):
                worst = min(crystals.items(), key=lambda kv: kv[1]["lpfm"][step].get(key, 0))
                value = worst[1]["lpfm"][step].get(key)
                liquid = min((e["lpfm"][step].get(key, 0) for e in liquids.values()),
                             default=None)
                if value is None:
                    continue
                ok = value >= 0.995 and (liquid is None or liquid >= 0.95)
                rows.append((f"MD after {step} steps, {thr_name}: worst crystal ≥ 99.5 % and "
                             "liquid ≥ 95 % unknown at once", "both",
                             f"{worst[0]}: {pct(value, 2)} %; liquid {pct(liquid)} %", ok))
        agreements = [e["bf16"]["label_agreement_step0"] for e in systems.values() if e["bf16"]]
        if agreements:
            rows.append(("bf16 vs fp32 label agreement (MD snapshots, step 0, worst system)",
                         "≥ 99.9 %", f"{pct(min(agreements), 2)} %", min(agreements) >= 0.999))
    strain = results.get("strain")
    if strain:
        rows.append(("hot crystals compressed uniaxially (section 4), worst crystal and "
                     "direction after 0 / 8 steps", "keep their class (no number set)",
                     "; ".join(f"{100 * float(c):g}%: {_worst_compressed(strain, c)}"
                               for c in strain["compressions"][:2]), None))
        if _has_candidates(strain):
            rows.append(("same over the family's candidates (fcc/bcc/hcp/omega; Si: diamond "
                         "family), as the shock example", "keep their class (no number set)",
                         "; ".join(f"{100 * float(c):g}%: "
                                   f"{_worst_compressed(strain, c, candidates=True)}"
                                   for c in strain["compressions"][:2]), None))
    cost = results.get("cost")
    if cost:
        rows.append(("bf16 vs fp32 label agreement (11k-atom crystal)", "≥ 99.9 %",
                     f"{pct(cost['bf16_label_agreement'], 2)} %",
                     cost["bf16_label_agreement"] >= 0.999))
        # what a user pays: classify_atoms reads every atom's own length scale first
        rows.append(("classification cost at 2 threads, 11k atoms: `classify_atoms` "
                     "(per-atom length scale; the model pass with one scale beside it)",
                     "≤ 30 us/atom",
                     f"{cost['classify_atoms_us_per_atom']:.0f} us/atom "
                     f"({cost['classification_us_per_atom']:.0f})",
                     cost["classify_atoms_us_per_atom"] <= 30))
    rows += real_targets(results)
    return rows


def _has_candidates(strain: dict) -> bool:
    # reports written before the restricted-candidate run have no such scores
    return all("candidates" in e["unstrained"] for e in strain["systems"].values())


def _compressed_score(scores: dict, step: str, candidates: bool) -> float:
    return scores["candidates"][step] if candidates else scores[step]["labelled"]


def _worst_compressed(strain: dict, compression, candidates: bool = False) -> str:
    key = f"{compression:g}"
    cells = []
    for step in ("0", "8"):
        name, mode, value = min(((n, m, _compressed_score(e["strained"][m][key], step,
                                                          candidates))
                                 for n, e in strain["systems"].items()
                                 for m in strain["modes"] if m.startswith("uniaxial")),
                                key=lambda t: t[2])
        cells.append(f"{pct(value)} % ({name}, {mode})")
    return " / ".join(cells)


def _cache_note(results) -> str:
    md = results.get("md")
    if not md:
        return "not used"
    fresh = [n for n, e in md["systems"].items() if not e["md"].get("from_cache", True)]
    total = sum(e["md"].get("lammps_wall_s", 0) for e in md["systems"].values())
    if fresh:
        return (f"made by LAMMPS during this run for {', '.join(fresh)} (LAMMPS time is part "
                f"of the md section)")
    return f"read from the cache (making them took {total:.0f} s of LAMMPS on 2 ranks)"


def _calibration_liquids(model: dict) -> str:
    source = ((model.get("calibration") or {}).get("thresholds") or {}).get("liquid")
    if not source:
        return "no record of which in the model file"
    return "; ".join(source) if isinstance(source, list) else str(source)


def _averaging_text(model: dict) -> str:
    radius = model.get("averaging_radius") or 0.0
    if not radius:
        return "labels and OPs from each atom's own logits"
    return (f"labels and OPs from logits averaged over each atom and its neighbours within "
            f"{radius:g} Å (model units, 15 Å³/atom: FCC's first two shells end at 3.92 Å); "
            "the score is the per-atom log p's")


def _prior_text(model: dict) -> str:
    previous = model.get("log_prior") or {}
    text = "phase prior: " + _one_prior_text(previous, model["n_phases"])
    for steps, prior in sorted((model.get("step_log_priors") or {}).items(),
                               key=lambda kv: int(kv[0])):
        if prior != previous:  # runs of these steps change the prior; the others repeat it
            text += f"; from {steps} denoising steps on, {_one_prior_text(prior, model['n_phases'])}"
        previous = prior
    return text + " (applied over all phases, not with restricted candidates)"


def _one_prior_text(prior: dict, n_phases: int) -> str:
    if not prior:
        return "uniform"
    values = sorted(set(prior.values()))
    if len(values) == 1:
        return (f"log prior {values[0]:g} on {len(prior)} of the {n_phases} prototypes, "
                "0 on the others")
    return "log prior " + ", ".join(f"{p} {v:g}" for p, v in sorted(prior.items()))


def _threads_text(meta: dict) -> str:
    per = meta.get("section_threads") or {}
    if len(set(per.values())) <= 1:
        return str(meta["threads"])
    return ", ".join(f"{k} {v}" for k, v in per.items())


def render(results: dict, out_dir: Path) -> str:
    r = results
    meta = r["meta"]
    model = meta["model"]
    parts = [f"# Evaluation of the LPFM phase model `{model['name']}`", "",
             "Regenerate everything on this page (tables, figures, `results.json`) with:", "",
             "```", meta["command"], "```", "",
             f"- **Model**: `{model['path']}` (sha256 `{model['sha256'][:16]}…`), "
             f"{model['n_phases']} prototypes, training steps done: {model.get('steps_done')}, "
             f"training time {model.get('training_seconds', 0) or 0:.0f} s, "
             f"final losses {model.get('final_losses')}; file dated {model.get('modified')}; "
             f"unknown threshold stored in the file: {_stored_thresholds(model)}; "
             f"denoising step {model.get('step_size')} Å² × score, capped at "
             f"{model.get('max_step')} Å per step; {_prior_text(model)}; "
             f"{_averaging_text(model)}"
             + "".join(f"; {k}: {v}" for k, v in (model.get("note") or {}).items()) + ".",
             f"- **Date**: {meta['date']} (lpfm_insitu {meta['package_version']}, torch "
             f"{meta['torch_version']}).",
             f"- **Machine**: {meta['cpu_count']} cores, torch threads used: "
             f"{_threads_text(meta)}; "
             f"1-min load average at start {(meta.get('load_average_start') or [-1])[0]:.1f}.",
             f"- **Wall time**: {sum(meta.get('section_wall_s', {}).values()):.0f} s for all "
             "sections (" + ", ".join(f"{k} {v:.0f} s" for k, v in
                                      meta.get("section_wall_s", {}).items())
             + f"); the last run (sections {', '.join(meta.get('sections_this_run', []))}) took "
             f"{meta.get('this_run_wall_s', 0):.0f} s including model loading; MD snapshots "
             f"{_cache_note(r)}.",
             ""]
    rows = targets(r)
    if rows:
        parts += ["## Targets", "", markdown_table(["what", "target", "measured", "met"],
                                           [(a, b, c, _mark(d)) for a, b, c, d in rows]), ""]
    if "synthetic" in r:
        parts += _synthetic(r["synthetic"])
    if "physics" in r:
        parts += _physics(r["physics"])
    if "md" in r:
        parts += _md(r["md"], model)
    if "strain" in r:
        parts += _strain(r["strain"])
    if "cost" in r:
        parts += _cost(r["cost"])
    if "real" in r:
        parts += render_real(r["real"])
    return "\n".join(parts) + "\n"


def _synthetic(s) -> list[str]:
    steps = [str(x) for x in s["steps"]]
    rows = []
    for sigma, o in s["overall"].items():
        rows.append([sigma, o["n_atoms"], *[pct(o["accuracy"][k], 2) for k in steps],
                     pct(o["accuracy_thresholded"][steps[-1]], 2),
                     f"{o['rmse_before']:.4f}", f"{o['rmse_after']:.4f}"])
    header = ["sigma (Å)", "atoms", *[f"acc. {k} steps (%)" for k in steps],
              f"acc. {steps[-1]} steps, model threshold (%)", "RMSE before (Å)",
              f"RMSE after {steps[-1]} steps (Å)"]
    per = []
    sig = list(s["overall"])
    for label, e in s["per_prototype"].items():
        row = [f"`{label}`", e["n_atoms"]]
        for sigma in sig:
            row += [pct(e[sigma]["accuracy"][steps[0]]), pct(e[sigma]["accuracy"][steps[-1]])]
        row += [f"{e[sig[-2]]['rmse_before']:.3f} → {e[sig[-2]]['rmse_after']:.3f}"]
        row += ["; ".join(f"{report_name(l)} {pct(f, 0)}" for l, f in e[sig[k]].get("called", {}).get(
            steps[j], []) if l != label) or "–" for k, j in ((0, 0), (1, 0), (1, -1))]
        per.append(row)
    per_header = ["prototype", "atoms/structure"]
    for sigma in sig:
        per_header += [f"σ={sigma}: 0 steps", f"σ={sigma}: {steps[-1]} steps"]
    per_header += [f"RMSE σ={sig[-2]} (Å) before → after", f"wrong labels σ={sig[0]}, 0 steps",
                   f"wrong labels σ={sig[1]}, 0 steps",
                   f"wrong labels σ={sig[1]}, {steps[-1]} steps"]
    return ["## 1. Synthetic prototypes", "",
            f"Every prototype at 15 Å³/atom as a near-cubic supercell (~{s['target_atoms']} "
            f"atoms), ideal (σ = 0, one structure) and with Gaussian displacements of σ per "
            f"coordinate ({s['structures_per_sigma']} structures per σ, seed {s['seed']}); no "
            "strain. Accuracy = fraction of atoms whose argmax label is the prototype "
            "(\"model threshold\": atoms below the stored unknown threshold count as wrong). "
            "RMSE = per-coordinate RMS distance to the ideal sites after removing the mean "
            "displacement. Paper: 99.91 % (403 prototypes, σ = 0.15 Å), chemistry-agnostic "
            "elemental model 96 % (33 prototypes).", "",
            markdown_table(header, rows), "", markdown_table(per_header, per), "",
            "![synthetic accuracy](synthetic_accuracy.png)", ""]


def _physics(p) -> list[str]:
    bain, burg = p["paths"]["bain"], p["paths"]["burgers"]

    fits = []
    for label, e in p["msd"].items():
        full = e.get("full_range_fit", {}).get("r2")
        fits.append([report_name(label), f"{e['fit']['slope']:.2f}", f"{e['fit']['intercept']:.2f}",
                     f"{e['fit']['r2']:.3f}", "–" if full is None else f"{full:.3f}",
                     f"{e['per_atom_fit']['r2']:.3f}"])
    sigmas = sorted({row["sigma"] for e in p["msd"].values() for row in e["structures"]})
    fit_sigma = next(iter(p["msd"].values()))["fit"].get("max_sigma", max(sigmas))
    sweep = []
    for label, e in p["msd"].items():
        by_sigma = {x: [r["accuracy"] for r in e["structures"] if r["sigma"] == x] for x in sigmas}
        sweep.append([report_name(label)] + [pct(sum(v) / len(v)) if v else "–"
                                       for v in by_sigma.values()])
    return ["## 2. Physics of the order parameters", "",
            "**Transformation paths** (constant 15 Å³/atom; all atoms equivalent, mean logit "
            "shown). Bain: bct cell, c/a = 1 (bcc) → √2 (fcc). Burgers: 4-atom orthorhombic "
            "cell, shear (b/a √3 → √2, c/a 1.624 → √2) and shuffle (alternate planes by "
            "b/6) "
            "interpolated together from hcp (0) to bcc (1).", "",
            markdown_table(["path", "argmax at start", "argmax at end", "crossing of the end-point logits",
                    "max |2nd difference| / range"],
                   [["Bain (c/a)", report_name(bain["start_label"]), report_name(bain["end_label"]),
                     "none" if bain["crossing"] is None else f"c/a = {bain['crossing']:.3f}",
                     f"{bain['max_relative_second_difference']:.3f}"],
                    ["Burgers (x)", report_name(burg["start_label"]), report_name(burg["end_label"]),
                     "none" if burg["crossing"] is None else f"x = {burg['crossing']:.3f}",
                     f"{burg['max_relative_second_difference']:.3f}"]]), "",
            "![logits along the Bain and Burgers paths](paths.png)", "",
            "**Logit versus displacement** (LPFM Eq. 13: the correct logit should fall linearly "
            "with the mean squared displacement from the ideal sites). Gaussian-perturbed "
            "supercells (~200 atoms), σ = 0 … 0.30 Å, 2 structures per σ; line fitted to the "
            f"structure means for σ ≤ {fit_sigma:g} Å (near the ideal phase, where Eq. 13 "
            "applies), R² also over the whole sweep and over single atoms (an atom's logit "
            "against its own |Δr|², all σ).", "",
            markdown_table(["crystal", "slope (1/Å²)", "intercept", f"R² (σ ≤ {fit_sigma:g} Å)",
                    "R² (all σ)", "R² (single atoms)"], fits), "",
            "![correct logit versus MSD](logit_vs_msd.png)", "",
            "Accuracy (%, argmax, no denoising) along the same sweep:", "",
            markdown_table(["crystal"] + [f"σ = {x:g} Å" for x in sigmas], sweep), ""]


def _md(m, model: dict) -> list[str]:
    systems = m["systems"]
    info = []
    for name, e in systems.items():
        md = e["md"]
        info.append([name, md["potential"], md["n_atoms"], min(md["n_frames"], m["max_frames"]),
                     f"{md['mean_temperature_K']:.0f}", f"{md['atomic_volume_A3']:.2f}",
                     f"{md['simulated_ps']:g}",
                     ", ".join(f"{report_name(l)} {pct(f)}"
                               for l, f in e["baselines"]["ptm_nocut"]["breakdown"][:2])])
    main = []
    for name, e in systems.items():
        main.append([name] + [pct(get(e)) for _, get in METHOD_COLUMNS])
    thr = m["liquid_thresholds"]
    tl = []
    for name, e in systems.items():
        row = [name]
        for key in ("argmax", "model_threshold", "liquid_threshold"):
            row.append(" / ".join(pct(e["lpfm"][s].get(key), 2) for s in ("0", "1", "8")))
        tl.append(row)
    cand = []
    for name, e in systems.items():
        c = e["lpfm_candidates"]
        cand.append([name, ", ".join(report_name(x) for x in e["candidates"]),
                     pct(c["0"]["model_threshold"]), pct(c["1"]["model_threshold"]),
                     pct(c["8"]["model_threshold"]), pct(e["lpfm"]["0"]["model_threshold"]),
                     pct(e["lpfm"]["8"]["model_threshold"])])
    errors = []
    for name, e in systems.items():
        errors.append([name] + ["; ".join(f"{report_name(l)} {pct(f)}" for l, f in
                                          e["lpfm"][s]["breakdown"]) for s in ("0", "8")]
                      + ["; ".join(f"{report_name(l)} {pct(f)}" for l, f in
                                   e["baselines"]["ptm_nocut"]["breakdown"])])
    bf = [[n, e["bf16"]["n_atoms"], pct(e["bf16"]["label_agreement_step0"], 2),
           pct(e["bf16"]["argmax_agreement_step0"], 2) if "argmax_agreement_step0" in e["bf16"]
           else "–",
           f"{e['bf16']['max_abs_logit_difference']:.3f}", e["bf16"].get("mode", "autocast")]
          for n, e in systems.items() if e["bf16"]]
    bf_errors = {e["bf16"].get("native_error") for e in systems.values() if e["bf16"]} - {None}
    return ["## 3. Near-melting MD snapshots (LAMMPS)", "",
            "NPT (Nosé–Hoover, zero pressure; aniso for hcp), 1 fs steps, ≥ 6 ps of "
            "equilibration, frames 1 ps apart; inputs in `lpfm_insitu/evaluation/md_templates.py`, "
            "cached by input hash. All methods label the same atoms. Accuracy = fraction of atoms "
            "given the crystal's AFLOW label (unknown / Other count wrong); for the liquid the "
            "number is the fraction of atoms given no crystalline label (PTM/CNA: Other or "
            "icosahedral). PTM runs with OVITO's default templates (fcc, hcp, bcc, ico) plus "
            "cubic and hexagonal diamond for Si; for Si the a-CNA column is OVITO's "
            "IdentifyDiamondModifier (only fully diamond-coordinated atoms count). "
            "\"LPFM 8 steps + PTM\": PTM (no cutoff) on the LPFM-denoised positions.", "",
            markdown_table(["system", "potential", "atoms", "frames used", "T (K)", "V/atom (Å³)",
                    "simulated ps", "PTM (no cutoff) says"], info), "",
            "**Accuracy (%) with the model's stored threshold(s)** "
            f"({step_thresholds_text(m)}):", "",
            markdown_table(["system"] + [t for t, _ in METHOD_COLUMNS], main), "",
            "![MD accuracy](md_accuracy.png)", "",
            "**Unknown threshold.** Thresholds that mark 95 % of the LAMMPS liquid's atoms "
            "unknown: " + ", ".join(f"{float(v):.3f} after {k} steps" for k, v in thr.items())
            + f" (stored: {step_thresholds_text(m)}; `lpfm calibrate` sets them on "
            "liquids of other elements, so this liquid Cu is held out: "
            f"{_calibration_liquids(model)}). "
            "`step_thresholds_on_liquid(model, liquid_frames, steps, 0.95)` in "
            "`lpfm_insitu.training.calibration` returns them. "
            "Accuracy (%) — for the liquid: unknown fraction (%):", "",
            markdown_table(["system", "argmax, no threshold (0 / 1 / 8 steps)",
                    "stored threshold (0 / 1 / 8 steps)",
                    "liquid-calibrated threshold of the same step (0 / 1 / 8 steps)"], tl), "",
            "![confidence distributions](md_confidence.png)", "",
            "**Restricted candidates** (first frame only; the denoising gradient also uses "
            "only the candidates). Accuracy (%) with the stored threshold:", "",
            markdown_table(["system", "candidates", "0 steps", "1 step", "8 steps",
                    "all 25: 0 steps", "all 25: 8 steps"], cand), "",
            "**What the atoms were called** (top three labels, %, stored threshold):", "",
            markdown_table(["system", "LPFM 0 steps", "LPFM 8 steps", "PTM (no cutoff)"], errors), "",
            "**bf16 autocast vs fp32** (first frame, classification at step 0):", "",
            markdown_table(["system", "atoms", "label agreement (%, stored threshold)",
                            "argmax agreement (%)", "max |Δ logit|", "bf16 mode"], bf),
            ""] + ([f"The model's own bf16 path (`PhaseModel.to('cpu', 'bf16')`: torch autocast) "
                    f"fails on the CPU with `{sorted(bf_errors)[0]}` (MACE's symmetric "
                    "contraction mixes bf16 activations with fp32 weights); the numbers above "
                    "keep only the symmetric contractions in fp32 "
                    "(`lpfm_insitu/evaluation/precision.py`).", ""] if bf_errors else [])


def _strain(s) -> list[str]:
    compressions = [f"{c:g}" for c in s["compressions"]]
    rows = []
    for name, e in s["systems"].items():
        base = e["unstrained"]
        rows.append([name, "none", f"{pct(base['0']['labelled'])} / {pct(base['8']['labelled'])}"
                     f" / {pct(base['ptm_nocut'])}"] + [""] * len(compressions))
        for mode in s["modes"]:
            cells = [f"{pct(r['0']['labelled'])} / {pct(r['8']['labelled'])} / "
                     f"{pct(r['ptm_nocut'])}"
                     for r in (e["strained"][mode][c] for c in compressions)]
            worst = e["strained"][mode][compressions[-1]]["0"]
            wrong = ", ".join(f"{report_name(l)} {pct(f)}"
                              for l, f in worst["wrong_labels"]) or "–"
            rows.append([name, mode] + cells + [wrong])
    header = (["crystal", "compression"]
              + [f"{100 * float(c):g}% vol.: 0 steps / 8 steps / PTM" for c in compressions]
              + [f"wrong labels at {100 * float(compressions[-1]):g}%, 0 steps (% of atoms)"])
    return ["## 4. Compressed hot crystals (the shock case)", "",
            "The first frame of each crystal of section 3, compressed affinely by 5, 10 and "
            "15% in volume (uniaxially along z, HCP's c axis; along x, HCP's a axis; or "
            "hydrostatically) and classified with the nearest-neighbour distance of the "
            "unstrained crystal, as a shock run does with one length for the whole box. "
            "Cells: % of atoms labelled right with the stored thresholds (unknown counts as "
            "wrong) after 0 / 8 denoising steps, and PTM without cutoff (which does not see "
            "the density). The \"none\" row is the unstrained frame. The shipped models were "
            "trained with uniaxial compression up to 15% and isotropic scaling 0.90-1.08 (27% "
            "volume), on cold noisy crystals.", "",
            markdown_table(header, rows), ""] + _strain_candidates(s) + [
            "![compressed hot crystals](strain.png)", ""]


def _strain_candidates(s) -> list[str]:
    if not _has_candidates(s):
        return []
    compressions = [f"{c:g}" for c in s["compressions"]]
    rows = []
    for name, e in s["systems"].items():
        base = e["unstrained"]["candidates"]
        rows.append([name, ", ".join(report_name(c) for c in e["candidates"]), "none",
                     f"{pct(base['0'])} / {pct(base['8'])}"] + [""] * (len(compressions) - 1))
        for mode in s["modes"]:
            rows.append([name, "", mode] + [
                f"{pct(e['strained'][mode][c]['candidates']['0'])} / "
                f"{pct(e['strained'][mode][c]['candidates']['8'])}" for c in compressions])
    header = (["crystal", "candidates", "compression"]
              + [f"{100 * float(c):g}% vol.: 0 / 8 steps" for c in compressions])
    return ["**Restricted candidates**: the same crystals classified over their family's "
            "phases only (as section 3's restricted run and the shock example; the "
            "denoising gradient also uses only the candidates), stored thresholds, % of "
            "atoms labelled right:", "", markdown_table(header, rows), ""]


def _cost(c) -> list[str]:
    load = c.get("load_average_before")
    note = ("**measured under load** (other jobs, e.g. training, were running: 1-min load "
            f"average {load[0]:.1f} on {c['cpu_count']} cores), so the times are upper bounds; "
            "rerun `--sections cost` on an idle machine"
            if c.get("under_load") else f"measured on an idle machine (load average {load[0]:.1f})"
            if load else "")
    rows = [["graph (neighbour list)", f"{c['graph_us_per_atom']:.1f}"],
            ["forward pass", f"{c['forward_us_per_atom']:.0f}"],
            ["forward + gradient of log p", f"{c['forward_gradient_us_per_atom']:.0f}"],
            [f"neighbour average of the logits (radius {c.get('averaging_radius', 0):g} Å)",
             f"{c.get('average_us_per_atom', 0):.1f}"],
            ["**classification** (graph + forward + average, timed as one call)",
             f"**{c['classification_us_per_atom']:.0f}**"],
            ["**one denoising step** (graph + forward + gradient, timed as one call)",
             f"**{c['denoising_step_us_per_atom']:.0f}**"],
            ["`classify_atoms` end to end, 0 steps", f"{c['classify_atoms_us_per_atom']:.0f}"],
            ["`classify_atoms`, extra cost of 1 step",
             f"{c['classify_atoms_1step_minus_0step_us_per_atom']:.0f}"],
            [f"bf16 forward ({c['bf16_mode']}; one run)", f"{c['bf16_forward_us_per_atom']:.0f}"]]
    return ["## 5. Cost on this machine", "",
            f"{c['n_atoms']}-atom FCC crystal (σ = 0.1 Å), {c['threads']} torch threads, fp32, "
            f"{c['edges_per_atom']:.0f} edges per atom; best of 3; {note}.", "",
            markdown_table(["part", "us/atom"], rows), "",
            f"bf16 vs fp32 on this crystal: label agreement {pct(c['bf16_label_agreement'], 3)} % "
            + (f"(argmax of the bare forward pass, before the neighbour average: "
               f"{pct(c['bf16_forward_argmax_agreement'], 3)} %)"
               if "bf16_forward_argmax_agreement" in c else "") + ", "
            f"max |Δ logit| {c['bf16_max_abs_logit_difference']:.3f} (mode: {c['bf16_mode']})."
            + (f" The model's own bf16 path (`PhaseModel.to('cpu', 'bf16')`, torch autocast) "
               f"fails on the CPU: `{c['bf16_native_error']}`." if c.get("bf16_native_error")
               else ""), ""]
