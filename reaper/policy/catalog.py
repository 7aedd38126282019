"""The standard policies, in the order a run applies them, and what the rest of reaper reads of them.

Zombies are failed before old rows are deleted, so that a zombie failed in a run is not also judged
by a retention in the same pass.
"""

from __future__ import annotations

from reaper.policy import failure_retention, pending_timeout, running_timeout, success_retention
from reaper.policy.spec import ActionChoice, Limit, Option, PolicySpec

STANDARD_SPECS: tuple[PolicySpec, ...] = (
    running_timeout.SPEC,
    pending_timeout.SPEC,
    failure_retention.SPEC,
    success_retention.SPEC,
)
STANDARD_POLICY_NAMES = tuple(spec.name for spec in STANDARD_SPECS)


def spec_named(name: str) -> PolicySpec | None:
    """Return the standard policy called ``name`` (``None`` for another, such as ``--force-status``'s)."""
    return next((spec for spec in STANDARD_SPECS if spec.name == name), None)


def zombie_specs() -> tuple[PolicySpec, ...]:
    """The standard policies that find zombies (they fail or requeue): the daemon's rescues run these."""
    return tuple(spec for spec in STANDARD_SPECS if spec.finds_zombies)


def _kind_order(option: Option) -> int:
    if isinstance(option, Limit):
        return 0
    return 1 if isinstance(option, ActionChoice) else 2


def policy_options(specs: tuple[PolicySpec, ...] = STANDARD_SPECS) -> tuple[Option, ...]:
    """Every setting of ``specs``, each once: the age limits first, then the other limits, the actions
    and the counts, each kind in the policies' order (as the settings reference lists them).

    Policies may share a setting (``max_attempts``) only by declaring the same one.
    """
    found: dict[str, Option] = {}
    ages = [spec.age for spec in specs]
    for option in ages + sorted((o for spec in specs for o in spec.options[1:]), key=_kind_order):
        seen = found.setdefault(option.key, option)
        if seen != option:
            raise ValueError(f"setting {option.key} is declared twice, differently")
    return tuple(found.values())


def action_keys(specs: tuple[PolicySpec, ...] = STANDARD_SPECS) -> tuple[str, ...]:
    """The settings that choose a policy's action (``running_timeout_action``, ...)."""
    return tuple(option.key for option in policy_options(specs) if isinstance(option, ActionChoice))

