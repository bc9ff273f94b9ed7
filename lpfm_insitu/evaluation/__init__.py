"""``lpfm eval``: the model's evaluation report (Markdown, PNG figures, results.json).

One module per job: ``synthetic_eval`` (prototype accuracy and denoising), ``physics``
and ``paths`` (Bain/Burgers paths, logit versus displacement), ``md_templates`` and
``md_snapshots`` (cached LAMMPS snapshots near melting; ``lammps_cache`` builds a cache
entry), ``baselines`` (PTM, a-CNA via
OVITO), ``md_eval`` (the comparison), ``strain_eval``
(compressed hot crystals), ``cost`` (timing, bf16), ``real_cases``, ``real_truth``,
``real_eval`` and ``real_report`` (slabs, a particle, a void, a solid-liquid interface,
compressed MD crystals, the Ti ramp and the shocked Fe, with their geometric truth),
``metrics`` (scoring), ``report`` (Markdown) and ``command`` (the CLI glue). Unknown
thresholds are set by ``training.calibration``, on the liquids this package makes.
"""

from __future__ import annotations

SECTIONS = ("synthetic", "physics", "md", "strain", "cost", "real")

