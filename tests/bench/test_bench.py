"""lpfm bench: the sections measure what they say, and the report shows it."""

import json
import math

import pytest

from lpfm_insitu.bench.accuracy import COLUMNS, accuracy_table
from lpfm_insitu.bench.report import write_report
from lpfm_insitu.bench.throughput import run_throughput, scaling_summary
from lpfm_insitu.cli.main import main


def test_throughput_rows_are_measured_in_fresh_processes():
    # 2,048 atoms: a call's own memory (~80 MB classifying) then outweighs the one-off
    # allocations of a process's first calls, which at 256 atoms (~10 MB) decided the
    # memory comparison below either way
    section = run_throughput("default", sizes=(2048,), precisions=("fp32",),
                             tasks=("classify", "denoise_step"), threads=1, repeats=1,
                             compare_e3nn_at=2048, profile_at=256, log=lambda *_: None)
    blocks = section["profile"]["us_per_atom"]
    assert blocks["whole forward"] > blocks["decoder"] > 0
    assert blocks["whole forward"] >= max(v for k, v in blocks.items() if k.startswith("mace."))
    assert sorted(r["convolution"] for r in section["rows"]) == ["e3nn", "e3nn", "fused", "fused"]
    rows = {r["task"]: r for r in section["rows"] if r["convolution"] == "fused"}
    assert set(rows) == {"classify", "denoise_step"}
    for row in rows.values():
        assert row["n_atoms"] == 2048 and row["precision"] == "fp32"
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


def test_parallel_section_gives_every_atom_the_single_rank_answer(tmp_path):
    """Really on 1 and 3 ranks (oversubscribed here): the same labels for every atom,
    order parameters to float rounding, CPU time of all ranks recorded, and the report
    shows the rows and the cost model fitted to them."""
    from lpfm_insitu.bench.parallel import parser, run_parallel

    section = run_parallel(parser().parse_args(
        ["--model", "fast", "--cells", "4", "--repeat", "1", "--ranks", "1", "2", "3",
         "--cost-cells", "4", "6"]))
    timing = section["timing"]
    for ranks in ("2", "3"):
        assert timing[ranks]["labels_equal"] == 1.0
        assert timing[ranks]["max_op_difference"] < 1e-3
        assert sum(timing[ranks]["n_local"]) == 256
        assert timing[ranks]["cpu_total"] > 0
    assert timing["1"]["n_ghost_used"] == [0]  # the periodic box: no ghosts evaluated
    # smaller subdomains evaluate more ghosts per owned atom
    assert sum(timing["3"]["n_ghost_used"]) > sum(timing["2"]["n_ghost_used"])
    text = write_report({"parallel": section, "command": "lpfm bench"}, tmp_path).read_text()
    assert "| 3 | " in text and "100.00% |" in text
    assert "**Cost model**" in text
    small, large = section["subdomain_costs"]
    assert small["ghosts"] / small["owned"] > large["ghosts"] / large["owned"]


def test_cost_model_recovers_the_per_atom_costs_it_was_given():
    from lpfm_insitu.bench.cost_model import cost_table, fit_costs, ghost_ratio

    def row(owned, ghosts):  # 2 us per owned atom, 0.5 per ghost
        return {"owned": owned, "ghosts": ghosts, "seconds": 1e-6 * (2.0 * owned + 0.5 * ghosts)}

    rows = [row(500, 3000), row(1372, 4800), row(4000, 7000)]
    costs = fit_costs(rows)
    assert costs["c_owned_us"] == pytest.approx(2.0)
    assert costs["c_ghost_us"] == pytest.approx(0.5)
    # a cube of side 10 with a shell of 1: (12^3 - 10^3) / 10^3 ghosts per owned atom
    assert ghost_ratio(1000, 1.0, 1.0) == pytest.approx(0.728)
    table = cost_table(costs, 11.8, 8.5)
    # more devices: fewer atoms each, relatively more ghosts, less time per invocation
    assert [r["cpu_node_s"] for r in table] == sorted((r["cpu_node_s"] for r in table),
                                                      reverse=True)
    assert table[0]["cpu_ghost_ratio"] < table[-1]["cpu_ghost_ratio"]
    assert fit_costs(rows[:1]) is None
