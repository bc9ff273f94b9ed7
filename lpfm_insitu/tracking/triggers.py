"""Rules that decide when a phase event deserves a checkpoint.

A shock run is long and the interesting moment (a new phase nucleating, a
phase fraction jumping, the model losing confidence) is short.  These rules
watch the *global* statistics and say when to write a restart file and a
per-atom snapshot, so the moment can be revisited without storing every step.

Decisions use only the global statistics (bit-identical on every rank, see
``phase_stats``) and plain Python arithmetic, so every rank takes the same
decision and enters the collective checkpoint write together.

Event rules (``PhaseAppears``, ``ConfidenceDrop``) fire on a *crossing*.
A crossing that happens during the cooldown is not lost: the rule stays
armed and fires at the first allowed step if the condition still holds,
because a nucleating phase is exactly what one wants a snapshot of.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, Union

from ..errors import PhaseNameError
from .statistics import PhaseStatistics
from ..training.prototypes import common_name, resolve_phase

__all__ = [
    "FractionChange",
    "PhaseAppears",
    "ConfidenceDrop",
    "Rule",
    "GRAMMAR",
    "parse_rules",
    "CheckpointTrigger",
]


def _num(x: float) -> str:
    return repr(float(x))


@dataclass(frozen=True)
class FractionChange:
    """|fraction(phase) - fraction at the last checkpoint| > threshold.

    Before any checkpoint the reference is the fraction at the first
    evaluation.  A level condition: it keeps firing (subject to cooldown)
    until :meth:`CheckpointTrigger.record_checkpoint` moves the reference.
    """

    phase: str
    threshold: float

    @property
    def spec(self) -> str:
        return f"change:{self.phase}>{_num(self.threshold)}"


@dataclass(frozen=True)
class PhaseAppears:
    """fraction(phase) rises above threshold (once per crossing from below)."""

    phase: str
    threshold: float

    @property
    def spec(self) -> str:
        return f"appear:{self.phase}>{_num(self.threshold)}"


@dataclass(frozen=True)
class ConfidenceDrop:
    """Mean confidence falls below threshold (once per crossing from above)."""

    threshold: float

    @property
    def spec(self) -> str:
        return f"confidence<{_num(self.threshold)}"


Rule = Union[FractionChange, PhaseAppears, ConfidenceDrop]

GRAMMAR = """\
  rules      := rule ("," rule)*
  rule       := "appear:" PHASE ">" FRACTION   fraction of PHASE rises above FRACTION
              | "change:" PHASE ">" FRACTION   fraction of PHASE moved by more than FRACTION
                                               since the last checkpoint
              | "confidence<" VALUE            mean confidence falls below VALUE
  PHASE      := a phase of the model, by common name (hcp, omega, ...) or AFLOW label,
                or "unknown" (atoms the model rejects)
  FRACTION   := number in [0, 1)    VALUE := number
  example    : "appear:omega>0.05, change:hcp>0.1, confidence<2.0\""""

_NUM_RE = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PHASE_RULE = re.compile(
    rf"^(?P<kind>(?i:appear|change))\s*:\s*(?P<phase>[^\s<>:,=]+)\s*>\s*(?P<value>{_NUM_RE})$"
)
_CONF_RULE = re.compile(rf"^(?i:confidence)\s*<\s*(?P<value>{_NUM_RE})$")


def _shown(rule: Rule) -> str:
    """The rule as a user reads it: its phase by common name ("appear:hcp>0.05")."""
    phase = getattr(rule, "phase", None)
    if phase is None or common_name(phase) == phase:
        return rule.spec
    return rule.spec.replace(f":{phase}>", f":{common_name(phase)}>", 1)


def _syntax_error(token: str, why: str = "") -> ValueError:
    why = f" ({why})" if why else ""
    return ValueError(f"cannot parse trigger rule {token!r}{why}; expected:\n{GRAMMAR}")


def parse_rules(spec: str | None, phases: Sequence[str]) -> list[Rule]:
    """Rules from a compact string a LAMMPS input script can carry.

    An empty or blank ``spec`` means no rules.  Raises ValueError naming the
    offending token and the grammar on bad syntax, and listing the valid
    phases when a rule names a phase the model does not know.
    """
    if spec is None or not spec.strip():
        return []
    valid = [str(p) for p in phases] + ["unknown"]
    rules: list[Rule] = []
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            raise _syntax_error(spec, "empty rule between commas")
        m = _CONF_RULE.match(token)
        if m:
            value = float(m["value"])
            if not math.isfinite(value):
                raise _syntax_error(token, "threshold must be finite")
            rules.append(ConfidenceDrop(value))
            continue
        m = _PHASE_RULE.match(token)
        if not m:
            raise _syntax_error(token)
        kind, phase, value = m["kind"].lower(), m["phase"], float(m["value"])
        try:  # a common name ("hcp") or a label of the model
            phase = resolve_phase(phase, valid[:-1], allow_unknown=True)
        except PhaseNameError as exc:
            names = valid + [common_name(p) for p in valid]
            close = difflib.get_close_matches(phase, names, n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise PhaseNameError(
                f"trigger rule {token!r} names unknown phase {phase!r}{hint}; {exc}"
            ) from None
        if kind == "appear":
            if not 0.0 <= value < 1.0:
                raise _syntax_error(token, "appear threshold must be in [0, 1)")
            rules.append(PhaseAppears(phase, value))
        else:
            if not 0.0 < value < 1.0:
                raise _syntax_error(token, "change threshold must be in (0, 1)")
            rules.append(FractionChange(phase, value))
    return rules


class CheckpointTrigger:
    """Evaluates rules each time statistics are available.

    ``update`` counts a firing (for ``cooldown_steps`` and
    ``max_checkpoints``) whenever it returns a non-empty list; the caller
    is expected to write the checkpoint and then call ``record_checkpoint``
    so that ``change`` rules measure from the new state.  Save
    ``state_dict()`` with each checkpoint and load it after a restart so
    cooldown, count and rule references continue.
    """

    STATE_VERSION = 1

    def __init__(self, rules: Iterable[Rule], cooldown_steps: int = 0, max_checkpoints: int | None = None):
        self.rules: tuple[Rule, ...] = tuple(rules)
        specs = [r.spec for r in self.rules]
        if len(set(specs)) != len(specs):
            raise ValueError(f"duplicate trigger rules: {specs}")
        if int(cooldown_steps) < 0:
            raise ValueError(f"cooldown_steps must be >= 0, got {cooldown_steps}")
        if max_checkpoints is not None and int(max_checkpoints) < 0:
            raise ValueError(f"max_checkpoints must be >= 0 or None, got {max_checkpoints}")
        self.cooldown_steps = int(cooldown_steps)
        self.max_checkpoints = None if max_checkpoints is None else int(max_checkpoints)
        self.n_fired = 0
        self.last_fire_step: int | None = None
        self.last_checkpoint_step: int | None = None
        self._baseline: dict[str, float] = {}  # change rules: reference fraction
        self._armed: dict[str, bool] = {}  # event rules: condition was false last time

    @staticmethod
    def _value(rule: Rule, stats: PhaseStatistics) -> float:
        if isinstance(rule, ConfidenceDrop):
            return float(stats.mean_confidence)
        return stats.fraction(rule.phase)

    def suppressed(self, step: int) -> bool:
        """True if a firing at ``step`` would be blocked (cooldown or max count)."""
        if self.max_checkpoints is not None and self.n_fired >= self.max_checkpoints:
            return True
        return self.last_fire_step is not None and step - self.last_fire_step < self.cooldown_steps

    def update(self, step: int, stats: PhaseStatistics) -> list[str]:
        """Descriptions of the rules firing at ``step`` (empty if none or blocked)."""
        step = int(step)
        blocked = self.suppressed(step)
        fired: list[str] = []
        for rule in self.rules:
            key, value = rule.spec, self._value(rule, stats)
            if isinstance(rule, FractionChange):
                base = self._baseline.setdefault(key, value)
                if abs(value - base) > rule.threshold and not blocked:
                    fired.append(f"{_shown(rule)} ({common_name(rule.phase)} fraction "
                                 f"{base:.4g} -> {value:.4g})")
                continue
            if not math.isfinite(value):
                continue  # e.g. no atoms: no information, keep the state
            if isinstance(rule, PhaseAppears):
                active = value > rule.threshold
                what = f"{common_name(rule.phase)} fraction {value:.4g}"
            else:
                active = value < rule.threshold
                what = f"mean confidence {value:.4g}"
            if key not in self._armed:
                # First look: a condition already true is not a crossing.
                self._armed[key] = not active
            elif not active:
                self._armed[key] = True
            elif self._armed[key] and not blocked:
                self._armed[key] = False
                fired.append(f"{_shown(rule)} ({what})")
        if fired:
            self.n_fired += 1
            self.last_fire_step = step
        return fired

    def record_checkpoint(self, step: int, stats: PhaseStatistics) -> None:
        """A checkpoint was written at ``step``: ``change`` rules measure from here."""
        self.last_checkpoint_step = int(step)
        for rule in self.rules:
            if isinstance(rule, FractionChange):
                self._baseline[rule.spec] = self._value(rule, stats)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (rule states keyed by rule spec)."""
        return {
            "version": self.STATE_VERSION,
            "rules": [r.spec for r in self.rules],
            "cooldown_steps": self.cooldown_steps,
            "max_checkpoints": self.max_checkpoints,
            "n_fired": self.n_fired,
            "last_fire_step": self.last_fire_step,
            "last_checkpoint_step": self.last_checkpoint_step,
            "baseline": dict(self._baseline),
            "armed": dict(self._armed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved state.

        Cooldown and maximum come from this object's configuration; per-rule
        state is restored for rules present in both (a restarted run may
        have edited its rules; new rules start fresh).
        """
        if int(state.get("version", -1)) != self.STATE_VERSION:
            raise ValueError(f"unsupported trigger state version {state.get('version')!r}")
        self.n_fired = int(state["n_fired"])
        lf, lc = state.get("last_fire_step"), state.get("last_checkpoint_step")
        self.last_fire_step = None if lf is None else int(lf)
        self.last_checkpoint_step = None if lc is None else int(lc)
        specs = {r.spec for r in self.rules}
        self._baseline = {k: float(v) for k, v in state.get("baseline", {}).items() if k in specs}
        self._armed = {k: bool(v) for k, v in state.get("armed", {}).items() if k in specs}
