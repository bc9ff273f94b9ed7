"""Calibrating a model: the unknown thresholds, the phase prior and the denoising step.

No prototype describes a liquid, so the threshold below which an atom is labelled
``unknown`` is the confidence that marks the requested fraction of a liquid's atoms
unknown (:func:`step_thresholds_on_liquid`, the one place that rule is applied to a
model). Right after training the liquid is a dense disordered packing (random positions
pushed apart by a soft repulsion: liquid-like first-neighbour distances with no
crystalline order); ``lpfm calibrate`` then uses LAMMPS liquids, and chooses the phase
prior and the denoising step size. Every structure is passed in: this module runs no MD.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..model.graph import periodic_graph
from ..model.inference import REFERENCE_ATOMIC_VOLUME, REFERENCE_NN_DISTANCE
from ..progress import progress
from .prototypes import (BCC, DIAMOND, FCC, FE_CANDIDATES, HCP, METAL_CANDIDATES,
                         common_name)


def disordered_packing(n_atoms: int, rng: np.random.Generator,
                       atomic_volume: float = REFERENCE_ATOMIC_VOLUME,
                       min_distance_fraction: float = 0.85, iterations: int = 200) -> Atoms:
    """A periodic, dense, disordered packing at the given density."""
    side = (n_atoms * atomic_volume) ** (1.0 / 3.0)
    cell = np.eye(3) * side
    positions = rng.uniform(0, side, size=(n_atoms, 3))
    d0 = min_distance_fraction * REFERENCE_NN_DISTANCE * (atomic_volume / REFERENCE_ATOMIC_VOLUME) ** (1 / 3)
    for _ in range(iterations):
        graph = periodic_graph(positions, cell, True, d0)
        if graph.n_edges == 0:
            break
        i, j = graph.edge_index
        vec = positions[j] - positions[i] + graph.shifts
        dist = np.linalg.norm(vec, axis=1, keepdims=True)
        push = 0.25 * (d0 - dist) * vec / np.maximum(dist, 1e-9)
        move = np.zeros_like(positions)
        np.add.at(move, i, -push)
        positions = (positions + move) % side
    return Atoms(f"Cu{n_atoms}", positions=positions, cell=cell, pbc=True)


def calibrate_threshold(model, quantile: float = 0.95, *, n_structures: int = 4,
                        n_atoms: int = 250, seed: int = 0, denoise_steps: int = 0) -> float:
    """The threshold that marks ``quantile`` of disordered-packing atoms unknown (the
    threshold a model gets at the end of training, before ``lpfm calibrate``)."""
    rng = np.random.default_rng([seed, 7919])
    packings = [disordered_packing(n_atoms, rng) for _ in range(n_structures)]
    return step_thresholds_on_liquid(model, packings, steps=(denoise_steps,),
                                     quantile=quantile)[denoise_steps]


def rejection_threshold(confidences, quantile: float) -> float:
    """Smallest threshold that puts at least ``quantile`` of these atoms below it.

    Atoms with ``confidence < threshold`` are labelled unknown, so the returned value is
    just above the ``ceil(quantile * n)``-th smallest confidence.
    """
    values = np.sort(np.concatenate([np.ravel(c) for c in np.atleast_1d(confidences)])
                     if isinstance(confidences, (list, tuple)) else np.ravel(confidences))
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    if values.size == 0:
        raise ValueError("no confidences to calibrate on")
    k = int(np.ceil(quantile * values.size - 1e-9))
    return float(np.nextafter(values[max(k, 1) - 1], np.inf))


# --- after training: denoising step size and per-step thresholds ------------------------

STEP_SIZE_GRID = ((0.002, 0.05), (0.005, 0.05), (0.01, 0.05), (0.01, 0.06), (0.01, 0.075),
                  (0.01, 0.1), (0.02, 0.1), (0.02, 0.2), (0.05, 0.2))  # (step_size Å^2, max_step Å), model units
VALIDATION_SIGMAS = (0.05, 0.15, 0.25)


def validation_structures(model, sigmas=VALIDATION_SIGMAS, target_atoms: int = 120,
                          seed: int = 31337):
    """One noisy supercell per (phase, sigma); a seed used neither in training nor in eval."""
    from .synthetic import add_noise, ideal_supercell

    rng = np.random.default_rng(seed)
    out = []
    for label in model.phases:
        ideal = ideal_supercell(label, REFERENCE_ATOMIC_VOLUME, target_atoms)
        for sigma in sigmas:
            atoms = ideal.copy()
            atoms.positions, _ = add_noise(ideal.positions, sigma, rng)
            out.append((label, atoms))
    return out


#: The lattices nearly every element crystallises in at ambient conditions (and the ones
#: PTM and CNA know): the phase prior leaves them at 0 and lowers every other prototype.
COMMON_PHASES = (FCC, BCC, HCP, DIAMOND)
PRIOR_STRENGTHS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def prior_of_strength(phases, strength: float, common=COMMON_PHASES) -> dict[str, float]:
    """The log prior that puts every phase outside ``common`` ``strength`` below them."""
    return {p: -float(strength) for p in phases if p not in common and strength}


def tune_phase_prior(model, hot_crystals, structures=None, strengths=PRIOR_STRENGTHS,
                     common=COMMON_PHASES, hot_target: float = 0.995, log=print) -> dict:
    """Choose the phase prior's strength, without denoising, and set it on ``model``.

    ``hot_crystals`` are ``(label, atoms)`` pairs of MD snapshots near melting (what the
    model meets in situ); ``structures`` are noisy synthetic supercells of every phase
    (what keeps the rare prototypes recognisable). Hot crystals come first: among the
    strengths that label at least ``hot_target`` of the atoms of *every* hot crystal
    right (or as near its best as ``_choose_strength`` allows), the one with the best
    synthetic accuracy wins; if none gets there, the one with the best worst crystal.
    (An average of the two accuracies let a weak prior win
    that left a hot FCC crystal at 95%, paying for a few points on rare prototypes.)
    """
    structures = structures or validation_structures(model)
    phases = list(model.phases)
    hot_crystals = _known_hot_crystals(hot_crystals, phases)
    model.log_prior = {}

    def raw(pairs):
        return [(phases.index(label), model.classify_atoms(atoms).logits)
                for label, atoms in pairs]

    hot, synthetic = raw(hot_crystals), raw(structures)
    scores, best = _choose_strength(model, hot, synthetic, strengths, common, hot_target,
                                    "no denoising", log)
    model.log_prior = prior_of_strength(phases, best["strength"], common)
    return {"candidates": scores, "chosen": best, "common_phases": list(common),
            "hot_target": hot_target, "n_hot_crystals": len(hot),
            "n_structures": len(synthetic)}


def _known_hot_crystals(hot_crystals, phases):
    known = [(label, atoms) for label, atoms in hot_crystals if label in phases]
    if not known:
        raise ValueError("none of the hot crystals is of a phase this model knows "
                         f"({phases}); give the prior strength instead (--prior-strength)")
    return known


def _accuracies(pairs, shift) -> list[float]:
    return [float(np.mean(np.argmax(logits + shift, axis=1) == truth))
            for truth, logits in pairs]


#: a hot crystal that no prior strength brings to the target is served by any strength
#: within this much of the best accuracy a strength gives it
HOT_SLACK = 0.005


def _choose_strength(model, hot, synthetic, strengths, common, hot_target, when, log):
    """Hot crystals first: among the strengths that serve *every* hot crystal, the best
    synthetic accuracy; if none does, the best worst crystal. A strength serves a crystal
    that it labels at least ``hot_target`` right, or within ``HOT_SLACK`` of the best any
    strength gives it (a beta-phase BCC crystal reaches 97.8% and no more: asking for
    its last 0.05 points would choose the strongest prior, which costs the rare
    prototypes most). ``hot`` and ``synthetic`` are (label index, prior-free logits).
    """
    scores = []
    for strength in strengths:
        shift = model.log_prior_vector(prior_of_strength(model.phases, strength, common))
        hot_each = _accuracies(hot, shift)
        syn_acc = float(np.mean(_accuracies(synthetic, shift)))
        scores.append({"strength": float(strength), "hot_crystals": float(np.mean(hot_each)),
                       "worst_hot_crystal": min(hot_each), "each_hot_crystal": hot_each,
                       "synthetic": syn_acc})
        log(f"  prior strength {strength:g}: hot crystals {100 * np.mean(hot_each):.2f}% "
            f"(worst {100 * min(hot_each):.2f}%), synthetic {100 * syn_acc:.2f}% ({when})")
    best_each = np.max([s["each_hot_crystal"] for s in scores], axis=0)
    needed = np.minimum(hot_target, best_each - HOT_SLACK)
    eligible = [s for s in scores if np.all(np.array(s["each_hot_crystal"]) >= needed)]
    if eligible:
        # equal synthetic accuracy (after 8 steps every strength up to 3 ties): the hot
        # crystals decide, then the weakest prior (max keeps the first of equals)
        return scores, max(eligible, key=lambda s: (s["synthetic"], s["worst_hot_crystal"],
                                                    s["hot_crystals"]))
    return scores, max(scores, key=lambda s: (s["worst_hot_crystal"], s["synthetic"]))


def ideal_structures(model, target_atoms: int = 120):
    """Every phase of ``model`` as an ideal supercell: denoising must leave these alone."""
    from .synthetic import ideal_supercell

    return [(label, ideal_supercell(label, REFERENCE_ATOMIC_VOLUME, target_atoms))
            for label in model.phases]


def _choose_step(scores, hot_target: float, ideal_target: float) -> dict:
    """The best validation accuracy among the step sizes that keep every ideal crystal
    (and, with hot crystals, label each of them to ``hot_target``); the hot crystals
    come first when no step size does both, the ideal ones next."""
    hot_ok = [s for s in scores if s.get("worst_hot_crystal", 1.0) >= hot_target]
    both = [s for s in hot_ok if s["worst_ideal_crystal"] >= ideal_target]
    if both:
        return max(both, key=lambda s: s["accuracy"])
    if hot_ok:
        return max(hot_ok, key=lambda s: (s["worst_ideal_crystal"], s["accuracy"]))
    return max(scores, key=lambda s: (s.get("worst_hot_crystal", 1.0),
                                      s["worst_ideal_crystal"], s["accuracy"]))


def tune_step_size(model, grid=STEP_SIZE_GRID, denoise_steps: int = 8, structures=None,
                   hot_crystals=None, steps=(1, 2, 4, 8), strengths=PRIOR_STRENGTHS,
                   common=COMMON_PHASES, hot_target: float = 0.995, ideal=None,
                   ideal_target: float = 0.995, log=print) -> dict:
    """Pick the (step_size, max_step) with the best validation accuracy after the steps.

    Without ``hot_crystals`` the model's prior is kept and validation accuracy decides.
    With them, a prior strength is chosen for each run length in ``steps`` as
    :func:`tune_phase_prior` chooses the undenoised one (hot crystals first), and the
    step size must let the ``denoise_steps``-step prior label every hot crystal to
    ``hot_target``. Either way the step size must also leave every ideal crystal
    (``ideal``, default :func:`ideal_structures`) labelled right on ``ideal_target`` of
    its atoms: a step too long walks a lattice with a free internal coordinate (A7
    alpha-As, alpha-U) into a neighbouring one even from its ideal sites, while a step
    too short leaves a near-melting FCC crystal half-denoised, reading as bct In.
    Among the step sizes that pass, the best validation accuracy wins (see
    :func:`_choose_step` when none passes). Sets the step size (and the per-step priors)
    on ``model`` and returns every candidate's figures.
    """
    structures = structures or validation_structures(model)
    ideal = ideal or ideal_structures(model)
    phases = list(model.phases)
    steps = tuple(k for k in steps if 0 < k <= denoise_steps)
    if hot_crystals is not None:
        hot_crystals = _known_hot_crystals(hot_crystals, phases)
        if denoise_steps not in steps:
            raise ValueError(f"steps {steps} must include denoise_steps={denoise_steps}")
    base_prior, base_step_priors = model.log_prior, model.step_log_priors
    fixed_shift = model.log_prior_for(denoise_steps)
    model.log_prior = {}  # prior-free logits from the runs; priors are applied below

    def histories(pairs):
        runs = []
        for label, atoms in pairs:
            result = model.classify_atoms(atoms, denoise_steps=denoise_steps,
                                          keep_history=True)
            runs.append((phases.index(label), {r["step"]: r["logits"] for r in result.history}))
        return runs

    def at(runs, k):
        return [(truth, logits[k]) for truth, logits in runs]

    scores = []
    try:
        for step_size, max_step in progress(grid, desc="step sizes"):
            model.step_size, model.max_step = step_size, max_step
            synthetic = histories(structures)
            ideal_runs = at(histories(ideal), denoise_steps)
            score = {"step_size": step_size, "max_step": max_step}
            if hot_crystals is None:
                score["accuracy"] = float(np.mean(
                    _accuracies(at(synthetic, denoise_steps), fixed_shift)))
                score["worst_ideal_crystal"] = min(_accuracies(ideal_runs, fixed_shift))
            else:
                hot = histories(hot_crystals)
                chosen = {k: _choose_strength(model, at(hot, k), at(synthetic, k), strengths,
                                              common, hot_target, f"{k} steps",
                                              lambda *_: None)[1] for k in steps}
                final = chosen[denoise_steps]
                final_shift = model.log_prior_vector(
                    prior_of_strength(phases, final["strength"], common))
                score.update(accuracy=final["synthetic"],
                             worst_hot_crystal=final["worst_hot_crystal"],
                             worst_ideal_crystal=min(_accuracies(ideal_runs, final_shift)),
                             prior_strengths={str(k): c["strength"] for k, c in chosen.items()})
            scores.append(score)
            log(f"  step size {step_size:g} Å^2, cap {max_step:g} Å: validation accuracy after "
                f"{denoise_steps} steps {100 * score['accuracy']:.2f}%, worst ideal crystal "
                f"{100 * score['worst_ideal_crystal']:.1f}%"
                + ("" if hot_crystals is None else
                   f", worst hot crystal {100 * score['worst_hot_crystal']:.2f}% (prior "
                   f"strengths by steps {score['prior_strengths']})"))
    finally:
        model.log_prior, model.step_log_priors = base_prior, base_step_priors
    best = _choose_step(scores, hot_target, ideal_target)
    if hot_crystals is not None:
        model.step_log_priors = {int(k): prior_of_strength(phases, strength, common)
                                 for k, strength in best["prior_strengths"].items()}
    model.step_size, model.max_step = best["step_size"], best["max_step"]
    return {"candidates": scores, "chosen": best, "denoise_steps": denoise_steps,
            "n_structures": len(structures), "n_ideal_crystals": len(ideal),
            "n_hot_crystals": 0 if hot_crystals is None else len(hot_crystals)}


def step_thresholds_on_liquid(model, liquid_frames, steps=(0, 1, 2, 4, 8),
                              quantile: float = 0.95,
                              candidates=None) -> dict[int, float]:
    """Per denoising-step thresholds that leave ``quantile`` of a liquid's atoms unknown.

    ``liquid_frames``: ``ase.Atoms`` of one liquid (e.g. several MD frames). The
    confidence is the largest logit over ``candidates`` (default: every phase), as
    ``classify_atoms`` reads it with those candidates.
    """
    columns = model.candidate_indices(candidates)
    confidences = {k: [] for k in steps}
    for atoms in progress(liquid_frames, desc="liquid frames"):
        result = model.classify_atoms(atoms, denoise_steps=max(steps), keep_history=True,
                                      candidates=candidates)
        for record in result.history:
            if record["step"] in confidences:
                confidences[record["step"]].append(np.max(record["logits"][:, columns], axis=1))
    return {k: rejection_threshold(confidences[k], quantile) for k in steps}


def step_thresholds_on_liquids(model, liquids, steps=(0, 1, 2, 4, 8),
                               quantile: float = 0.95) -> dict[int, float]:
    """Per-step thresholds that leave ``quantile`` of *each* liquid's atoms unknown.

    ``liquids`` is a list of frame lists, one per liquid. Liquids of different elements
    reach different confidences; the largest of their thresholds holds for all of them,
    and so carries better to a liquid none of them is.
    """
    if not liquids:
        raise ValueError("no liquid to calibrate the unknown thresholds on")
    per_liquid = [step_thresholds_on_liquid(model, frames, steps, quantile) for frames in liquids]
    return {k: max(t[k] for t in per_liquid) for k in steps}


def set_liquid_thresholds(model, liquids, quantile: float, source, log=print) -> dict:
    """Set ``model``'s per-step unknown thresholds from ``liquids`` (one frame list per
    liquid, described by ``source``); the record of what was done."""
    thresholds = step_thresholds_on_liquids(model, liquids, quantile=quantile)
    model.step_thresholds = thresholds
    model.confidence_threshold = thresholds[0]
    log("  unknown thresholds by denoising steps: "
        + ", ".join(f"{k}: {v:.3f}" for k, v in thresholds.items()))
    return {"liquid": list(source), "quantile": quantile,
            "per_step": {str(k): v for k, v in thresholds.items()}}


# --- per-lattice thresholds: what one threshold for every phase cannot do -----------------

#: Fraction of a hot crystal's atoms that raising its own lattice's threshold may cost.
HOT_LOSS = 0.002
#: How far (logit units) above a liquid's most confident atom a threshold that rejects it
#: sits: a run of k steps and the k-th step of a longer run differ by ~1e-5 in float32
#: (threaded reductions in a different order), far below any spread between atoms.
REJECTION_MARGIN = 1e-3


def confidences_by_step(model, atoms, steps) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{k: (argmax phase index, confidence)}`` after k denoising steps, for the atoms
    of ``atoms`` not at a free surface (those are unknown whatever their logits)."""
    result = model.classify_atoms(atoms, denoise_steps=max(steps), keep_history=True)
    inside = ~result.at_surface
    out = {}
    for record in result.history:
        if record["step"] in steps:
            logits = record["logits"][inside]
            best = np.argmax(logits, axis=1)
            out[record["step"]] = (best, logits[np.arange(len(best)), best])
    return out


def affordable_threshold(confidences: np.ndarray, n_atoms: int, loss: float) -> float:
    """The largest threshold below which at most ``loss`` of ``n_atoms`` atoms fall, of
    these ``confidences`` (those of a crystal's correctly labelled atoms)."""
    values = np.sort(np.ravel(confidences))
    allowed = int(np.floor(loss * n_atoms + 1e-9))
    return float(values[allowed]) if allowed < values.size else float(np.inf)


def lattice_thresholds(model, liquids, crystals, steps=(0, 1, 2, 4, 8),
                       hot_loss: float = HOT_LOSS, lowerable=(),
                       log=print) -> tuple[dict[int, dict[str, float]], dict]:
    """Per-step thresholds of single phases, set apart from the model's shared ones.

    One threshold for every phase must let through the hottest crystal of the least
    confident phase, and a liquid near its melting point puts a few atoms above it,
    nearly all under one or two phases' labels (measured in Cu coexisting with its
    crystal: hcp before denoising, gamma-Pu after 8 steps). So each phase that has a
    crystal in ``crystals`` ((label, atoms) pairs: hot MD crystals, noisy synthetic
    ones) gets its own threshold after k steps: high enough to reject every atom of
    ``liquids`` (one frame list per liquid) that it would label that phase, but no
    higher than costs each of its crystals ``hot_loss`` of its atoms. A phase in
    ``lowerable`` (those with hot MD crystals) whose crystal loses more than
    ``hot_loss`` at the shared threshold gets a lower one instead: down to what costs
    its crystals ``hot_loss``, but never past a liquid atom it would label, so the
    liquids stay as rejected as at the shared threshold (measured: no liquid atom is
    labelled bcc above 2.87 at step 0, where the shared threshold is 3.06 and costs hot
    BCC Zr 16% of its atoms). Returns ``{k: {phase: threshold}}`` for
    ``PhaseModel.phase_thresholds`` (every step, the phases set apart) and the figures
    behind each.
    """
    steps = tuple(sorted(steps))
    phases = list(model.phases)
    liquid = {k: [] for k in steps}
    for frames in liquids:
        for atoms in progress(frames, desc="liquid frames"):
            for k, pair in confidences_by_step(model, atoms, steps).items():
                liquid[k].append(pair)
    caps = {k: {} for k in steps}  # the highest threshold each phase's crystals afford
    for label, atoms in progress(crystals, desc="crystals"):
        if label not in phases:
            continue
        truth = phases.index(label)
        for k, (best, confidence) in confidences_by_step(model, atoms, steps).items():
            cap = affordable_threshold(confidence[best == truth], len(best), hot_loss)
            caps[k][label] = min(cap, caps[k].get(label, np.inf))
    # an entry for every step, empty or not: a run of k steps reads the entry of the most
    # steps not above k, which must not be an earlier step's lowered one
    thresholds, record = {k: {} for k in steps}, {}
    for k in steps:
        shared = model.threshold_for(k)
        best = np.concatenate([b for b, _ in liquid[k]]) if liquid[k] else np.zeros(0, int)
        confidence = np.concatenate([c for _, c in liquid[k]]) if liquid[k] else np.zeros(0)
        for label in sorted(caps[k], key=phases.index):
            cap = caps[k][label]
            labelled = confidence[best == phases.index(label)]
            needed = float(labelled.max()) + REJECTION_MARGIN if labelled.size else -np.inf
            if cap < shared and label in lowerable:
                chosen = min(shared, max(cap, needed))
            else:
                chosen = max(shared, min(cap, needed))
            record.setdefault(str(k), {})[label] = {
                "shared": shared, "crystal_cap": cap, "liquid_needs": needed,
                "liquid_atoms_labelled": int(labelled.size),
                "liquid_atoms_above_shared": int(np.sum(labelled >= shared)),
                "liquid_atoms_above_chosen": int(np.sum(labelled >= chosen))}
            if chosen != shared:
                thresholds[k][label] = chosen
        log(f"  after {k} steps: shared threshold {shared:.3f}; set apart: "
            + (", ".join(f"{common_name(lbl)} {v:.3f}" for lbl, v in
                         thresholds[k].items()) or "none"))
    return thresholds, {"hot_loss": hot_loss, "by_step": record}


#: noise of the synthetic crystals that bound the thresholds of phases no hot crystal has
#: (the evaluation's headline noise)
SYNTHETIC_CAP_SIGMA = 0.15


def set_phase_thresholds(model, liquids, hot_crystals, hot_loss: float = HOT_LOSS,
                         log=print) -> dict:
    """Set ``model``'s per-phase thresholds (:func:`lattice_thresholds`) over the shared
    ones already set: each phase bounded by its hot crystals (``(label, atoms)``), or by
    a noisy synthetic crystal where it has none; the record of what was done."""
    hot = _known_hot_crystals(hot_crystals, list(model.phases))
    covered = {label for label, _ in hot}
    synthetic = [(label, atoms) for label, atoms in
                 validation_structures(model, sigmas=(SYNTHETIC_CAP_SIGMA,))
                 if label not in covered]
    model.phase_thresholds = {}
    # only a real hot crystal may lower a threshold: a noisy synthetic one is no
    # evidence of what a phase's hot atoms look like
    thresholds, record = lattice_thresholds(model, liquids, hot + synthetic,
                                            hot_loss=hot_loss, lowerable=covered, log=log)
    model.phase_thresholds = thresholds
    return {**record, "synthetic_sigma": SYNTHETIC_CAP_SIGMA,
            "per_step": {str(k): v for k, v in thresholds.items()}}


# --- candidate margins: compressed crystals below the threshold ---------------------------

#: The examples' candidate sets, calibrated by default.
EXAMPLE_CANDIDATE_SETS = (METAL_CANDIDATES, FE_CANDIDATES)
#: Fraction of each liquid's atoms whose lead over the next candidate stays below the
#: margin, so that the margin relabels at most the rest of them.
MARGIN_QUANTILE = 0.99


def leads_over_runner_up(logits: np.ndarray) -> np.ndarray:
    """Each row's largest value minus its second largest."""
    top_two = np.partition(logits, -2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def candidate_margins_on_liquids(model, liquids, candidate_sets=(METAL_CANDIDATES,),
                                 steps=(0, 1, 2, 4, 8), quantile: float = MARGIN_QUANTILE
                                 ) -> dict[tuple[str, ...], dict[int, float]]:
    """Per candidate set and step, the lead of an atom's label over the next candidate
    that ``quantile`` of *each* liquid's atoms stay below (the largest over the liquids,
    as for the thresholds), for ``PhaseModel.candidate_margins``.

    Over a few candidates a liquid's atom sits near several at once (its two best
    logits within 0.5 of each other on the median atom at step 0), where a crystal
    compressed out of the training range, equally unlike every prototype, still sits
    clearly nearer its own.
    """
    if not liquids:
        raise ValueError("no liquid to calibrate the candidate margins on")
    margins = {}
    for candidates in candidate_sets:
        columns = model.candidate_indices(list(candidates))
        per_liquid = []
        for frames in liquids:
            leads = {k: [] for k in steps}
            for atoms in progress(frames, desc="liquid frames"):
                result = model.classify_atoms(atoms, denoise_steps=max(steps),
                                              keep_history=True, candidates=list(candidates))
                for record in result.history:
                    if record["step"] in leads:
                        leads[record["step"]].append(
                            leads_over_runner_up(record["logits"][:, columns]))
            per_liquid.append({k: rejection_threshold(v, quantile) for k, v in leads.items()})
        names = tuple(sorted(model.phases[c] for c in columns))
        margins[names] = {k: max(m[k] for m in per_liquid) for k in steps}
    return margins


def set_candidate_margins(model, liquids, candidate_sets=(METAL_CANDIDATES,),
                          quantile: float = MARGIN_QUANTILE, log=print) -> dict:
    """Set ``model.candidate_margins`` (:func:`candidate_margins_on_liquids`); the record."""
    margins = candidate_margins_on_liquids(model, liquids, candidate_sets, quantile=quantile)
    model.candidate_margins = margins
    for names, by_step in margins.items():
        log(f"  candidate margins over {'/'.join(common_name(p) for p in names)}: "
            + ", ".join(f"{k} steps {v:.3f}" for k, v in by_step.items()))
    return {"quantile": quantile,
            "per_set": {",".join(names): {str(k): v for k, v in by_step.items()}
                        for names, by_step in margins.items()}}
