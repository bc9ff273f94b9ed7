"""The offline twin of in-situ tracking: ``lpfm track DUMP`` writes the same HDF5 time series.

Users can then compare what the run reported while it went on with a post-hoc analysis
of its dumps, using the same statistics code and file format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LPFMError
from ..progress import progress
from .statistics import profile_edges, reduce_phase_statistics, spatial_profile
from .timeseries import PhaseTimeSeries

AXES = {"x": 0, "y": 1, "z": 2}


def track_frames(model, frames, output: str | Path, *, denoise_steps: int = 0,
                 candidates=None, nn_distance: float | None = None, timestep: float = 1.0,
                 profile_axis: str | None = None, profile_bins: int = 20,
                 attrs: dict | None = None, quiet: bool = True) -> Path:
    """Classify each frame and append its global statistics (and profile) to ``output``.

    ``timestep`` is the time per MD step in ps (the time axis); ``quiet=False`` shows a
    progress bar on stderr.
    """
    if profile_axis is not None and profile_axis not in AXES:
        raise LPFMError(f"profile axis {profile_axis!r} must be one of x, y, z")
    attrs = {"model": str(model.metadata.get("path", "")),
             "model_name": str(model.metadata.get("name", "")),
             "denoise_steps": denoise_steps, "source": "offline", "time_unit": "ps",
             **(attrs or {})}
    with PhaseTimeSeries.open(str(output), model.phases, attrs,
                              profile_bins=profile_bins if profile_axis else None) as series:
        bar = progress(frames, desc="track", unit="frame", enabled=not quiet)
        for k, atoms in enumerate(bar):
            result = model.classify_atoms(atoms, denoise_steps=denoise_steps,
                                          candidates=candidates, nn_distance=nn_distance)
            stats = reduce_phase_statistics(result.labels, result.confidence, result.logits,
                                            model.phases)
            step = int(atoms.info.get("timestep", k))
            profile = edges = None
            if profile_axis:
                axis = AXES[profile_axis]
                lo = float(np.asarray(atoms.get_celldisp()).reshape(3)[axis])
                hi = lo + float(np.asarray(atoms.cell)[axis, axis])
                profile = spatial_profile(result.labels, atoms.positions[:, axis],
                                          len(model.phases), lo, hi, profile_bins)
                edges = profile_edges(lo, hi, profile_bins)
            series.append(step, step * timestep, stats, profile=profile, profile_edges=edges)
    return Path(output)

