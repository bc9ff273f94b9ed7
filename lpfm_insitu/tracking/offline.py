"""The offline twin of in-situ tracking: ``lpfm track DUMP`` writes the same HDF5 time series.

Users can then compare what the run reported while it went on with a post-hoc analysis
of its dumps: the same tracker (``PhaseTracker``), statistics, trigger rules and file
format. Offline there is no simulation to restart, so a fired trigger is recorded in the
time series like in situ (step, rules, files) and, with ``--write-frames``, the frame
is written with its labels as extxyz next to the output
(``<output stem>.checkpoint.<step>.extxyz``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LPFMError
from ..progress import progress
from .options import AXES, TrackingOptions
from .tracker import PhaseTracker, TrackedFrame


def track_frames(model, frames, output: str | Path, *, denoise_steps: int = 0,
                 candidates=None, nn_distance: float | None = None, timestep: float = 1.0,
                 profile_axis: str | None = None, profile_bins: int = 20,
                 attrs: dict | None = None, quiet: bool = True, triggers: str | None = None,
                 cooldown: int = 0, max_checkpoints: int | None = None,
                 write_frames: bool = False) -> Path:
    """Classify each frame and append its global statistics (and profile) to ``output``.

    ``timestep`` is the time per MD step in ps (the time axis); ``quiet=False`` shows a
    progress bar on stderr. ``triggers``, ``cooldown`` and ``max_checkpoints`` are the
    rules of in-situ tracking; ``write_frames`` writes each triggering frame as extxyz.
    """
    if profile_axis is not None and profile_axis not in AXES:
        raise LPFMError(f"profile axis {profile_axis!r} must be one of x, y, z")
    output = Path(output)
    base = {"model": str(model.metadata.get("path", "")),
            "model_name": str(model.metadata.get("name", "")),
            "denoise_steps": denoise_steps, "source": "offline", "time_unit": "ps"}
    options = TrackingOptions(h5=str(output), profile_axis=profile_axis,
                              profile_bins=profile_bins, profile_range="box",
                              triggers=triggers, cooldown=cooldown,
                              max_checkpoints=max_checkpoints, snapshot_dir=str(output.parent),
                              attrs=attrs, verbose=False)
    results: dict[int, tuple] = {}

    def write_frame(frame, event) -> list[str]:
        if not write_frames:
            return []
        from ..cli.labelled_files import write_extxyz

        path = output.with_name(f"{output.stem}.checkpoint.{event.step}.extxyz")
        write_extxyz(path, *results[event.step])
        return [str(path)]

    try:
        # the tracking options describe a file only where triggers were asked for, so
        # a plain `lpfm track` file keeps the attributes of earlier versions
        tracker = PhaseTracker(model.phases, options, attributes=base, checkpoint=write_frame,
                               describe_options=bool(triggers))
    except ValueError as exc:  # a bad rule or option: one line from `lpfm`
        if isinstance(exc, LPFMError):
            raise
        raise LPFMError(f"lpfm track: {exc}") from None
    try:
        bar = progress(frames, desc="track", unit="frame", enabled=not quiet)
        for k, atoms in enumerate(bar):
            result = model.classify_atoms(atoms, denoise_steps=denoise_steps,
                                          candidates=candidates, nn_distance=nn_distance)
            step = int(atoms.info.get("timestep", k))
            box_lo = np.asarray(atoms.get_celldisp(), dtype=np.float64).reshape(3)
            results = {step: ([atoms], [result])}
            tracker(TrackedFrame(step=step, time=step * timestep, labels=result.labels,
                                 confidence=result.confidence, ops=result.logits,
                                 positions=atoms.positions, box_lo=box_lo,
                                 box_hi=box_lo + np.diag(np.asarray(atoms.cell))))
    finally:
        tracker.close()
    return output
