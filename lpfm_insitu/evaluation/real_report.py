"""Markdown of section 6 ("real systems") and its rows of the targets table."""

from __future__ import annotations

from ..training.prototypes import OMEGA, report_name

STEPS = ("0", "8")
METHODS = ("lpfm_0", "lpfm_8", "lpfm_cand_0", "lpfm_cand_8", "ptm_nocut", "ptm_0.1", "cna")
TITLES = {"lpfm_0": "LPFM 0 steps", "lpfm_8": "LPFM 8 steps",
          "lpfm_cand_0": "LPFM cand. 0 steps", "lpfm_cand_8": "LPFM cand. 8 steps",
          "lpfm_cand_argmax_0": "LPFM cand. argmax, 0 steps",
          "lpfm_fe_argmax_0": "LPFM argmax over bcc/hcp/fcc, 0 steps (the example's)",
          "ptm_nocut": "PTM (no cutoff)", "ptm_0.1": "PTM (cutoff 0.1)", "cna": "a-CNA"}
COMMAND = "lpfm eval --model M --output DIR --sections real"


def pct(x, digits=1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _of_kind(real: dict, *kinds) -> dict:
    return {n: e for n, e in real["cases"].items() if e["kind"] in kinds}


def _boxes(entry: dict, key: str, method: str):
    """(box name, value) pairs of a per-box metric: vacuum factors for slabs, 'box' else."""
    return list(entry[key][method].items())


def _box_name(name: str, box: str) -> str:
    return name if box == "box" else f"{name}, vacuum {box}x"


def _compressed_rows(real: dict, low: float, high: float):
    for name, e in _of_kind(real, "compressed").items():
        for frame, row in e["rows"].items():
            if low < row["compression"] <= high + 1e-9:
                yield name, frame, row


def real_targets(results: dict) -> list[tuple[str, str, str, object]]:
    real = results.get("real")
    if not real:
        return []
    rows = []
    surface = _of_kind(real, "slab", "particle", "void")
    if surface:
        for s in STEPS:
            name, box, value = min(((n, b, v) for n, e in surface.items()
                                    for b, v in _boxes(e, "interior", f"lpfm_{s}")),
                                   key=lambda t: t[2])
            rows.append((f"real systems: interior atoms (> {real['interior_depth_A']:g} Å "
                         f"inside) of slabs, particle and void, {s} steps, all phases, worst",
                         "≥ 99 %", f"{pct(value, 2)} % ({_box_name(name, box)})",
                         value >= 0.99))
        for s in STEPS:
            name, box, value = max(((n, b, v) for n, e in surface.items()
                                    for b, v in _boxes(e, "outer_layer_crystalline",
                                                       f"lpfm_{s}")), key=lambda t: t[2])
            rows.append((f"real systems: outermost surface layer labelled crystalline, {s} "
                         "steps, worst", "none (≤ 1 %)",
                         f"{pct(value)} % ({_box_name(name, box)})", value <= 0.01))
    slabs = _of_kind(real, "slab")
    if slabs:
        for s in STEPS:
            name, value = min(((n, e["vacuum_identical"][f"lpfm_{s}"])
                               for n, e in slabs.items()), key=lambda t: t[1])
            factors = " -> ".join(f"{f:g}x" for f in real["vacuum_factors"])
            rows.append((f"real systems: labels identical when the vacuum goes {factors}, {s} "
                         "steps, worst slab", "≥ 99.9 %", f"{pct(value, 2)} % ({name})",
                         value >= 0.999))
    for name, e in _of_kind(real, "coexistence").items():
        value = e["liquid_noncrystalline"]["lpfm_0"]
        rows.append((f"real systems: liquid > {real['interior_depth_A']:g} Å from the interface "
                     f"not crystalline ({name}), 0 steps", "≥ 97 %",
                     f"{pct(value)} % (8 steps: {pct(e['liquid_noncrystalline']['lpfm_8'])} %)",
                     value >= 0.97))
    for low, high, target in ((0.0, 0.10, 0.99), (0.10, 0.20, 0.95)):
        cells = [(n, f, r) for n, f, r in _compressed_rows(real, low, high)
                 if not r["transformed"]]
        skipped = sum(1 for _, _, r in _compressed_rows(real, low, high) if r["transformed"])
        if not cells:
            continue
        w8 = min(cells, key=lambda t: t[2]["lpfm_8"])
        wc = min(cells, key=lambda t: t[2]["lpfm_cand_0"])
        value = min(w8[2]["lpfm_8"], wc[2]["lpfm_cand_0"])
        rows.append((f"real systems: crystals compressed uniaxially {100 * low:g}-{100 * high:g} % "
                     "(MD, not transformed), worst: 8 steps all phases / 0 steps candidates",
                     f"≥ {100 * target:g} %",
                     f"{pct(w8[2]['lpfm_8'])} % ({w8[0]} {w8[1]}) / {pct(wc[2]['lpfm_cand_0'])} % "
                     f"({wc[0]} {wc[1]})" + (f"; {skipped} transformed, left out" if skipped
                                             else ""), value >= target))
    for name, e in _of_kind(real, "ramp").items():
        top = e["breakdown"]["lpfm_8"][0][0]
        rows.append((f"real systems: Ti ramp ({name}) final frame, majority label over all "
                     "phases, 0 / 8 steps", "omega",
                     f"{report_name(e['breakdown']['lpfm_0'][0][0])} / {report_name(top)} "
                     f"(omega {pct(e['omega']['lpfm_0'])} / {pct(e['omega']['lpfm_8'])} %)",
                     top == OMEGA))
        value = e["omega"]["lpfm_cand_8"]
        by_step = e.get("omega_cand_by_step")
        best = (f"; most at {max(by_step, key=by_step.get)} steps: {pct(max(by_step.values()))} %"
                if by_step else "")
        rows.append((f"real systems: Ti ramp omega over the candidates, 8 steps (0 steps)",
                     "≥ 75 %", f"{pct(value)} % ({pct(e['omega']['lpfm_cand_0'])} %{best})",
                     value >= 0.75))
    for name, e in _of_kind(real, "shock").items():
        value = e["agreement_with_ptm_0.1"].get("lpfm_fe_argmax_0")
        reference = e.get("reference")
        if value is None or reference is None:  # results of an earlier evaluation
            continue
        rows.append((f"real systems: shocked Fe ({name}), argmax over bcc/hcp/fcc at 0 steps "
                     "(as the shock example classifies) = PTM (cutoff 0.1) on the "
                     f"{e['n_ptm_identified']} atoms it identifies within "
                     f"{e['region_depth']:g} Å of the wall, against the example's former "
                     f"`{reference['model']}` (atomic volume {reference['atomic_volume']:g} Å³, "
                     "argmax over fcc/bcc/hcp/omega) on the same atoms",
                     f"≥ {pct(reference['agreement'])} %", f"{pct(value)} %",
                     value >= reference["agreement"]))
    return rows


def _present(dicts) -> list[str]:
    """The methods of METHODS that any of these per-method dicts holds (the candidates'
    8-step run is only made where the issue asks for it)."""
    return [m for m in METHODS if any(m in d for d in dicts)]


def _method_table(first: str, rows_of, methods=METHODS) -> str:
    return _table([first] + [TITLES[m] for m in methods], rows_of)


def _breakdown(pairs) -> str:
    return "; ".join(f"{report_name(l)} {pct(f)}" for l, f in pairs) or "–"


def _curve_lines(by_step) -> list[str]:
    """Omega over the candidates after each number of denoising steps (0-8)."""
    if not by_step:
        return []
    steps = sorted(by_step, key=int)
    return ["Omega over the candidates (fcc/bcc/hcp/omega) by number of denoising steps, each "
            "read with that run length's threshold: "
            + ", ".join(f"{k}: {pct(by_step[k])} %" for k in steps) + ". The target row reads "
            "8 steps; fewer are shown, not chosen.", ""]


def _template_lines(templates: dict | None) -> list[str]:
    """The best-fitting ideal first shell (template_match) on the denoised positions."""
    if not templates:
        return []
    line = ("Best-fitting ideal first shell on the same denoised positions (`template_match`: "
            "PTM's method with a template for every site, here hcp, omega 1a/2d, bcc, fcc "
            f"and A15 2a/6c): all atoms {_breakdown(templates['all'])}")
    for key, title in (("called_omega", "omega"), ("called_A15", "A15")):
        if key in templates:
            line += f"; atoms LPFM (8 steps) calls {title}: {_breakdown(templates[key])}"
    return [line + ".", ""]


def render_real(real: dict) -> list[str]:
    cases = real["cases"]
    md_wall = sum((e["md"].get("lammps_wall_s") or 0) for e in cases.values())
    fresh = [n for n, e in cases.items() if not e["md"].get("from_cache", True)]
    ranks = max((e["md"].get("ranks") or 0) for e in cases.values())
    parts = ["## 6. Real systems: surfaces, vacuum, liquid interface, compression, Ti ramp, "
             "shock", "",
             f"Rerun this section alone with `{COMMAND}` (the other sections keep their "
             "results). Every case is a LAMMPS run with Debian's potentials "
             "(`lpfm_insitu/evaluation/real_cases.py`), cached by input hash; making them took "
             f"{md_wall:.0f} s of LAMMPS on {ranks} ranks"
             + (f" (this run made {', '.join(fresh)})" if fresh else " (read from the cache)")
             + f"; classifying and scoring took {sum(e['wall_s'] for e in cases.values()):.0f} s. "
             "The model is called as a user calls it, with no length given "
             "(`classify_atoms(atoms, denoise_steps=0 or 8, candidates=None or "
             "fcc/bcc/hcp/omega)`), on periodic boxes with vacuum where there is a free "
             "surface. Any label that is not one of the model's prototypes (unknown, PTM/CNA "
             "Other or icosahedral) counts as non-crystalline. \"cand.\": over the "
             "candidates fcc, bcc, hcp and omega. Truth comes from the construction and from "
             "geometry (`real_truth.py`): interior = more than "
             f"{real['interior_depth_A']:g} Å from OVITO's alpha-shape surface (probe 3 Å); "
             "a slab's outermost layer from the gaps between its atomic planes, a particle's "
             "or a void's from the alpha-shape surface atoms.", ""]
    cases_desc = [[n, e["kind"], e["description"], e.get("n_atoms", "")]
                  for n, e in cases.items()]
    parts += [_table(["case", "kind", "MD", "atoms"], cases_desc), ""]
    if real.get("cases_not_run"):
        parts += [f"**Not in this report** (the run was limited with `--real-cases`): "
                  f"{', '.join(real['cases_not_run'])}; rerun `{COMMAND}` for all of them.", ""]
    surface = _of_kind(real, "slab", "particle", "void")
    if surface:
        interior, outer, called = [], [], []
        methods = _present([e["interior"] for e in surface.values()])
        for name, e in surface.items():
            for box, _ in _boxes(e, "interior", "lpfm_0"):
                label = _box_name(name, box)
                interior.append([f"{label} ({e['n_interior']} atoms)"]
                                + [pct(e["interior"].get(m, {}).get(box), 2) for m in methods])
                outer.append([f"{label} ({e['n_outer_layer']} atoms)"]
                             + [pct(e["outer_layer_crystalline"].get(m, {}).get(box))
                                for m in methods])
            called.append([name] + [_breakdown(e["breakdown_outer"][m])
                                    for m in ("lpfm_0", "lpfm_8", "ptm_nocut", "cna")])
        parts += ["**Interior atoms labelled right (%)**:", "",
                  _method_table("case", interior, methods), "",
                  "**Outermost surface layer labelled crystalline (%)** (lower is right):", "",
                  _method_table("case", outer, methods), "",
                  f"What the outermost layer is called (%, first box):", "",
                  _table(["case", TITLES["lpfm_0"], TITLES["lpfm_8"], TITLES["ptm_nocut"],
                          TITLES["cna"]], called), ""]
    slabs = _of_kind(real, "slab")
    if slabs:
        factors = " and ".join(f"{f:g}x" for f in real["vacuum_factors"])
        methods = _present([e["vacuum_identical"] for e in slabs.values()])
        parts += [f"**Labels identical with vacuum {factors} the slab's thickness (%, all "
                  "atoms, the same MD frame)**:", "",
                  _method_table("slab", [[f"{n} ({e['n_atoms']} atoms, "
                                          f"{e['thickness_A']:.1f} Å thick)"]
                                         + [pct(e["vacuum_identical"].get(m), 2)
                                            for m in methods]
                                         for n, e in slabs.items()], methods), ""]
    for name, e in _of_kind(real, "coexistence").items():
        methods = _present([e["liquid_noncrystalline"]])
        parts += [f"**Solid-liquid coexistence ({name})**: interfaces at z = "
                  + ", ".join(f"{z:.1f}" for z in e["interfaces_A"])
                  + " Å (half-height of the (200) structure factor per slab); "
                  f"{e['n_liquid_far']} liquid and {e['n_crystal_far']} crystal atoms more "
                  f"than {real['interior_depth_A']:g} Å from them.", "",
                  _method_table("", [["liquid: not crystalline (%)"]
                                     + [pct(e["liquid_noncrystalline"][m]) for m in methods],
                                     ["crystal: FCC (%)"]
                                     + [pct(e["crystal_correct"][m]) for m in methods],
                                     ["liquid called"] + [_breakdown(e["breakdown_liquid"][m])
                                                          for m in methods]], methods), ""]
    compressed = _of_kind(real, "compressed")
    if compressed:
        rows = []
        methods = _present([r for e in compressed.values() for r in e["rows"].values()])
        for name, e in compressed.items():
            for frame, r in e["rows"].items():
                axis = "none" if r["axis"] is None else f"{r['axis']} {100 * r['compression']:g}%"
                rows.append([name, axis, pct(r["ptm_back_scaled"])
                             + (" **transformed**" if r["transformed"] else "")]
                            + [pct(r.get(m)) for m in methods]
                            + [_breakdown([p for p in r["breakdown"]["lpfm_0"]
                                           if p[0] != e["true_label"]])])
        parts += ["**Hot crystals compressed uniaxially (MD)**: equilibrated (NPT), the box "
                  "and atoms scaled along one axis by the volume compression, held briefly at "
                  "fixed box (NVT; times in the MD column). % of atoms labelled with the "
                  "crystal's phase. \"PTM back "
                  "in the unstrained box\": PTM (no cutoff) on the held frame scaled back "
                  f"along that axis; below {100 * real['untransformed_ptm']:g}% the case counts "
                  "as transformed and leaves the targets.", "",
                  _table(["crystal", "compression", "PTM back in the unstrained box"]
                         + [TITLES[m] for m in methods] + ["LPFM 0 steps: wrong labels"],
                         rows), ""]
    for name, e in _of_kind(real, "ramp").items():
        sc = e["shell_closure"]
        methods = _present([e["omega"]])
        parts += [f"**Ti ramp ({name})**, final frame: omega (%) and the top labels. PTM has "
                  "no omega template. Independent check: the neighbour count before the "
                  "largest gap in the sorted neighbour distances (`analyze_ptm.py --omega`; "
                  "ideal omega: 11 on two thirds of the atoms, 14 on one third; HCP/FCC 12, "
                  f"BCC 14): raw frame f11 {pct(sc['raw']['f11'])} / f14 "
                  f"{pct(sc['raw']['f14'])} / f12 {pct(sc['raw']['f12'])} %; on the positions "
                  f"denoised by 8 steps f11 {pct(sc['denoised_8']['f11'])} / f14 "
                  f"{pct(sc['denoised_8']['f14'])} / f12 {pct(sc['denoised_8']['f12'])} %; of "
                  "the atoms LPFM calls omega after 8 steps, "
                  f"{pct(e['omega_called_with_closure_11_or_14'])} % close their shell at 11 "
                  "or 14 on the denoised positions. PTM (no cutoff) on the denoised positions: "
                  f"{_breakdown(e['ptm_denoised_8'])}.", "",
                  *_curve_lines(e.get("omega_cand_by_step")),
                  *_template_lines(e.get("templates_denoised_8")),
                  _method_table("", [["omega (%)"] + [pct(e["omega"][m]) for m in methods],
                                     ["labels"] + [_breakdown(e["breakdown"][m])
                                                   for m in methods]], methods), ""]
    for name, e in _of_kind(real, "shock").items():
        methods = [m for m in ("lpfm_fe_argmax_0", "lpfm_cand_argmax_0", *METHODS[:4],
                               "ptm_nocut", "cna") if m in e["agreement_with_ptm_0.1"]]
        reference = e.get("reference")
        parts += [f"**Shocked Fe ({name})**: {e['n_region']} atoms within "
                  f"{e['region_depth']:g} Å of the wall at the end (1 ps), "
                  f"{e['n_ptm_identified']} of them identified by PTM with its cutoff 0.1. "
                  "Agreement with PTM (cutoff 0.1) on those atoms (%), and what the region is "
                  "called; beside it the reference, the shock example's former "
                  f"classification (`{reference['model']}`, argmax over fcc/bcc/hcp/omega, "
                  f"length scale from the unshocked {reference['atomic_volume']:g} Å³/atom): "
                  f"{pct(reference['agreement'])} %, region "
                  f"{_breakdown(reference['breakdown_region'])}." if reference else
                  "Agreement with PTM (cutoff 0.1) on those atoms (%), and what the region is "
                  "called:", "",
                  _table([""] + [TITLES[m] for m in methods] + [TITLES["ptm_0.1"]],
                         [["agreement (%)"] + [pct(e["agreement_with_ptm_0.1"][m])
                                               for m in methods] + ["(reference)"],
                          ["region called"] + [_breakdown(e["breakdown_region"][m])
                                               for m in methods]
                          + [_breakdown(e["breakdown_region"]["ptm_0.1"])]]), ""]
    return parts
