"""``lpfm calibrate``: after training, choose a model file's phase prior, denoising step
size and unknown thresholds, and write them into it.

The algorithms are in :mod:`lpfm_insitu.training.calibration`; this command supplies
what they run on: hot crystals and liquids made with LAMMPS (cached by
:mod:`lpfm_insitu.evaluation.md_snapshots`) or liquid files the user gives.
"""

from __future__ import annotations

import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="after training: choose the denoising step size and the unknown "
                          "thresholds")
    p.add_argument("model", help="model file to calibrate (rewritten unless --output)")
    p.add_argument("--output", help="write the calibrated model here instead")
    p.add_argument("--liquid", nargs="+", default=None,
                   help="liquid snapshot file(s) any ASE reader opens, one liquid per file "
                        "(default: liquid Al, Ni and Zr made with LAMMPS and cached, see "
                        "evaluation.md_templates.CALIBRATION_LIQUIDS)")
    p.add_argument("--quantile", type=float, default=0.95,
                   help="fraction of liquid atoms to label unknown (default 0.95)")
    p.add_argument("--hot-loss", type=float, default=0.002,
                   help="per-phase thresholds: raise a phase's unknown threshold until no "
                        "liquid atom is labelled it, but only as far as costs its hot LAMMPS "
                        "crystal (noisy synthetic one, for the phases without) this fraction "
                        "of its atoms; lower it where the shared threshold costs its hot "
                        "LAMMPS crystal more, as far as no liquid atom is labelled it "
                        "(default 0.002; 0: one threshold for every phase)")
    p.add_argument("--margin-quantile", type=float, default=0.99,
                   help="candidate margins: over each --candidate-sets set, an atom below the "
                        "threshold keeps its label where it leads the next candidate by more "
                        "than this fraction of each liquid's atoms do (default 0.99; 0: off)")
    p.add_argument("--candidate-sets", nargs="+", default=None, metavar="PHASES",
                   help="comma-separated candidate sets to calibrate margins for (common "
                        "names or AFLOW labels; default: the examples' sets where the model "
                        "has those and more: fcc,bcc,hcp,omega (Ti) and bcc,hcp,fcc (the Fe "
                        "shock))")
    p.add_argument("--keep-step-size", action="store_true",
                   help="do not re-choose the denoising step size (with --prior-strength "
                        "auto the per-step priors are still chosen, at that step size)")
    p.add_argument("--prior-strength", default="auto",
                   help="how far below fcc/bcc/hcp/diamond the other prototypes' log prior "
                        "sits: 'auto' chooses it on hot LAMMPS crystals and synthetic "
                        "validation crystals, 'keep' leaves the file's prior, or a number "
                        "(0: uniform)")
    p.add_argument("--averaging-radius", default="keep",
                   help="neighbour-averaging radius of the logits (Å at 15 Å^3/atom; 0: off), "
                        "set before everything else is chosen, since the prior, step size "
                        "and thresholds all act on the averaged logits; 'keep' (default) "
                        "leaves the file's")
    p.set_defaults(func=run)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args) -> int:
    from ..errors import LPFMError
    from ..model.files import load_model, read_header, resolve_model_path, save_model
    from ..model.network import ModelSpec
    from ..training.calibration import (COMMON_PHASES, STEP_SIZE_GRID, prior_of_strength,
                                        set_candidate_margins, set_liquid_thresholds,
                                        set_phase_thresholds, tune_phase_prior, tune_step_size)

    path = resolve_model_path(args.model)
    model = load_model(path)
    header = read_header(path)
    spec_dict = json.loads(header["spec"])
    spec = ModelSpec(**{**spec_dict, "phases": tuple(spec_dict["phases"])})
    if not 0.0 <= args.margin_quantile < 1.0:
        raise LPFMError(f"lpfm calibrate: --margin-quantile is a fraction of a liquid's atoms, "
                         f"0 (off) up to below 1, got {args.margin_quantile}")
    candidate_sets = _candidate_sets(args.candidate_sets, model.phases)
    if not 0.0 <= args.hot_loss < 1.0:
        raise LPFMError(f"lpfm calibrate: --hot-loss is a fraction of a crystal's atoms, "
                         f"0 (off) up to below 1, got {args.hot_loss}")
    # what this run keeps (prior, step size) keeps the record of how it was chosen
    previous = (model.metadata.get("training", {}) or {}).get("calibration") or {}
    record = {key: previous[key] for key, kept in
              (("prior", args.prior_strength == "keep"), ("step_size", args.keep_step_size))
              if kept and key in previous}
    if args.averaging_radius != "keep":
        try:
            model.averaging_radius = float(args.averaging_radius)
        except ValueError as exc:
            raise LPFMError(f"lpfm calibrate: --averaging-radius must be 'keep' or a radius: "
                             f"{exc}") from None
    record["averaging_radius"] = model.averaging_radius
    hot = described = None
    if args.prior_strength == "auto" or args.hot_loss > 0:
        from ..evaluation.md_snapshots import calibration_hot_crystals

        hot, described = calibration_hot_crystals(log=_log)
    # setting the undenoised prior clears the per-step ones, which only the step-size
    # tuning chooses again: a run that keeps the step size and the prior keeps them
    step_priors = model.step_log_priors
    if args.prior_strength == "auto":
        record["prior"] = tune_phase_prior(model, hot, log=_log)
        record["prior"]["hot_crystals"] = described
    elif args.prior_strength != "keep":
        try:
            strength = float(args.prior_strength)
        except ValueError:
            raise LPFMError(f"lpfm calibrate: --prior-strength must be 'auto', 'keep' or a "
                             f"number, got {args.prior_strength!r}") from None
        model.log_prior = prior_of_strength(model.phases, strength)
        record["prior"] = {"chosen": {"strength": strength}, "common_phases": list(COMMON_PHASES)}
    if args.keep_step_size and args.prior_strength != "auto":
        model.step_log_priors = step_priors
    else:
        # a kept step size is a grid of one: the per-step priors are still chosen with the
        # hot crystals, so a change of calibration crystals reaches them too
        grid = [(model.step_size, model.max_step)] if args.keep_step_size else STEP_SIZE_GRID
        record["step_size"] = tune_step_size(
            model, grid=grid, hot_crystals=hot if args.prior_strength == "auto" else None,
            log=_log)
    liquids, source = _liquids(args.liquid)
    record["thresholds"] = set_liquid_thresholds(model, liquids, args.quantile, source, _log)
    model.phase_thresholds = {}
    if args.hot_loss > 0:
        record["phase_thresholds"] = set_phase_thresholds(model, liquids, hot, args.hot_loss,
                                                          _log)
        record["phase_thresholds"]["hot_crystals"] = described
    model.candidate_margins = {}
    if args.margin_quantile > 0 and candidate_sets:
        record["candidate_margins"] = set_candidate_margins(
            model, liquids, candidate_sets, args.margin_quantile, _log)
    training = dict(model.metadata.get("training", {}))
    training["calibration"] = record
    metadata = {k: v for k, v in model.metadata.items()
                if k not in ("path", "training", "package_version")}
    model.metadata = metadata
    out = save_model(args.output or path, model, spec, training=training)
    strength = record.get("prior", {}).get("chosen", {}).get("strength")
    if strength is not None:
        _log(f"  phase prior: prototypes other than {', '.join(COMMON_PHASES)} "
             f"{strength:g} below them")
    by_steps = record.get("step_size", {}).get("chosen", {}).get("prior_strengths")
    if by_steps:
        _log(f"  after k denoising steps: {by_steps} below them")
    print(f"wrote {out}: averaging radius {model.averaging_radius:g} Å, step size "
          f"{model.step_size:g} Å^2 (cap {model.max_step:g} Å), thresholds "
          f"{json.dumps(record['thresholds']['per_step'])}")
    return 0


def _candidate_sets(texts, phases) -> list[tuple[str, ...]]:
    """The sets named on the command line, or the examples' sets the model has."""
    from ..training.calibration import EXAMPLE_CANDIDATE_SETS

    if texts is not None:
        return [_candidate_set(text, phases) for text in texts]
    return [names for names in EXAMPLE_CANDIDATE_SETS if set(names) < set(phases)]


def _candidate_set(text: str, phases) -> tuple[str, ...]:
    from ..errors import LPFMError
    from ..training.prototypes import resolve_phases

    try:
        names = tuple(dict.fromkeys(resolve_phases(text, phases)))
    except (KeyError, ValueError) as exc:
        raise LPFMError(f"lpfm calibrate: --candidate-sets {text!r}: {exc}") from None
    if not 2 <= len(names) < len(phases):
        raise LPFMError(f"lpfm calibrate: --candidate-sets {text!r} names {len(names)} "
                         f"phases; a candidate set leaves some of the model's {len(phases)} "
                         f"out and keeps at least two")
    return names


def _liquids(files):
    """The liquids to set the unknown thresholds on (frame lists) and where they came from:
    the user's files, one liquid each, or the cached LAMMPS liquids."""
    if files:
        from ase.io import read

        from .paths import existing_input

        return ([read(existing_input(name), index=":") for name in files],
                [str(name) for name in files])
    from ..evaluation.md_snapshots import calibration_liquids

    return calibration_liquids(log=_log)
