"""Errors a user can act on: each names the file, the column, the first offending rows, and what to do."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


class RebuyError(Exception):
    """Base class: the CLI prints these without a traceback and exits non-zero."""


class NoChampionError(RebuyError):
    """A model has no @champion yet: a normal state (e.g. no offer model has passed its gate), not a fault."""


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
        also: Sequence[str] = (),
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.rows = rows
        self.row_numbers = list(row_numbers) if row_numbers is not None else None
        self.hint = hint
        # further problems found in the same pass (one line each), so a user fixes them all at once
        self.also = list(also)
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
        if self.also:
            lines.append(f"{len(self.also)} more problem(s) found in the same pass:")
            lines.extend(f"  - {line}" for line in self.also)
        return "\n".join(lines)

    def headline(self) -> str:
        """One line: where and what, for listing alongside another error."""
        where = ", ".join(
            x for x in (self.file and f"file {self.file}", self.column and f"column {self.column!r}") if x
        )
        rows = f" (rows {self.row_numbers})" if self.row_numbers else ""
        return f"{where}: {self.problem}{rows}" if where else f"{self.problem}{rows}"


def combine(errors: Sequence[DataError]) -> DataError:
    """The first error in full, the others as one-line headlines under it."""
    first = errors[0]
    return DataError(
        first.problem,
        file=first.file,
        column=first.column,
        rows=first.rows,
        row_numbers=first.row_numbers,
        hint=first.hint,
        also=[*first.also, *(e.headline() for e in errors[1:])],
    )
