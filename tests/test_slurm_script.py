"""scripts/slurm/sweep.sh's multi-node shared-storage check, run outside Slurm.

The project's test Slurm has one node, so a two-node allocation is played by stand-in `srun`,
`scontrol` and `ray` commands on PATH (a unit test of the script's own logic): the stand-in
srun runs `test -f MARKER` either as a node that shares the folder or as one that does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from procs import REPO

SCRIPT = REPO / "scripts" / "slurm" / "sweep.sh"

SCONTROL = """#!/usr/bin/env bash
case "$1 $2" in
  "show hostnames") echo n1; echo n2 ;;
  "show node") echo "NodeName=$3 NodeAddr=10.9.9.1 State=IDLE" ;;
esac
"""
# The check is `srun ... --overlap test -f MARKER`; a Ray step is `srun ... RAY start ... --block`.
SRUN = """#!/usr/bin/env bash
echo "srun $*" >>"$CALLS"
while [[ $1 == -* ]]; do [[ $1 == -w ]] && shift; shift; done
if [[ $1 == test ]]; then
  {check}
fi
exit 3  # a Ray step that dies at once: the script stops right after its check
"""
RAY = """#!/usr/bin/env bash
exit 1  # `ray status`: no cluster
"""


def run_script(tmp_path: Path, node_sees_the_folder: bool) -> tuple[subprocess.CompletedProcess, Path, Path]:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    check = 'exec "$@"' if node_sees_the_folder else "exit 1  # the other node: no such file"
    for name, text in (("scontrol", SCONTROL), ("srun", SRUN.format(check=check)), ("ray", RAY)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    venv = tmp_path / "venv"  # VAE_VENV whose activate puts the stand-ins first on PATH
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{stubs}:{Path(sys.executable).parent}:$PATH"\n')
    out, calls = tmp_path / "shared", tmp_path / "calls.txt"
    env = {
        **os.environ,
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "n[1-2]",
        "SLURM_JOB_CPUS_PER_NODE": "2(x2)",
        "SLURM_SUBMIT_DIR": str(REPO),
        "VAE_VENV": str(venv),
        "VAE_OUT": str(out),
        "CALLS": str(calls),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--config", "jobs/configs/tiny.toml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, out, calls


@pytest.mark.parametrize("shared", [False, True])
def test_a_multi_node_job_stops_unless_every_node_sees_the_output_folder(tmp_path, shared):
    proc, out, calls = run_script(tmp_path, shared)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert f"checking that {out} is visible on all 2 nodes" in text
    srun = calls.read_text().splitlines()
    marker = out / ".slurm-shared-check-4242"
    assert srun[0] == f"srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --overlap test -f {marker}"
    assert not marker.exists()  # removed whether the check passed or not
    error = (
        f"ERROR: output folder {out} is not on storage shared by all nodes (n[1-2]): "
        "set VAE_OUT to a shared path"
    )
    if shared:
        assert error not in text and "starting Ray head on n1 at 10.9.9.1:" in text
    else:
        assert proc.stderr.strip().endswith(error) and proc.stderr.count("ERROR") == 1
        assert len(srun) == 1 and "starting Ray" not in text  # stopped before Ray
