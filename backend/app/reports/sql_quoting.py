"""Quoting names and text for DuckDB SQL.

Column names come from uploaded files and may contain anything, and filter values come from
callers: every identifier and literal that reaches SQL goes through these two functions.
"""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Quote a column name for SQL; names come from the dataset and may contain anything."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A text value as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
