"""OUTPUT/README.md and the figures, from the figures in results.json."""

from __future__ import annotations

from pathlib import Path

from ..evaluation.report import markdown_table, step_thresholds_text

TARGETS = {"classify": 30.0, "denoise_step": 60.0}  # us/atom, fp32, 2 threads, 10^4 atoms


def _fmt(value, digits=1, percent=False):
    if value is None:
        return "-"
    return f"{100 * value:.{digits}f}%" if percent else f"{value:.{digits}f}"


def _meta_line(section: dict) -> str:
    meta = section.get("meta", {})
    return (f"_Measured {meta.get('date', '?')} in {meta.get('wall_s', '?')} s; load average "
            f"before/after {meta.get('load_average_before')} / {meta.get('load_average_after')}; "
            f"`{meta.get('command', '')}`._")


def plot_throughput(section: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for precision in sorted({r["precision"] for r in section["rows"]}):
        for task, style in (("classify", "o-"), ("denoise_step", "s--")):
            rows = sorted((r for r in section["rows"] if r["precision"] == precision
                           and r["task"] == task and r.get("convolution", "fused") == "fused"),
                          key=lambda r: r["n_atoms"])
            if rows:
                ax.plot([r["n_atoms"] for r in rows], [r["us_per_atom"] for r in rows], style,
                        label=f"{task.replace('_', ' ')}, {precision}")
    for task, target in TARGETS.items():
        ax.axhline(target, color="grey", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[0] if False else 1e3, target * 1.05, f"target {task.replace('_', ' ')}",
                fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel("us per atom")
    ax.set_title(f"model throughput, {section.get('threads')} threads")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _throughput_md(section: dict, output: Path) -> list[str]:
    lines = ["## 1. Model throughput and memory", "", _meta_line(section), "",
             f"{section.get('lattice', '')}; {section.get('threads')} torch threads; best of "
             f"{section.get('repeats')} calls after a warm-up; each row in a fresh process "
             "(peak memory = peak resident size minus the size before the call, per atom).", "",
             markdown_table(
                 ["atoms", "precision", "task", "first-layer convolution", "us/atom",
                  "of which graph", "peak KiB/atom"],
                 [[r["n_atoms"], r["precision"], r["task"].replace("_", " "),
                   r.get("convolution", "fused"), f"{r['us_per_atom']:.1f}",
                   f"{r['graph_us_per_atom']:.1f}", f"{r['peak_kib_per_atom']:.2f}"]
                  for r in section["rows"]])]
    scaling = section.get("scaling_largest_over_smallest", {})
    if scaling:
        lines += ["", "Scaling (us/atom at the largest size over the smallest; 1.0 = linear in "
                  "atoms): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(scaling.items())) + "."]
    profile = section.get("profile")
    if profile:
        lines += ["", f"Where one forward pass goes ({profile['n_atoms']} atoms, "
                  f"{profile['threads']} threads; blocks nest, so parents include children):", "",
                  markdown_table(["block", "us/atom"],
                                 [[name, f"{value:.2f}"] for name, value in
                                  sorted(profile["us_per_atom"].items(), key=lambda kv: -kv[1])
                                  if value >= 0.05])]
    plot_throughput(section, output / "throughput.png")
    lines += ["", "![throughput](throughput.png)", ""]
    return lines


def _insitu_md(section: dict) -> list[str]:
    lines = ["## 2. In-situ overhead against LAMMPS' own compute cna/atom", "", _meta_line(section),
             "", "The same LAMMPS run three ways, interleaved: bare MD, MD with LPFM every "
             "`every` steps (fix python/invoke, labels written to fix property/atom), and MD "
             "with `compute cna/atom` evaluated as often. Wall times are medians over the "
             "repeats; ratios are to the bare run of the same round of runs.", ""]
    settings = section.get("settings", {})
    rows = []
    for name, s in section.get("systems", {}).items():
        median = s.get("median_s", {})
        rows.append([name, s.get("n_atoms"), settings.get("ranks", "-"),
                     f"{settings.get('steps', '-')} / {settings.get('every', '-')}",
                     _fmt(median.get("plain"), 2), _fmt(median.get("lpfm"), 2),
                     _fmt(median.get("cna"), 2), _fmt(s.get("ratio_lpfm_to_plain"), 2),
                     _fmt(s.get("ratio_cna_to_plain"), 2),
                     _fmt(s.get("lpfm_us_per_atom_per_invocation"), 1),
                     _fmt(s.get("cna_us_per_atom_per_invocation"), 2),
                     _fmt(s.get("outside_loop_median_s", {}).get("plain"), 2),
                     _fmt(s.get("lpfm_startup_extra_s"), 2)])
    lines.append(markdown_table(
        ["system", "atoms", "ranks", "steps / every", "bare s", "LPFM s", "CNA s",
         "LPFM / bare", "CNA / bare", "LPFM us/atom/call", "CNA us/atom/call",
         "bare start-up s", "LPFM adds to start-up s"], rows))
    splits = [(name, s["lpfm_parts_s"], s.get("lpfm_invocations"))
              for name, s in section.get("systems", {}).items() if s.get("lpfm_parts_s")]
    if splits:
        lines += ["", "Where the LPFM runs' invocations went (seconds over the run, slowest "
                  "rank per part, median of the runs):", "",
                  markdown_table(["system", "invocations", *splits[0][1]],
                                 [[name, max(calls or [0]), *(f"{v:.3f}" for v in parts.values())]
                                  for name, parts, calls in splits])]
    return lines + ["", "Start-up: the `mpirun` process's wall time minus its loop time "
                        "(imports, model loading, the run's setup with LPFM's labels at step "
                        "0, and the exit), median; the last column is the LPFM run's minus "
                        "the bare run's: what the fix adds before the first step.", ""]


def _parallel_md(section: dict, insitu: dict | None = None) -> list[str]:
    lines = ["## 3. Scaling over ranks; ghost atoms per owned atom; a cost model", "",
             _meta_line(section), "",
             f"fcc Cu, {4 * section.get('cells', 0) ** 3} atoms, {section.get('threads')} thread "
             "per rank; one in-situ invocation (gather, halo plan, length scale, ghost "
             "check, model, write-back), median, slowest rank, against the model call it "
             "makes, alone on the same atoms (the length scale read per atom in both; one "
             "rank classifies its periodic box, with the length scale inside the model "
             "call). More ranks than cores are oversubscribed here, so their wall time is "
             "not a speed-up; the work an invocation does grows with the ghosts each rank "
             "evaluates per owned atom. Every atom's label and order parameters are "
             "compared with the answer on the fewest ranks.", ""]
    timing = section.get("timing", {})
    rows = []
    for ranks, t in sorted(timing.items(), key=lambda kv: int(kv[0])):
        owned, used = t["n_local"], t.get("n_ghost_used", [0] * len(t["n_local"]))
        atoms = sum(owned)
        rows.append([ranks, max(owned), f"{sum(used) / atoms:.2f}", f"{t['total']:.3f}",
                     f"{1e6 * t['total'] / max(owned):.1f}",
                     f"{t.get('length_scale', 0.0):.3f}", f"{t['model']:.3f}",
                     f"{t['direct']:.3f}",
                     f"{100 * (t['total'] - t['direct']) / t['direct']:+.1f}%",
                     _fmt(t.get("labels_equal"), 2, True),
                     f"{t['max_op_difference']:.1e}" if "max_op_difference" in t else "-"])
    lines.append(markdown_table(
        ["ranks", "owned atoms per rank", "ghosts evaluated / owned", "invocation s",
         "invocation us per owned atom", "of which length scale s",
         "of which model s", "model call alone s", "adapter overhead",
         "labels as on fewest ranks", "largest OP difference"], rows))
    ghosts = section.get("ghosts", {})
    if ghosts:
        lines += ["", f"Ghosts per owned atom with the comm cutoff the model needs "
                  f"({ghosts['cutoff']:.2f} Å = reach {ghosts['reach']:.2f} Å + skin), "
                  f"{ghosts['ranks']} ranks:", "",
                  markdown_table(["atoms per rank", "LAMMPS ghosts / owned",
                                  "ghosts the model evaluates / owned"],
                                 [[row["per_rank"], f"{row['ratio']:.2f}", f"{row['used']:.2f}"]
                                  for row in ghosts["rows"]])]
    return lines + [""] + _cost_model_md(section, insitu)


def _cost_model_md(section: dict, insitu: dict | None) -> list[str]:
    from . import cost_model

    measured = section.get("subdomain_costs", [])
    costs = cost_model.fit_costs(measured)
    ghosts = section.get("ghosts", {})
    if costs is None or not ghosts or "atomic_volume" not in section:
        return []
    md = None
    cu = (insitu or {}).get("systems", {}).get("cu_eam")
    settings = (insitu or {}).get("settings", {})
    if cu and settings.get("steps"):
        # one core's time per atom and MD step of the bare EAM run
        md = 1e6 * cu["median_s"]["plain"] * settings["ranks"] / settings["steps"] / cu["n_atoms"]
    table = cost_model.cost_table(costs, section["atomic_volume"], ghosts["reach"], md)
    lines = ["**Cost model** (`lpfm_insitu/bench/cost_model.py`). `classify_subdomain` in "
             "one process, one thread, on fcc Cu cells whose periodic images within the "
             "model's reach are the ghosts:", "",
             markdown_table(["cells", "owned atoms", "ghosts / owned", "s", "us per owned atom"],
                            [[r["cells"], r["owned"], f"{r['ghosts'] / r['owned']:.2f}",
                              f"{r['seconds']:.3f}", f"{1e6 * r['seconds'] / r['owned']:.1f}"]
                             for r in measured]), "",
             f"So an invocation's work per rank is {costs['c_owned_us']:.1f} us per owned atom "
             f"+ {costs['c_ghost_us']:.1f} us per ghost the model evaluates (least squares "
             f"over these {costs['rows']} cells; largest misfit "
             f"{100 * costs['largest_misfit']:.0f}%). A subdomain is a cube with a ghost shell "
             f"as thick as the model's reach ({ghosts['reach']:.2f} Å), and a CPU node has "
             f"{cost_model.CORES_PER_NODE} cores, one rank each. GPU rows: the model alone "
             f"at {cost_model.GPU_MODEL_US_PER_ATOM} us/atom (an H200 measurement, not made "
             "by this bench), ghosts at the CPU's share; the floor a device-resident "
             f"invocation would reach. One invocation of a {cost_model.RUN_ATOMS:.0e}-atom "
             "run:", ""]
    header = ["CPU nodes / GPUs", "atoms per CPU rank", "ghosts / owned (CPU rank)",
              "s per invocation, CPU nodes", "atoms per GPU", "ghosts / owned (GPU)",
              "s per invocation, GPUs"]
    if md:
        header.append("added to EAM MD, every 100 steps (CPU)")
    rows = []
    for r in table:
        row = [r["devices"], f"{r['atoms_per_cpu_rank']:.3g}", f"{r['cpu_ghost_ratio']:.2f}",
               f"{r['cpu_node_s']:.3g}", f"{r['atoms_per_gpu']:.3g}",
               f"{r['gpu_ghost_ratio']:.2f}", f"{r['gpu_s']:.3g}"]
        if md:
            row.append(f"{100 * r['cpu_added_to_md']:.0f}%")
        rows.append(row)
    lines.append(markdown_table(header, rows))
    if md:
        lines += ["", f"(EAM MD: {md:.2f} us per atom and step on one core, the bare run of "
                  "section 2.)"]
    return lines + [""]


def _accuracy_md(section: dict) -> list[str]:
    columns = section["columns"]
    lines = ["## 4. Accuracy near melting (LAMMPS snapshots)", "", _meta_line(section), "",
             "Crystals: fraction of atoms given the right label. Liquid: fraction left "
             f"unclassified (LPFM: confidence below the model's unknown threshold, "
             f"{step_thresholds_text(section)}; PTM/a-CNA: 'Other'). Snapshots and scoring "
             "as in `lpfm eval` (reports/model).", "",
             markdown_table(["system", *columns],
                            [[name, *(_fmt(row[c], 1, True) for c in columns)]
                             for name, row in section["table"].items()])]
    return lines + [""]


def write_report(results: dict, output: Path) -> Path:
    lines = ["# lpfm_insitu benchmarks", "",
             "Regenerate everything with", "", "```", results.get("command", "lpfm bench"), "```",
             "", "or one section with `--sections NAME` (the others keep their figures). "
             f"Machine: {results.get('machine', {}).get('cpu_count')} CPUs, "
             f"{results.get('gpu', {}).get('gpu') or 'no GPU'}. Timings "
             "on a shared machine are upper bounds; ratios are taken within one run.", ""]
    if "throughput" in results:
        lines += _throughput_md(results["throughput"], output)
    if "gpu" in results:
        from .gpu import gpu_markdown

        lines += gpu_markdown(results["gpu"])
    if "insitu" in results:
        lines += _insitu_md(results["insitu"])
    if "parallel" in results:
        lines += _parallel_md(results["parallel"], results.get("insitu"))
    if "accuracy" in results:
        lines += _accuracy_md(results["accuracy"])
    path = output / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
