"""Shared command-line plumbing: the parser with the options the jobs share, logging set-up, and
turning expected errors into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from vaecore.config import ConfigError
from vaecore.datafiles import DataError
from vaecore.sweep import Busy

EXPECTED = (ConfigError, DataError, FileNotFoundError, ConnectionError, Busy)


def parser(
    prog: str, doc: str | None, overrides: str | None = None, address: str | None = None
) -> argparse.ArgumentParser:
    """The parser each job starts from. `overrides` and `address` are help texts: given, the job has
    `--set KEY=VALUE` (repeatable, into args.overrides) and `--address` (default: $RAY_ADDRESS, the
    same for every job, so an exported address means the same cluster to all of them)."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    shared = p.add_argument_group("options shared by the vae-* commands") if overrides or address else p
    if overrides:
        shared.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=overrides
        )
    if address:
        shared.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help=address)
    return p


def run(main: Callable[[], int]) -> None:
    """Call main(); expected mistakes print one line to stderr and exit 2, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        code = main()
    except EXPECTED as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to continue where it stopped", file=sys.stderr)
        code = 130
    sys.exit(code)
