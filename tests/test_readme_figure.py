"""docs/readme_figure.py draws the README's picture from a demo folder, names and units right."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lpfm_insitu.tracking.statistics import PhaseStatistics
from lpfm_insitu.tracking.timeseries import PhaseTimeSeries

REPO = Path(__file__).resolve().parent.parent
PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_cF8_227_a")


def load_script():
    path = REPO / "docs" / "readme_figure.py"
    spec = importlib.util.spec_from_file_location("readme_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_demo(folder: Path) -> None:
    """A two-row time series (bcc turning hcp) and a dump whose last frame is step 200."""
    with PhaseTimeSeries.open(folder / "track.h5", PHASES, {"model_name": "lenient"}) as series:
        for step, counts in ((100, [0, 4, 0, 0, 0]), (200, [0, 2, 1, 0, 1])):
            series.append(step, step * 0.001, PhaseStatistics(PHASES, counts, 4, 5.0, np.zeros(4)))
        series.record_trigger(200, 0.2, "appear:A_hP2_194_c>0.05", [])
    frames = []
    for step, labels in ((100, [1, 1, 1, 1]), (200, [1, 1, 2, -1])):
        rows = "\n".join(f"{i + 1} 1 {1.4 * i:.3f} 5.0 {2.0 * i:.3f} {k}"
                         for i, k in enumerate(labels))
        frames.append(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n4\n"
                      "ITEM: BOX BOUNDS pp pp ss\n0 10\n0 10\n0 10\n"
                      f"ITEM: ATOMS id type x y z i_lpfm_phase\n{rows}\n")
    (folder / "shock.dump").write_text("".join(frames))


def test_figure_shows_the_last_frame_labels_and_fractions_under_common_names(tmp_path):
    pytest.importorskip("ovito")  # the script takes the OVITO modifier's names and colours
    write_demo(tmp_path)
    fig = load_script().draw(tmp_path, tmp_path / "picture.png")
    assert (tmp_path / "picture.png").stat().st_size > 10_000
    left, right = fig.axes
    assert left.get_title() == "labels written in situ at t = 0.2 ps (one atomic layer)"
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["bcc", "hcp", "unknown"]
    lines = {line.get_label(): line for line in right.get_lines()}
    assert {"bcc", "hcp", "unknown", "checkpoint"} <= set(lines)
    np.testing.assert_allclose(lines["hcp"].get_ydata(), [0.0, 0.25])
    np.testing.assert_allclose(lines["bcc"].get_xdata(), [0.1, 0.2])
    assert "(ps)" in right.get_xlabel() and "(Å)" in left.get_xlabel()
    assert right.get_title() == "phase fractions (model lenient)"
    colours = [tuple(c) for c in left.collections[0].get_facecolors()[:, :3].round(3)]
    assert len(set(colours)) == 3  # bcc, hcp and unknown atoms drawn in three colours
