"""Where a sweep's wall time goes: python -m benchmarks.sweep_timeline [--config ...] [--out DIR].

Runs `jobs.sweep --fresh` as the README does (local Ray unless --address) and reports, per trial,
its training (the epochs' own seconds), the time around it inside its Ray trial (worker start,
set-up, teardown), its post-processing; the sweep's totals; and when the gallery first showed a
finished (post-processed) run against when the last trial finished training. Prints markdown rows
for docs/BENCHMARKS.md. The machine should be quiet: say in the table what else ran.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vaecore import runs

REPO = Path(__file__).resolve().parent.parent
FACT = re.compile(r"(\d+) completed.*?(?:\((\d+) not post-processed\))?</dd>")


def finished_runs(index: Path) -> int:
    """Completed and post-processed runs according to the gallery's index.html (0 if unreadable)."""
    try:
        text = index.read_text()
    except OSError:
        return 0
    m = FACT.search(text.split("<dt>runs</dt>", 1)[-1])
    return int(m[1]) - int(m[2] or 0) if m else 0


def watch(index: Path, start: float, seen: dict, stop: threading.Event) -> None:
    while not stop.is_set() and "first_gallery" not in seen:
        if finished_runs(index) > 0:
            seen["first_gallery"] = time.time() - start
        time.sleep(0.25)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="jobs/configs/demo.toml")
    p.add_argument("--out", type=Path, default=None, help="output root (default: a new temp folder)")
    p.add_argument("--address", default=None)
    args, extra = p.parse_known_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="timeline-"))
    cmd = [sys.executable, "-m", "jobs.sweep", "--config", args.config, "--out", str(out), "--fresh"]
    cmd += ["--address", args.address] if args.address else []
    start, seen, stop = time.time(), {}, threading.Event()
    proc = subprocess.Popen(cmd + extra, cwd=REPO, stdout=subprocess.PIPE, text=True)
    name = None
    for line in proc.stdout:
        print(f"[{time.time() - start:7.1f}] {line}", end="", flush=True)
        m = re.match(r"sweep '([^']+)'", line)
        if m and name is None:
            name = m[1]
            threading.Thread(
                target=watch, args=(out / name / "gallery" / "index.html", start, seen, stop), daemon=True
            ).start()
    proc.wait()
    stop.set()
    if name is None:
        sys.exit(f"the sweep did not start (exit {proc.returncode})")
    wall = time.time() - start
    sweep = out / name
    print(f"\nexit {proc.returncode}; wall {wall:.1f} s; sweep at {sweep}\n")
    print("| trial | training s | around training s (start/setup/teardown) | post-processing s |")
    print("|---|---|---|---|")
    trained_at, post_total, train_total = [], 0.0, 0.0
    for tdir in sorted((sweep / "trials").iterdir()):
        status = runs.read_dict(tdir / "status.json")
        rows = runs.read_jsonl(tdir / "metrics.jsonl")
        training = sum(r["train_seconds"] + r["eval_seconds"] for r in rows)
        parts = [status.get(k, float("nan")) for k in ("worker_start_s", "setup_s", "teardown_s")]
        post = runs.read_dict(tdir / "summary.json").get("timings", {}).get("total", float("nan"))
        trained_at.append((tdir / "status.json").stat().st_mtime - start)
        post_total += post
        train_total += status.get("seconds", 0.0)
        print(
            f"| {tdir.name} | {training:.1f} | {status.get('seconds', 0) - training:.1f} "
            f"({'/'.join(f'{v:.1f}' for v in parts)}) | {post:.1f} |"
        )
    manifest = runs.read_dict(sweep / "manifest.json")
    sweep_s = manifest.get("timings", {}).get("sweep_s", float("nan"))
    print(
        f"\ntraining phase (Tune, incl. in-trial post-processing) {sweep_s:.1f} s; trials' training "
        f"{train_total:.1f} s summed; post-processing {post_total:.1f} s summed "
        f"({post_total / max(train_total, 1e-9):.0%} of training)"
    )
    first = seen.get("first_gallery")
    print(
        f"first gallery with a finished run at {first if first is None else round(first, 1)} s; "
        f"last trial finished training at {max(trained_at):.1f} s; wall {wall:.1f} s "
        f"({wall - max(trained_at):.1f} s after it)"
    )


if __name__ == "__main__":
    main()
