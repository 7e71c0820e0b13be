"""The base of every request body: JSON's types, and an unknown field is an error.

pydantic's lax mode would take `true` for a number, `"5"` for an integer and `1` for a
boolean; the OpenAPI document says "number", "integer" and "boolean", so a body that
sends anything else is refused (422) rather than reinterpreted.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are an error (a typo must not be silently ignored), and every value
    must already be of its JSON type (strict mode): no string, number or boolean coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _integral(value: Any) -> Any:
    """`5.0` is the integer 5 in JSON and in JSON Schema; strict mode alone would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]
"""An integer field of a `StrictModel`: an integral JSON number, never `true` or `"5"`."""
