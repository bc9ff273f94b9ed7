"""Section 3: near-melting LAMMPS snapshots, LPFM against PTM and adaptive CNA.

Every method labels the same atoms. LPFM runs once with 8 denoising steps and its
history gives the answers after 0, 1 and 8 steps. PTM is run with no RMSD cutoff (every
atom gets its best template) and with OVITO's default cutoff 0.1; adaptive CNA (or the
diamond identifier for Si) is the second conventional baseline. PTM is also run on the
LPFM-denoised positions (the denoiser-plus-PTM pipeline of the DC3 comparison).
"""

from __future__ import annotations

import time

import numpy as np

from ..training.calibration import rejection_threshold
from .baselines import acna_labels, diamond_labels, ptm_labels
from .md_snapshots import DEFAULT_CACHE, snapshots
from .md_templates import SYSTEMS
from .precision import bf16_call
from .metrics import (accuracy, confidence_of, crystalline_fraction, label_breakdown,
                      labels_from_logits)

STEPS = (0, 1, 8)
LIQUID_QUANTILE = 0.95


def _lpfm_run(model, atoms, steps, candidates=None):
    result = model.classify_atoms(atoms, denoise_steps=steps, candidates=candidates,
                                  keep_history=True)
    logits = {r["step"]: r["logits"] for r in result.history if r["step"] in STEPS}
    return logits, result.history[0]["labels"], result.displacement


def evaluate_system(model, system, frames, max_frames: int, log=print) -> dict:
    phases = model.phases
    frames = frames[:max_frames]
    logits = {s: [] for s in STEPS}
    cand_logits = {s: [] for s in STEPS}
    base = {"ptm_nocut": [], "ptm_0.1": [], "cna": [], "ptm_nocut_denoised8": []}
    bf16 = {}
    start = time.time()
    for k, atoms in enumerate(frames):
        step_logits, step0_labels, displacement = _lpfm_run(model, atoms, max(STEPS))
        for s in STEPS:
            logits[s].append(step_logits[s])
        base["ptm_nocut"].append(ptm_labels(atoms, 0.0, diamond=system.diamond))
        base["ptm_0.1"].append(ptm_labels(atoms, 0.1, diamond=system.diamond))
        base["cna"].append(diamond_labels(atoms) if system.diamond else acna_labels(atoms))
        denoised = atoms.copy()
        denoised.positions = atoms.positions + displacement
        base["ptm_nocut_denoised8"].append(ptm_labels(denoised, 0.0, diamond=system.diamond))
        if k == 0:  # the restricted-candidate run and bf16 check on the first frame only
            c_logits, _, _ = _lpfm_run(model, atoms, max(STEPS), list(system.candidates))
            for s in STEPS:
                cand_logits[s].append(c_logits[s])
            t0 = time.time()
            low, mode, error = bf16_call(model, lambda m: m.classify_atoms(atoms))
            # the labels users get (unknown below the threshold), and the bare argmax
            bf16 = {"n_atoms": len(atoms), "wall_s": time.time() - t0, "mode": mode,
                    "native_error": error,
                    "label_agreement_step0": float(np.mean(low.labels == step0_labels)),
                    "argmax_agreement_step0": float(np.mean(
                        np.argmax(low.logits, axis=1) == np.argmax(step_logits[0], axis=1))),
                    "max_abs_logit_difference": float(np.max(np.abs(low.logits
                                                                    - step_logits[0])))}
    logits = {s: np.concatenate(v) for s, v in logits.items()}
    cand_logits = {s: np.concatenate(v) for s, v in cand_logits.items()}
    base = {k: np.concatenate(v) for k, v in base.items()}
    log(f"  {system.name}: {len(frames)} frame(s), {len(logits[0])} atoms, "
        f"{time.time() - start:.0f} s")
    return {"logits": logits, "candidate_logits": cand_logits, "baselines": base,
            "bf16": bf16, "wall_s": time.time() - start}


def score(model, system, raw, thresholds) -> dict:
    """Accuracies (crystal) or rejection rates (liquid) for every method and threshold."""
    phases = model.phases
    truth = system.true_label
    crystal = list(phases)
    out = {"n_atoms": int(len(raw["logits"][0])), "true_label": truth, "lpfm": {},
           "baselines": {}}

    def measure(labels):
        if truth is None:  # liquid: fraction NOT given a crystalline label
            return 1.0 - crystalline_fraction(labels, crystal)
        return accuracy(labels, truth)

    for s in STEPS:
        lg = raw["logits"][s]
        entry = {
            "argmax": measure(labels_from_logits(lg, phases)),
            "model_threshold": measure(labels_from_logits(lg, phases, model.unknown_thresholds(s))),
        }
        if s in thresholds:  # the threshold calibrated on the liquid after the same steps
            entry["liquid_threshold"] = measure(labels_from_logits(lg, phases, thresholds[s]))
        entry["breakdown"] = label_breakdown(labels_from_logits(
            lg, phases, model.unknown_thresholds(s)))
        entry["mean_confidence"] = float(confidence_of(lg, phases).mean())
        out["lpfm"][str(s)] = entry
        cl = raw["candidate_logits"][s]
        out.setdefault("lpfm_candidates", {})[str(s)] = {
            "argmax": measure(labels_from_logits(cl, phases, candidates=system.candidates)),
            "model_threshold": measure(labels_from_logits(
                cl, phases, model.unknown_thresholds(s, system.candidates), system.candidates,
                model.candidate_margin(s, system.candidates))),
            "n_atoms": int(len(cl)),
        }
    for name, labels in raw["baselines"].items():
        out["baselines"][name] = {"value": measure(labels), "breakdown": label_breakdown(labels)}
    out["candidates"] = list(system.candidates)
    out["bf16"] = raw["bf16"]
    return out


def run_md(model, cache=DEFAULT_CACHE, max_frames: int = 2, n_ranks: int = 2, systems=SYSTEMS,
           log=print) -> tuple[dict, dict]:
    start = time.time()
    raw, metas = {}, {}
    for system in systems:
        frames, meta = snapshots(system, cache, n_ranks, log)
        metas[system.name] = meta
        raw[system.name] = evaluate_system(model, system, frames, max_frames, log)
    liquids = [s for s in systems if s.true_label is None]
    thresholds = {}
    if liquids:
        for s in STEPS:
            conf = np.concatenate([confidence_of(raw[l.name]["logits"][s], model.phases)
                                   for l in liquids])
            thresholds[s] = rejection_threshold(conf, LIQUID_QUANTILE)
    section = {"systems": {}, "model_threshold": model.confidence_threshold,
               "model_step_thresholds": {str(k): model.threshold_for(k) for k in STEPS},
               "liquid_quantile": LIQUID_QUANTILE,
               "liquid_thresholds": {str(k): v for k, v in thresholds.items()},
               "max_frames": max_frames}
    for system in systems:
        entry = score(model, system, raw[system.name], thresholds)
        entry["md"] = metas[system.name]
        entry["description"] = system.description
        entry["wall_s"] = raw[system.name]["wall_s"]
        section["systems"][system.name] = entry
    section["confidence_histograms"] = _histograms(model, systems, raw, thresholds)
    section["wall_s"] = time.time() - start
    return section, raw


def _histograms(model, systems, raw, thresholds, n_bins: int = 80):
    """Confidence histograms after 0 and 8 steps, on a range covering data and thresholds."""
    conf = {(system.name, s): confidence_of(raw[system.name]["logits"][s], model.phases)
            for system in systems for s in (0, 8)}
    values = np.concatenate(list(conf.values()))
    marks = [v for v in [model.confidence_threshold, *thresholds.values()] if np.isfinite(v)]
    lo = min([np.quantile(values, 0.001), *marks]) - 0.25
    hi = max([np.quantile(values, 0.999), *marks]) + 0.25
    bins = np.linspace(lo, hi, n_bins + 1)
    out = {"bins": bins.tolist()}
    for system in systems:
        out[system.name] = {str(s): np.histogram(np.clip(conf[system.name, s], lo, hi), bins)[0]
                            .tolist() for s in (0, 8)}
    return out


METHOD_COLUMNS = [
    ("LPFM 0 steps", lambda e: e["lpfm"]["0"]["model_threshold"]),
    ("LPFM 1 step", lambda e: e["lpfm"]["1"]["model_threshold"]),
    ("LPFM 8 steps", lambda e: e["lpfm"]["8"]["model_threshold"]),
    ("PTM (no cutoff)", lambda e: e["baselines"]["ptm_nocut"]["value"]),
    ("PTM (cutoff 0.1)", lambda e: e["baselines"]["ptm_0.1"]["value"]),
    ("a-CNA / diamond id.", lambda e: e["baselines"]["cna"]["value"]),
    ("LPFM 8 steps + PTM", lambda e: e["baselines"]["ptm_nocut_denoised8"]["value"]),
]


def plot_md(section: dict, path) -> None:
    from .figures import new_figure, save

    names = list(section["systems"])
    fig, axes = new_figure(1, 1, size=(12, 4.2))
    ax = axes[0]
    x = np.arange(len(names))
    width = 0.8 / len(METHOD_COLUMNS)
    for k, (title, get) in enumerate(METHOD_COLUMNS):
        values = [get(section["systems"][n]) for n in names]
        ax.bar(x + (k - (len(METHOD_COLUMNS) - 1) / 2) * width, values, width, label=title)
    ax.axhline(0.995, color="k", lw=0.6, ls=":")
    ax.set_xticks(x)
    ax.set_xticklabels([n.replace("_", " ") for n in names], fontsize=8)
    ax.set_ylabel("accuracy (liquid: fraction not crystalline)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=len(METHOD_COLUMNS), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    save(fig, path)


def plot_confidence(section: dict, path) -> None:
    from .figures import new_figure, save

    hist = section["confidence_histograms"]
    bins = np.array(hist["bins"])
    centres = 0.5 * (bins[1:] + bins[:-1])
    fig, axes = new_figure(1, 2, size=(12, 4))
    for ax, step in zip(axes, ("0", "8")):
        for name in section["systems"]:
            counts = np.array(hist[name][step], float)
            liquid = section["systems"][name]["true_label"] is None
            ax.plot(centres, counts / max(counts.sum(), 1), lw=2.2 if liquid else 1.2,
                    color="k" if liquid else None, label=name.replace("_", " "))
        ax.axvline(section["model_threshold"], color="C3", ls="--",
                   label=f"model threshold {section['model_threshold']:.2f}")
        thr = section["liquid_thresholds"].get(step)
        if thr is not None:
            ax.axvline(thr, color="C2", ls=":", label=f"95% liquid rejection {thr:.2f}")
        ax.set_xlabel(f"confidence (max logit) after {step} steps")
        ax.set_ylabel("fraction of atoms")
        ax.legend(fontsize=7)
    save(fig, path)
