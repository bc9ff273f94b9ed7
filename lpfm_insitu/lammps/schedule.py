"""When the classifier runs: the invoke period, and labels at the start of a run.

``fix python/invoke`` (LAMMPS 29Sep2021 and others) is not called when a run is set up,
so step 0 (and a ``run 0``) would have no labels. ``fix ave/time`` is: it evaluates a
python-style variable while the run is set up, after the ghost atoms exist and before the
first dump and thermo output. ``python <prefix>_setup invoke`` declares such a fix,
``<prefix>_first``, every ``every`` steps. Both callers report their steps here, which
tells a python/invoke period that differs from ``every``.
"""

from __future__ import annotations

import numpy as np

from .errors import agreed_error


def companion_names(prefix: str) -> tuple[str, str]:
    """The Python names ``<prefix>_setup`` and ``<prefix>_first`` the input script uses."""
    return f"{prefix}_setup", f"{prefix}_first"


def first_label_commands(settings) -> list[str]:
    """LAMMPS commands that classify at the start of a run (the ``<prefix>_first`` fix)."""
    s = settings
    setup, first = companion_names(s.prefix)
    if s.every is None:
        raise agreed_error(f"python {setup} invoke: labels at the start of a run need "
                           "configure(every=N), the N of `fix ... python/invoke N end_of_step`")
    return [f"python {first} input 1 SELF return v_{first} format pi exists",
            f"variable {first} python {first}",
            f"fix {first} all ave/time {s.every} 1 {s.every} v_{first}"]


class InvokePeriod:
    """The steps python/invoke and the companion classified, checked against ``every``."""

    def __init__(self, settings):
        self.settings = settings
        self.fix_steps: list[int] = []  # steps at which fix python/invoke called (last 3)
        self.first_steps: list[int] = []  # steps the <prefix>_first companion classified

    def check_fix(self, step: int) -> None:
        """Stop when fix python/invoke's N is a multiple of ``every``: two consecutive
        intervals of the same k x every steps (k >= 2). One such interval alone can be a
        jump of the step counter (``minimize``, ``reset_timestep``)."""
        s = self.settings
        steps = (self.fix_steps + [step])[-3:]
        self.fix_steps = steps
        if s.every is None or len(steps) < 3:
            return
        gaps = np.diff(steps)
        if gaps[0] == gaps[1] and gaps[0] > s.every and gaps[0] % s.every == 0:
            raise agreed_error(
                f"fix {s.fix}: lpfm_insitu is called every {int(gaps[0])} steps (steps "
                f"{', '.join(map(str, steps))}) but configure(every={s.every}): make the N of "
                f"`fix ... python/invoke N end_of_step ...` equal to every ({s.every})")

    def check_first(self, step: int) -> None:
        """The companion classifies where python/invoke has not (yet): at the start of the
        first run, or, if it is declared before the python/invoke fix, at every step just
        before the fix does. If the fix then skipped such a step while it ran at later
        ones, its period is not ``every``."""
        previous = self.first_steps[-1] if len(self.first_steps) > 1 else None
        self.first_steps = (self.first_steps + [step])[-4:]
        if (previous is not None and self.fix_steps and max(self.fix_steps) > previous
                and previous not in self.fix_steps):
            s = self.settings
            raise agreed_error(
                f"fix {s.fix}: configure(every={s.every}) but fix python/invoke did not call "
                f"lpfm_insitu at step {previous} (found at step {step}): the invoke period "
                f"differs from every. Make the N of `fix ... python/invoke N end_of_step "
                f"...` equal to every ({s.every}), or change every")

    def check_step(self, step: int) -> None:
        """Every invocation: the step must be a multiple of ``every``."""
        s = self.settings
        if s.every is not None and step % s.every:
            raise agreed_error(
                f"fix {s.fix}: lpfm_insitu was called at step {step}, which is not a "
                f"multiple of every={s.every}: make the N of `fix ... python/invoke N "
                f"end_of_step ...` equal to every ({s.every})")
