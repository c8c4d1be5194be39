"""Small SQL building blocks shared by the store modules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY


def any_of(column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column = ANY(:array)`: one bind parameter however many values. An IN
    list takes one parameter per value, and PostgreSQL's protocol refuses a
    statement with more than 65,535 (a fleet of 100,000 GPUs has more ids)."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
