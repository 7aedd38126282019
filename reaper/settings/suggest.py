""""Did you mean": the known setting closest to an unknown one, for the one line that refuses it.

An unknown ``REAPER_*`` variable or TOML key stays an error (exit 2), not a warning: a misspelt
threshold (``REAPER_RUNNING_TIMEOUT=12``) would otherwise leave the default, and its deletions, in
force without a word. The suggestion only names what was probably meant, as a variable for a
variable (``REAPER_RUNNING_TIMEOUT_HOURS``) and as a key for a key (``running_timeout_hours``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, get_args

from pydantic.fields import FieldInfo


def _fields_at(settings: Mapping[str, FieldInfo], parents: tuple[str, ...]) -> dict[str, Any] | None:
    """The fields a key below ``parents`` may name: the top level's (every setting by its flat name), a
    nested table's (``columns``), or a task type's (``task_types.NAME``, ``NAME`` being the user's own)."""
    fields: dict[str, Any] = dict(settings)
    named_by_user = False
    for part in parents:
        if named_by_user:  # a task type's name: any name goes, the model below it is the same
            named_by_user = False
            continue
        field = fields.get(part)
        if field is None:
            return None
        nested = getattr(field.annotation, "model_fields", None)
        if nested is None:  # a mapping of names to a model (task_types): the model is its last argument
            arguments = get_args(field.annotation)
            nested = getattr(arguments[-1], "model_fields", None) if arguments else None
            named_by_user = True
        if nested is None:
            return None
        fields = dict(nested)
    return None if named_by_user else fields


def suggestion(
    settings: Mapping[str, FieldInfo], location: tuple[str, ...], prefix: str | None = None, key: bool = True
) -> str:
    """`` (did you mean ...?)`` for the known setting closest to the unknown one at ``location``, or ``""``.

    It is named as a dotted TOML key (``key``) and, given the variables' ``prefix``, as an environment
    variable too (``REAPER_`` and the path's parts in capitals, joined by ``__``), as the error names it.
    """
    fields = _fields_at(settings, location[:-1])
    if not fields:
        return ""
    close = difflib.get_close_matches(location[-1].lower(), list(fields), n=1)
    if not close:
        return ""
    path = (*location[:-1], close[0])
    forms = [".".join(path)] if key else []
    if prefix is not None:
        forms.append(prefix + "__".join(part.upper() for part in path))
    return f" (did you mean {', '.join(forms)}?)"
