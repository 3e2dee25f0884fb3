"""The ``ala-fast`` command."""

from __future__ import annotations

import argparse
import sys
import warnings

from .errors import ALAError


def _read_many(paths: list[str], source: str | None):
    from .readers import concat_tables, read_benchmarks

    tables = []
    for p in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table, report = read_benchmarks(p, source=source, return_report=True)
        print(report.summary(), file=sys.stderr)
        tables.append(table)
    return tables[0] if len(tables) == 1 else concat_tables(tables)


def cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np

    from .curves import fit_curves
    from .tables import write_table

    table = _read_many(args.data, args.source)
    params = fit_curves(table, loss=args.loss, progress=True if args.progress else None)
    n = params.num_rows
    flags = {f: int(np.sum(params.column(f).to_numpy(zero_copy_only=False))) for f in (
        "too_short", "not_monotone", "not_saturated", "above_roofline")}
    max_ape = params.column("max_ape").to_numpy()
    print(f"fitted {n} curves from {table.num_rows} rows (loss={args.loss})")
    print(f"max APE per curve: median {np.median(max_ape):.2f}%, 90th percentile "
          f"{np.percentile(max_ape, 90):.2f}%")
    print("flags: " + ", ".join(f"{k} {v}" for k, v in flags.items()))
    if args.out:
        write_table(params, args.out)
        print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .curves import DEFAULT_LOSS, LOSSES

    parser = argparse.ArgumentParser(prog="ala-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit the analytical curve of every benchmarked curve")
    p.add_argument("data", nargs="+", help="benchmark files (CSV, Parquet, Arrow)")
    p.add_argument("--out", help="parameter table to write (.parquet, .csv or .arrow)")
    p.add_argument("--loss", choices=LOSSES, default=DEFAULT_LOSS)
    p.add_argument("--source", default=None, help="input layout (detected when omitted)")
    p.add_argument("--progress", action="store_true", help="always show the progress bar")
    p.set_defaults(func=cmd_fit)

    from . import cli_model

    cli_model.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ALAError as exc:
        print(f"ala-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
