"""Shared command-line plumbing: logging set-up and turning expected errors into one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from vaecore.config import ConfigError
from vaecore.data import DataError
from vaecore.sweep import Busy

EXPECTED = (ConfigError, DataError, FileNotFoundError, ConnectionError, Busy)


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
