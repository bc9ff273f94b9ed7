"""Evaluating a large subdomain in slabs of owned atoms: less memory, the same answers."""

from __future__ import annotations

import numpy as np

from .neighbourhood import scaled_graph


def evaluate_in_chunks(model, positions, n_owned, graph_of, cand, need_gradient, chunk,
                       atom_scale):
    """Slabs of owned atoms, each with every atom within the receptive field around it.

    Summing each slab's gradient gives the gradient of the whole sum, so chunking
    changes memory, not answers.
    """
    reach = model.receptive_field(float(atom_scale.min()))
    axis = int(np.argmax(np.ptp(positions[:n_owned], axis=0)))
    order = np.argsort(positions[:n_owned, axis], kind="stable")
    logits = np.zeros((n_owned, len(model.phases)))
    gradient = np.zeros_like(positions) if need_gradient else None
    for start in range(0, n_owned, chunk):
        owned = order[start:start + chunk]
        lo, hi = positions[owned, axis].min() - reach, positions[owned, axis].max() + reach
        near = np.flatnonzero((positions[:, axis] >= lo) & (positions[:, axis] <= hi))
        others = np.setdiff1d(near, owned, assume_unique=True)
        members = np.concatenate([owned, others])
        sub, sub_scale = positions[members], atom_scale[members]
        part_logits, part_grad = model.logits_and_gradient(
            sub, scaled_graph(sub, graph_of, sub_scale, model.cutoff), len(owned), cand,
            need_gradient, sub_scale)
        logits[owned] = part_logits
        if need_gradient:
            np.add.at(gradient, members, part_grad)
    return logits, gradient

