"""The library's exception types. Every message says what is wrong and where."""

from __future__ import annotations

from collections.abc import Sequence


class ALAError(Exception):
    """Base class of every error ala_fast raises on purpose."""


class SchemaError(ALAError, ValueError):
    """A table does not have the canonical columns or types."""


class ValidationError(ALAError, ValueError):
    """Values in a table are invalid (null, NaN, non-positive, ...).

    ``column`` names the column, ``rows`` holds the offending row numbers (all of them).
    """

    def __init__(self, column: str, rows: Sequence[int], expected: str, where: str = "") -> None:
        self.column = column
        self.rows = list(int(r) for r in rows)
        self.expected = expected
        self.where = where
        first = ", ".join(str(r) for r in self.rows[:5])
        more = f" (and {len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}column {column!r}: {len(self.rows)} invalid row(s) at {first}{more}; "
            f"expected {expected}"
        )

    def __reduce__(self):  # picklable (worker processes send it back)
        return (type(self), (self.column, self.rows, self.expected, self.where))


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
        return ValidationError(exc.column, [r + row_offset for r in exc.rows], exc.expected, where)
    return type(exc)(f"{where}: {exc}")
