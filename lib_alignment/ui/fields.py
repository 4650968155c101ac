"""Reading numeric form fields: a value that is empty or not a number is refused with the field's label.

gradio sends None for an empty or unparsable gr.Number; a default in its place would
start something the user did not ask for (a 500-step job from an empty "Training steps").
"""

from __future__ import annotations

import math
from typing import Any


class FieldError(ValueError):
    """A form field's value was refused; the message starts with the field's label."""

    def __init__(self, label: str, problem: str) -> None:
        super().__init__(f"{label}: {problem}")
        self.label = label


def number(
    value: Any,
    label: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> Any:
    """The field's value as an int (integer=True) or float, checked against its bounds; FieldError otherwise."""
    what = "a whole number" if integer else "a number"
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise FieldError(label, f"enter {what}")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise FieldError(label, f"{str(value)!r} is not {what}") from None
    if not math.isfinite(x):
        raise FieldError(label, f"enter {what} (got {value})")
    if integer and not x.is_integer():
        raise FieldError(label, f"enter {what} (got {x:g})")
    if minimum is not None and x < minimum:
        raise FieldError(label, f"must be at least {minimum:g} (got {x:g})")
    if maximum is not None and x > maximum:
        raise FieldError(label, f"must be at most {maximum:g} (got {x:g})")
    if above is not None and x <= above:
        raise FieldError(label, f"must be more than {above:g} (got {x:g})")
    return int(x) if integer else x
