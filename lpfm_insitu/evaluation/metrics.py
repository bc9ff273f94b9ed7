"""Scoring helpers: labels from logits, confidence, accuracy and label fractions.

Labels are handled as strings (AFLOW labels, or ``UNKNOWN`` / another non-crystal name)
so that LPFM, PTM and CNA answers compare directly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

UNKNOWN = "unknown"


def labels_from_logits(logits: np.ndarray, phases: Sequence[str], threshold: float = -np.inf,
                       candidates: Sequence[str] | None = None,
                       margin: float | None = None) -> np.ndarray:
    """Per-atom label names: the core's decision (argmax over the candidates, ``unknown``
    below ``threshold`` unless the label leads the next candidate by ``margin``), named so
    that LPFM, PTM and CNA answers compare directly."""
    from ..model.inference import labels_from_logits as decide  # torch: not for re-rendering

    phases = list(phases)
    cand = None if candidates is None else np.array([phases.index(c) for c in candidates])
    indices, _, _ = decide(np.asarray(logits, dtype=float), cand, threshold, margin=margin)
    names = np.array(phases + [UNKNOWN], dtype=object)[indices]  # UNKNOWN_PHASE (-1): last
    return names.astype(str)


def confidence_of(logits: np.ndarray, phases: Sequence[str],
                  candidates: Sequence[str] | None = None) -> np.ndarray:
    """The model's confidence: the largest logit over the candidate phases."""
    logits = np.asarray(logits, dtype=float)
    if candidates is not None:
        logits = logits[:, [list(phases).index(c) for c in candidates]]
    return logits.max(axis=1)


def accuracy(predicted: Sequence[str], true_label: str | Sequence[str]) -> float:
    """Fraction of atoms whose predicted label equals the true one (unknown counts wrong)."""
    predicted = np.asarray(predicted, dtype=str)
    if predicted.size == 0:
        return float("nan")
    return float(np.mean(predicted == np.asarray(true_label, dtype=str)))


def crystalline_fraction(predicted: Sequence[str], crystal_labels: Sequence[str]) -> float:
    """Fraction of atoms given any crystalline prototype label (liquid: should be small)."""
    predicted = np.asarray(predicted, dtype=str)
    if predicted.size == 0:
        return float("nan")
    return float(np.isin(predicted, list(crystal_labels)).mean())


def label_breakdown(predicted: Sequence[str], top: int = 3) -> list[tuple[str, float]]:
    """The ``top`` most frequent labels with their fractions."""
    values, counts = np.unique(np.asarray(predicted, dtype=str), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    n = counts.sum()
    return [(str(values[k]), float(counts[k] / n)) for k in order]
