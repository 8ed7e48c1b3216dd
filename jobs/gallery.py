"""Build the static gallery of a sweep: python -m jobs.gallery <out>/<sweep>."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jobs import _cli
from vaecore.gallery import site


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = _cli.parser("vae-gallery", __doc__)
    p.add_argument(
        "sweep_dir", type=Path, help="the sweep folder, e.g. runs/demo (holds manifest.json, trials/)"
    )
    return p.parse_args(argv)


def publish(sweep_dir: Path) -> Path:
    """Build the gallery and print where it is and how to view it."""
    start = time.perf_counter()
    index = site.build(sweep_dir).resolve()
    print(f"gallery: {index} (built in {time.perf_counter() - start:.1f} s)")
    print(
        f"view it: open file://{index} in a browser, or run "
        f"`python -m http.server --bind 127.0.0.1 -d {sweep_dir} 8000` and open http://127.0.0.1:8000/gallery/"
        f" (this machine only: the folder holds the models too)"
    )
    return index


def main(argv: list[str] | None = None) -> int:
    publish(parse(argv).sweep_dir)
    return 0


def cli() -> None:
    """vae-gallery and `python -m jobs.gallery`: an expected error is one line on stderr, exit 2."""
    _cli.run(main)


if __name__ == "__main__":
    cli()
