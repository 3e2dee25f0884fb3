"""Which names of a workload table the catalog does not recognise, and what each is taken as.

An unknown hardware, model, framework or precision is never an error (the predictor falls back
to a generic description), but a misspelt name silently answered from a fallback is a loss a
caller must be able to see: :func:`unrecognised_names` lists every such name once, with the
rows it appears in and the description prediction used instead.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from .catalog import (
    FRAMEWORKS, NO_INFERRED_DEVICES, PRECISION_BYTES, InferredDevices, model_from_name,
    normalise_framework, normalise_precision, resolve_model,
)

#: the columns checked, in the order they are reported
NAME_COLUMNS = ("hardware", "model", "framework", "precision")


class UnrecognisedName(NamedTuple):
    column: str  # "hardware", "model", "framework" or "precision"
    name: str  # as written in the table
    rows: int  # how many rows use it
    taken_as: str  # what prediction describes it with instead

    def __str__(self) -> str:
        return (f"{self.column} {self.name!r} ({self.rows} row{'s' if self.rows != 1 else ''}) "
                f"is not in the catalog: taken as {self.taken_as}")


def _hardware(name: str, inferred: InferredDevices) -> str | None:
    hw = inferred.resolve(name)
    if hw is None:
        return "the generic accelerator (catalog.FALLBACK_HARDWARE)"
    if hw.vendor_hint:  # described by device_inference from the bundle's benchmarks
        return "the device the bundle's benchmarks of that name describe"
    return None


def _model(name: str) -> str | None:
    if resolve_model(name) is not None:
        return None
    md = model_from_name(name)
    if md is None:
        return "a 7B dense model (the name states no size)"
    size = (f"{md.params_b:g}B ({md.active_b:g}B active)" if md.active_b != md.params_b
            else f"{md.params_b:g}B")
    return f"a {size} model shaped like the catalog models of its size"


def _framework(name: str) -> str | None:
    return None if normalise_framework(name) in FRAMEWORKS else "an unlisted framework (fw_other)"


def _precision(name: str) -> str | None:
    return (None if normalise_precision(name) in PRECISION_BYTES
            else "2 bytes per weight (fp16)")


#: rows per distinct name, per name column: ``{column: Counter({name: rows})}``
NameCounts = dict[str, Counter]


def name_counts(table) -> NameCounts:
    """Rows per distinct name in each of ``table``'s name columns (an Arrow table or record
    batch; nulls are not names). Counted by Arrow, so a batch of millions of rows with a few
    distinct names costs a pass over its dictionary, not a Python object per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts: NameCounts = {}
    for column in NAME_COLUMNS:
        if column not in table.schema.names:
            continue
        values = table.column(column)
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            values = pc.cast(values, pa.string())
        tally = pc.value_counts(pc.drop_null(values))
        counts[column] = Counter(dict(zip(tally.field("values").to_pylist(),
                                          tally.field("counts").to_pylist())))
    return counts


def merge_counts(into: NameCounts, more: NameCounts) -> NameCounts:
    """Add the counts ``more`` to ``into`` (modified and returned)."""
    for column, tally in more.items():
        into.setdefault(column, Counter()).update(tally)
    return into


def unrecognised_names(table, inferred: InferredDevices = NO_INFERRED_DEVICES
                       ) -> list[UnrecognisedName]:
    """Every name in ``table``'s name columns (those of :data:`NAME_COLUMNS` it has) that the
    catalog does not recognise, once per distinct spelling: by column, then most rows first,
    then name. ``inferred`` holds the devices a bundle describes from its own benchmarks (a
    name found there is still listed, taken as that device)."""
    return unrecognised_in(name_counts(table), inferred)


def unrecognised_in(counts: NameCounts, inferred: InferredDevices = NO_INFERRED_DEVICES
                    ) -> list[UnrecognisedName]:
    """:func:`unrecognised_names` of names already counted (:func:`name_counts`, summed over
    the batches or files of a larger input with :func:`merge_counts`)."""
    found: list[UnrecognisedName] = []
    for column in NAME_COLUMNS:
        for name, rows in counts.get(column, {}).items():
            taken = (_hardware(name, inferred) if column == "hardware" else
                     _model(name) if column == "model" else
                     _framework(name) if column == "framework" else _precision(name))
            if taken is not None:
                found.append(UnrecognisedName(column, name, rows, taken))
    order = {c: i for i, c in enumerate(NAME_COLUMNS)}
    found.sort(key=lambda u: (order[u.column], -u.rows, u.name))
    return found
