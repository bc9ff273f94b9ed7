"""``lpfm bench``: the figures users judge the package by, measured on this machine.

Sections, one module each: ``throughput`` (model us/atom and peak memory at 10^3-10^5
atoms, fp32 and bf16), ``insitu_overhead`` (a LAMMPS run with LPFM every 100 steps, and
with LAMMPS' own ``compute cna/atom``, against the bare run), ``parallel`` (1 against 2
ranks and ghost atoms per owned atom) and ``accuracy``
(near-melting LAMMPS snapshots: LPFM against PTM and a-CNA), ``gpu`` (us/atom end to end
and for the network alone at 10^4-10^6 atoms, fp32/bf16/fp16, memory per atom; skipped,
with a line saying so, without CUDA). ``report`` writes
results.json, the figures and README.md.
"""

from __future__ import annotations

SECTIONS = ("throughput", "gpu", "insitu", "parallel", "accuracy")

