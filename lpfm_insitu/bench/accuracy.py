"""Accuracy near melting in one table: LPFM after 0, 1 and 8 denoising steps against PTM
(with and without its RMSD cutoff) and adaptive CNA, on LAMMPS snapshots, plus the
fraction of liquid atoms each method leaves unclassified.

The snapshots and the scoring are those of ``lpfm eval`` (``evaluation.md_eval``); this
module only runs them and lays the figures out side by side.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import LPFMError
from ..evaluation.md_eval import run_md
from ..evaluation.md_snapshots import DEFAULT_CACHE

COLUMNS = (  # (column title, how to read it from an md_eval system entry)
    ("LPFM step 0", ("lpfm", "0", "model_threshold")),
    ("LPFM step 1", ("lpfm", "1", "model_threshold")),
    ("LPFM step 8", ("lpfm", "8", "model_threshold")),
    ("LPFM step 8, candidates", ("lpfm_candidates", "8", "model_threshold")),
    ("PTM no cutoff", ("baselines", "ptm_nocut", "value")),
    ("PTM cutoff 0.1", ("baselines", "ptm_0.1", "value")),
    ("a-CNA", ("baselines", "cna", "value")),
)


def _read(entry: dict, path) -> float | None:
    for key in path:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return float(entry)


def accuracy_table(md_section: dict) -> dict:
    """{system: {column: value}}: crystals give the accuracy, liquids the unknown fraction."""
    table = {}
    for name, entry in md_section["systems"].items():
        row = {title: _read(entry, path) for title, path in COLUMNS}
        row["kind"] = "liquid: fraction unknown" if entry["true_label"] is None else "crystal: accuracy"
        row["n_atoms"] = entry["n_atoms"]
        table[name] = row
    return table


def run_accuracy(model, cache=DEFAULT_CACHE, max_frames: int = 2, n_ranks: int = 2,
                 log=print) -> dict:
    section, _ = run_md(model, cache=cache, max_frames=max_frames, n_ranks=n_ranks, log=log)
    section.pop("confidence_histograms", None)
    return {"table": accuracy_table(section), "columns": [c for c, _ in COLUMNS],
            "model_threshold": section["model_threshold"],
            "model_step_thresholds": section.get("model_step_thresholds"),
            "max_frames": max_frames,
            "wall_s": section["wall_s"]}


def accuracy_from_eval(results_path: Path, model_path: Path) -> dict:
    """The section from an ``lpfm eval`` results.json, if it was made with this model file."""
    results = json.loads(Path(results_path).read_text())
    digest = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    evaluated = results.get("meta", {}).get("model", {}).get("sha256")
    if evaluated != digest:
        raise LPFMError(f"{results_path} evaluated another model file (sha256 {evaluated}, "
                         f"this one {digest}): rerun `lpfm eval` or drop --eval-results")
    md = results["md"]
    return {"table": accuracy_table(md), "columns": [c for c, _ in COLUMNS],
            "model_threshold": md["model_threshold"],
            "model_step_thresholds": md.get("model_step_thresholds"),
            "max_frames": md.get("max_frames"),
            "wall_s": md.get("wall_s"), "from": str(results_path)}
