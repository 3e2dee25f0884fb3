"""The library's exception types. Every message says what is wrong and where."""

from __future__ import annotations

from collections.abc import Sequence


class ALAError(Exception):
    """Base class of every error ala_fast raises on purpose."""


class SchemaError(ALAError, ValueError):
    """A table does not have the canonical columns or types."""


class ValidationError(ALAError, ValueError):
    """Values in a table are invalid (null, NaN, non-positive, ...).

    ``column`` names the column, ``rows`` holds the offending row numbers (all of them) and
    ``expected`` what was expected there. A table with problems in several columns raises one
    error naming every column: ``problems`` lists each as (column, rows, expected), the first
    being ``column``, ``rows`` and ``expected``.
    """

    def __init__(self, column: str, rows: Sequence[int], expected: str, where: str = "",
                 more: Sequence[tuple[str, Sequence[int], str]] = ()) -> None:
        self.problems = [(str(c), [int(r) for r in rs], str(e))
                         for c, rs, e in [(column, rows, expected), *more]]
        self.column, self.rows, self.expected = self.problems[0]
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(prefix + "; ".join(describe_problem(*p) for p in self.problems))

    @classmethod
    def of(cls, problems: Sequence[tuple[str, Sequence[int], str]],
           where: str = "") -> "ValidationError":
        """One error for one or more (column, rows, expected) problems."""
        return cls(*problems[0], where, problems[1:])

    def __reduce__(self):  # picklable (worker processes send it back)
        return (type(self), (self.column, self.rows, self.expected, self.where,
                             self.problems[1:]))


def describe_problem(column: str, rows: list[int], expected: str) -> str:
    """One invalid column as ``ValidationError`` words it (the first five rows shown)."""
    first = ", ".join(str(r) for r in rows[:5])
    more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
    return f"column {column!r}: {len(rows)} invalid row(s) at {first}{more}; expected {expected}"


class ReaderError(ALAError, ValueError):
    """A file cannot be read or its layout is not recognised."""


class FitError(ALAError, ValueError):
    """A curve cannot be fitted (for example, no usable points)."""


class BundleError(ALAError):
    """A model bundle is missing, corrupted or of an unsupported format version."""


def located(exc: ALAError, where: str, row_offset: int = 0) -> ALAError:
    """The same error, said of ``where`` (a file) with row numbers shifted by ``row_offset``
    (for errors raised on one batch of a larger input)."""
    if isinstance(exc, ValidationError):
        return ValidationError.of([(c, [r + row_offset for r in rows], e)
                                   for c, rows, e in exc.problems], where)
    return type(exc)(f"{where}: {exc}")
