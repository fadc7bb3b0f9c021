"""The rules file as data: ``config/rules.yaml`` validated with pydantic (see docs/rules.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from rules.decision import Priority
from rules.durations import parse_duration

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


def _duration(value: object) -> int:
    return int(parse_duration(value))


DurationSeconds = Annotated[int, BeforeValidator(_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteSpec(_Model):
    """Route fields a rule may set; each is set by the first matching rule that sets it."""

    queue: str | None = Field(None, pattern=NAME_PATTERN)
    priority: Priority | None = None
    sla: DurationSeconds | None = None
    skills: tuple[str, ...] | None = None
    agent: str | None = Field(None, pattern=NAME_PATTERN, description="offer to this agent first")


class Defaults(_Model):
    queue: str = Field("general", pattern=NAME_PATTERN)
    priority: Priority = Priority.NORMAL
    sla: DurationSeconds | None = None
    skills: tuple[str, ...] = ()


class RuleSpec(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    enabled: bool = True
    when: str | None = Field(None, max_length=10_000)
    route: RouteSpec | None = None
    instructions: tuple[Annotated[str, Field(max_length=2000)], ...] = ()
    tags: tuple[Annotated[str, Field(pattern=NAME_PATTERN)], ...] = ()
    auto_reply: str | None = None
    stop: bool = False


class RulesFile(_Model):
    version: Literal[1]
    defaults: Defaults = Defaults()
    templates: dict[str, Annotated[str, Field(max_length=5000)]] = Field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = ()
