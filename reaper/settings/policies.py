"""The policies' settings, read from their specs: age limits, actions, the attempts bound, task types.

No policy is named here. Each declares its settings (``reaper.policy.spec``: key, unit or choices,
default, bounds) and the models below are built from those declarations when the module loads: a
new policy's ``REAPER_<KEY>``, TOML key and ``[task_types.NAME]`` key follow from its spec alone.
To the type checker the built models are their declared bases, which read a setting through its
declaration (``limits.limit(spec.age)``) rather than by attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from reaper.policy.catalog import action_keys, policy_options
from reaper.policy.spec import Action, ActionChoice, Count, Limit, Option, Unit

# No threshold beyond a century: now minus it must stay a valid date.
MAX_DAYS = 36500
MAX_HOURS = MAX_DAYS * 24
UNIT_MOST = {Unit.DAYS: MAX_DAYS, Unit.HOURS: MAX_HOURS, Unit.MINUTES: MAX_HOURS * 60}
# In [task_types.NAME], ``action`` sets every action setting the task type does not set itself.
ALL_ACTIONS_KEY = "action"
# A task type name is matched against stored values (case-insensitively on many MySQL collations),
# and "*" names the default rule in reports: names that could collide are refused.
RESERVED_TYPE_NAMES = ("*",)

Model = TypeVar("Model", bound=BaseModel)


class TaskTypeValues(BaseModel):
    """One task type's thresholds and actions (``[task_types.NAME]``); an unset key falls back to the global one.

    The fields are the policies' settings, each ``None`` unless set, and ``action`` (see ``TaskTypeSettings``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def _given(self, key: str) -> Any:
        value = getattr(self, key)
        if value is None:  # only the values in force (PolicyValues.for_task_type) are read
            raise LookupError(f"{key} is not set")
        return value

    def limit(self, option: Limit) -> float:
        """The value of the age limit ``option``, in its unit."""
        return float(self._given(option.key))

    def chosen(self, option: ActionChoice) -> Action:
        """The action ``option`` chooses."""
        return Action(self._given(option.key))

    def count(self, option: Count) -> int:
        """The value of the whole-number setting ``option``."""
        return int(self._given(option.key))


class PolicyValues(BaseModel):
    """The policies' settings for every task type without its own, and the task types that have their own.

    The fields are the policies' settings and ``task_types`` (see ``PolicySettings``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_types: dict[str, TaskTypeValues] = Field(default_factory=dict)

    @field_validator("task_types", mode="after")
    @classmethod
    def _named_task_types(cls, value: dict[str, TaskTypeValues]) -> dict[str, TaskTypeValues]:
        seen: dict[str, str] = {}
        for name in value:
            if not name.strip() or name != name.strip():
                raise ValueError(f"task type {name!r}: a name cannot be empty or start or end with a space")
            if name in RESERVED_TYPE_NAMES or "," in name:
                raise ValueError(f"task type {name!r}: '*' and ',' are reserved for reports")
            other = seen.setdefault(name.casefold(), name)
            if other != name:  # a case-insensitive collation would match one row by both rules
                raise ValueError(f"task types {other!r} and {name!r} differ only in case")
        return value

    def for_task_type(self, name: str | None) -> TaskTypeValues:
        """Return the thresholds and actions in force for task type ``name`` (``None``: the global ones)."""
        own = self.task_types.get(name) if name is not None else None
        merged = {option.key: getattr(self, option.key) for option in policy_options()}
        if own is not None:
            merged.update(own.model_dump(exclude_none=True, exclude={ALL_ACTIONS_KEY}))
            every = getattr(own, ALL_ACTIONS_KEY)
            for key in action_keys():
                if every is not None and getattr(own, key) is None:
                    merged[key] = every
        return TaskTypeSettings(**merged)

    def rescues(self) -> bool:
        """Whether any policy, for any task type, requeues instead of failing."""
        kinds = [self.for_task_type(None), *(self.for_task_type(name) for name in self.task_types)]
        return any(getattr(kind, key) == Action.REQUEUE for kind in kinds for key in action_keys())


def _choice(choices: tuple[Action, ...]) -> Any:
    """The type of a setting that takes one of ``choices`` (``Literal['fail', 'requeue']``)."""
    literal: Any = Literal  # subscripted with values known only once the specs are read
    return literal[tuple(choice.value for choice in choices)]


def _field(option: Option, optional: bool) -> tuple[Any, Any]:
    """The type and pydantic field of ``option``'s setting; ``optional``: unset (``None``) unless given."""
    info: dict[str, Any]
    if isinstance(option, Limit):
        kind: Any = float
        default: Any = option.default
        info = {"gt": 0, "le": UNIT_MOST[option.unit], "allow_inf_nan": False, "strict": True}
    elif isinstance(option, ActionChoice):
        kind, default, info = _choice(option.choices), option.choices[0].value, {}
    else:
        kind, default, info = int, option.default, {"ge": option.least, "le": option.most, "strict": True}
    if optional:
        return kind | None, Field(None, description=option.doc, **info)
    return kind, Field(default, description=option.doc, **info)


def _task_type_fields() -> dict[str, Any]:
    """Every policy setting, optional, with ``action`` after the action settings it stands for."""
    fields: dict[str, Any] = {}
    options = policy_options()
    last_choice = max(index for index, option in enumerate(options) if isinstance(option, ActionChoice))
    for index, option in enumerate(options):
        fields[option.key] = _field(option, optional=True)
        if index == last_choice:
            choices = tuple(dict.fromkeys(a for o in options if isinstance(o, ActionChoice) for a in o.choices))
            doc = "every action setting of this task type that is not set itself"
            fields[ALL_ACTIONS_KEY] = (_choice(choices) | None, Field(None, description=doc))
    return fields


def _built(name: str, base: type[Model], fields: dict[str, Any]) -> type[Model]:
    return create_model(name, __base__=base, __module__=__name__, **fields)


if TYPE_CHECKING:  # see the module's docstring
    TaskTypeSettings = TaskTypeValues
    PolicySettings = PolicyValues
else:
    TaskTypeSettings = _built("TaskTypeSettings", TaskTypeValues, _task_type_fields())
    PolicySettings = _built("PolicySettings", PolicyValues, {
        **{option.key: _field(option, optional=False) for option in policy_options()},
        "task_types": (dict[str, TaskTypeSettings], Field(default_factory=dict)),
    })
