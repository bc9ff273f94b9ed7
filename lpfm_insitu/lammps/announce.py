"""What a configuration prints and asks for: the model, the column mapping, the fix line."""

from __future__ import annotations

import numpy as np

from ..training.prototypes import common_name


def named(label: str) -> str:
    """"hcp (A_hP2_194_c)": the common name, and the label the model files use."""
    name = common_name(label)
    return label if name == label else f"{name} ({label})"


def fix_line(settings, n_ops: int) -> str:
    """The ``fix property/atom`` command this configuration needs."""
    s = settings
    parts = [f"fix {s.fix} all property/atom {s.phase_column} {s.conf_column}"]
    if n_ops:
        parts.append(f"{s.op_column} {n_ops}")
    if s.export_displacement:
        parts.append(f"{s.disp_column} 3")
    return " ".join(parts) + " ghost no"


def mapping_lines(settings, model, op_indices) -> list[str]:
    """What each value of each column means."""
    s = settings
    phases = model.phases
    threshold = model.threshold_for(s.denoise_steps)
    limits = model.unknown_thresholds(s.denoise_steps, s.candidates)
    own = "".join(f"; labelled {named(p)}: < {t:.6g}" for p, t in zip(phases, limits)
                  if t != threshold)
    margin = model.candidate_margin(s.denoise_steps, s.candidates)
    kept = "" if margin is None else \
        f"; kept where the label leads the next candidate by >= {margin:.6g}"
    lines = [f"{s.phase_column}: -1 = unknown (confidence < {threshold:.6g}{own}{kept})"
             + ("" if s.types is None else f" or type not in {list(s.types)}")]
    lines += [f"{s.phase_column}: {k} = {named(p)}" for k, p in enumerate(phases)]
    lines.append(f"{s.conf_column}: max logit over "
                 + ("all phases" if s.candidates is None
                    else ", ".join(named(p) for p in s.candidates)))
    for col, k in enumerate(op_indices, start=1):
        lines.append(f"{s.op_column}[{col}] = logit of {named(phases[k])} (phase {k})")
    if s.export_displacement:
        lines.append(f"{s.disp_column}[1..3] = denoising displacement x y z "
                     f"({s.denoise_steps} steps, length units)")
    return lines


def prior_summary(settings, model) -> str:
    if settings.candidates is not None:
        return "uniform prior over the candidates"
    prior = model.log_prior_for(settings.denoise_steps)
    shifted = prior[prior != 0.0]
    if not len(shifted):
        return "uniform phase prior"
    values = ", ".join(f"{v:g}" for v in np.unique(shifted))
    return f"log prior {values} on {len(shifted)} of {len(prior)} phases"


def announcement(settings, model, model_name: str, op_indices) -> str:
    """The text rank 0 prints when ``configure`` runs."""
    s = settings
    net = model.network
    out = [f"lpfm_insitu: model {model_name!r} ({model.metadata.get('path', '?')}), "
           f"{len(model.phases)} phases, {net.num_interactions} interactions x r_max "
           f"{net.r_max:g} (model units), denoise_steps {s.denoise_steps}, logits averaged "
           f"over neighbours within {model.averaging_radius:g} (model units), "
           f"{prior_summary(s, model)}"]
    out += [f"lpfm_insitu:   {line}" for line in mapping_lines(s, model, op_indices)]
    out.append(f"lpfm_insitu:   needs: {fix_line(s, len(op_indices))}")
    return "\n".join(out)
