"""lpfm bench: the sections measure what they say, and the report shows it."""

import json
import math

import pytest

from lpfm_insitu.bench.accuracy import COLUMNS, accuracy_table
from lpfm_insitu.bench.report import write_report
from lpfm_insitu.bench.throughput import run_throughput, scaling_summary
from lpfm_insitu.cli.main import main


def test_throughput_rows_are_measured_in_fresh_processes():
    section = run_throughput("default", sizes=(256,), precisions=("fp32",),
                             tasks=("classify", "denoise_step"), threads=1, repeats=1,
                             compare_e3nn_at=256, profile_at=256, log=lambda *_: None)
    blocks = section["profile"]["us_per_atom"]
    assert blocks["whole forward"] > blocks["decoder"] > 0
    assert blocks["whole forward"] >= max(v for k, v in blocks.items() if k.startswith("mace."))
    assert sorted(r["convolution"] for r in section["rows"]) == ["e3nn", "e3nn", "fused", "fused"]
    rows = {r["task"]: r for r in section["rows"] if r["convolution"] == "fused"}
    assert set(rows) == {"classify", "denoise_step"}
    for row in rows.values():
        assert row["n_atoms"] == 256 and row["precision"] == "fp32"
        assert math.isfinite(row["us_per_atom"]) and row["us_per_atom"] > row["graph_us_per_atom"] > 0
        assert row["peak_kib_per_atom"] > 0
    # a denoising step is a forward pass plus its gradient, whose autograd graph it
    # holds (memory, not time: one timed call on a shared machine can go either way)
    assert rows["denoise_step"]["peak_kib_per_atom"] > rows["classify"]["peak_kib_per_atom"]


def test_scaling_summary_is_largest_over_smallest():
    rows = [{"precision": "fp32", "task": "classify", "n_atoms": n, "us_per_atom": t}
            for n, t in ((1000, 20.0), (100000, 30.0), (10000, 25.0))]
    assert scaling_summary({"rows": rows}) == {"fp32/classify": 1.5}


def _md_entry(true_label, step0, ptm):
    lpfm = {s: {"model_threshold": step0 + 0.1 * k} for k, s in enumerate(("0", "1", "8"))}
    return {"true_label": true_label, "n_atoms": 100, "lpfm": lpfm,
            "lpfm_candidates": {"8": {"model_threshold": 0.99}},
            "baselines": {"ptm_nocut": {"value": ptm}, "ptm_0.1": {"value": 0.5},
                          "cna": {"value": 0.6}}}


def test_accuracy_table_and_report(tmp_path):
    md = {"systems": {"Cu_fcc": _md_entry("A_cF4_225_a", 0.7, 0.97),
                      "Cu_liquid": _md_entry(None, 0.8, 0.15)}}
    table = accuracy_table(md)
    assert table["Cu_fcc"]["LPFM step 8"] == pytest.approx(0.9)
    assert table["Cu_liquid"]["PTM no cutoff"] == 0.15
    assert table["Cu_liquid"]["kind"].startswith("liquid")
    section = {"table": table, "columns": [c for c, _ in COLUMNS], "model_threshold": 3.0}
    text = write_report({"accuracy": section, "command": "lpfm bench"}, tmp_path).read_text()
    assert "| Cu_fcc | 70.0% | 80.0% | 90.0% | 99.0% | 97.0% | 50.0% | 60.0% |" in text


def test_unknown_section_is_named(tmp_path, capsys):
    assert main(["bench", "--sections", "speed", "--output", str(tmp_path)]) == 2
    assert "speed" in capsys.readouterr().err


def test_accuracy_from_eval_checks_the_model_file(tmp_path):
    from lpfm_insitu.bench.accuracy import accuracy_from_eval

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    import hashlib

    md = {"systems": {"Cu_fcc": _md_entry("A_cF4_225_a", 0.7, 0.97)}, "model_threshold": 3.0}
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"md": md, "meta": {"model": {
        "sha256": hashlib.sha256(b"weights").hexdigest()}}}))
    section = accuracy_from_eval(results, model)
    assert section["table"]["Cu_fcc"]["LPFM step 0"] == pytest.approx(0.7)
    model.write_bytes(b"other weights")
    with pytest.raises(ValueError, match="another model file"):
        accuracy_from_eval(results, model)
