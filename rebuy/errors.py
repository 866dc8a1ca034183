"""Errors a user can act on: each names the file, the column, the first offending rows, and what to do."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


class RebuyError(Exception):
    """Base class: the CLI prints these without a traceback and exits non-zero."""


class DataError(RebuyError):
    """Input data that breaks the contract. Nothing has been written when this is raised."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: pd.DataFrame | None = None,
        row_numbers: Sequence[int] | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.rows = rows
        self.row_numbers = list(row_numbers) if row_numbers is not None else None
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        head = []
        if self.file:
            head.append(f"file {self.file}")
        if self.column:
            head.append(f"column {self.column!r}")
        lines = [(": ".join([", ".join(head), self.problem]) if head else self.problem)]
        if self.row_numbers:
            lines.append(f"first offending rows (1-based data rows): {self.row_numbers}")
        if self.rows is not None and len(self.rows):
            lines.append(self.rows.to_string(max_rows=10, max_colwidth=40))
        if self.hint:
            lines.append(f"what to do: {self.hint}")
        return "\n".join(lines)
