"""The run of one classification: score-ascent denoising steps, then the labels.

Each step evaluates the network, moves every owned atom up the summed log-density (the
score, ghost contributions summed into their owners by the halo) by ``step_size``, at
most ``max_step`` in model units, and spreads the new positions to the ghost copies.
Labels, confidence and OPs are read after the last step, with the decision prior and
unknown threshold of the number of steps taken.
"""

from __future__ import annotations

import numpy as np

from .local_scale import LocalScale
from .neighbourhood import reusing_search
from .results import PhaseResult


def denoise_and_label(model, positions, scales: LocalScale, n_owned, graph_of, halo,
                      denoise_steps, candidates, keep_history, max_atoms_per_chunk=None,
                      tolerance=None) -> PhaseResult:
    """``denoise_steps`` steps of ``model`` on ``positions`` (input units; the first
    ``n_owned`` rows owned), then its answers; ``tolerance`` (input units) stops early
    once no atom moved further in a step. Collective on a subdomain."""
    cand = model.candidate_indices(candidates)
    if denoise_steps < 0:
        raise ValueError(f"denoise_steps must be >= 0, got {denoise_steps}")
    atom_scale = scales.scale
    own_scale = atom_scale[:n_owned, None]
    current = positions.copy()
    graph_of = reusing_search(scales, current, graph_of)
    history = []
    converged = False
    for step in range(denoise_steps + 1):
        need_gradient = step < denoise_steps and not converged
        logits, gradient = model.evaluate(
            current, n_owned, graph_of, cand, halo, need_gradient=need_gradient,
            average=keep_history or not need_gradient,  # labels are read from these
            max_atoms_per_chunk=max_atoms_per_chunk, atom_scale=atom_scale)
        logits = logits + model.decision_prior(cand, step)  # a decision prior, after the score
        if keep_history:
            history.append({"step": step,
                            "labels": model.decide(logits, cand, step, scales)[0],
                            "logits": logits})
        if need_gradient:
            # the gradient is d log p / d r in input units; a step is taken in model units
            score = halo.reverse(gradient) / own_scale
            move = model.step_size * score
            norm = np.linalg.norm(move, axis=1, keepdims=True)
            move *= np.minimum(1.0, model.max_step / np.maximum(norm, 1e-12))
            move /= own_scale
            if tolerance is not None and len(move):
                converged = float(np.linalg.norm(move, axis=1).max()) < tolerance
            current = current + halo.forward(move)
        else:
            break
    labels, confidence, probability = model.decide(logits, cand, step, scales)
    displacement = current[:n_owned] - positions[:n_owned]
    return PhaseResult(model.phases, labels, confidence, probability, logits, displacement,
                       history, denoise_steps_done=step,
                       length_scale=atom_scale[:n_owned].copy(),
                       at_surface=scales.at_surface[:n_owned].copy())
