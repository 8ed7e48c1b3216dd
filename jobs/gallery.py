"""Build the static gallery of a sweep: python -m jobs.gallery <out>/<sweep>."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jobs import _cli
from vaecore import gallery


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vae-gallery", description=__doc__)
    p.add_argument(
        "sweep_dir", type=Path, help="the sweep folder, e.g. runs/demo (holds manifest.json, trials/)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    start = time.perf_counter()
    index = gallery.build(args.sweep_dir)
    print(
        f"gallery: {index} ({time.perf_counter() - start:.1f} s); open it in a browser, or serve "
        f"{args.sweep_dir} with python -m http.server"
    )
    return 0


if __name__ == "__main__":
    _cli.run(main)
