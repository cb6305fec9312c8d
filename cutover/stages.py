"""The stages of a cutover, as data: an ordered list of :class:`Stage` objects.

A stage is a state the plan can be in. Entering it means its gates hold, then its steps
are applied in order; the plan's recorded stage is the last one fully entered. The runner
knows nothing about particular stages, so a stage (say, a soak between the write switch
and ``complete``) is added by inserting a ``Stage`` into the list given to the runner.

``STAGE_ORDER`` is the standard order; :func:`cutover.cutover_plan.build_stages` builds
the list with real gates and steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from cutover.gates import Gate
from cutover.journal import ABORTED, PLANNED
from cutover.steps import Step
from runeshift.errors import ConfigError

STAGE_ORDER = (
    "preflight",
    "backfilled",
    "caught_up",
    "verified",
    "reads_on_rune",
    "writes_on_rune",
    "complete",
)


@dataclass(frozen=True)
class Stage:
    """A named state: gates that must hold to enter it, then steps that move traffic."""

    name: str
    summary: str
    gates: tuple[Gate, ...] = ()
    steps: tuple[Step, ...] = ()
    # Why rolling back from this stage (or past its applied steps) is refused, when it is.
    rollback_refusal: str | None = None
    # On a failed step, reverse this stage's applied steps (a half-done switch is never left).
    undo_on_failure: bool = True
    step_names: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_names", tuple(s.name for s in self.steps))


class StageList:
    """The ordered stages of a plan, looked up by name."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage names must be unique, got {names}")
        for reserved in (PLANNED, ABORTED):
            if reserved in names:
                raise ConfigError(f"'{reserved}' is a plan state, not a stage name")
        self.stages = tuple(stages)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def final(self) -> str:
        return self.stages[-1].name

    def get(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"no stage {name!r}; the stages are {', '.join(self.names)}")

    def index(self, name: str) -> int:
        """Position of a stage; ``planned`` is -1."""
        if name == PLANNED:
            return -1
        return self.names.index(self.get(name).name)

    def after(self, current: str, to: str | None) -> list[Stage]:
        """The stages to enter to get from ``current`` to ``to`` (default: the next one)."""
        start = self.index(current) + 1
        end = start if to is None else self.index(to)
        if to is not None and end < start:
            raise ConfigError(
                f"the plan is already at {current}; 'advance --to {to}' would go backwards "
                "(use 'runeshift cutover rollback')"
            )
        return list(self.stages[start : end + 1])

    def owning(self, step_stage: str) -> Stage:
        return self.get(step_stage)
