#!/usr/bin/env bash
# Install everything (scripts/setup.sh --test: with Java for the Nu HTML checker), check the import
# contracts, then run the whole test suite.
# Integration tests start the real services they use themselves: a local Ray, a one-node Slurm,
# headless Chromium.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
mkdir -p test-artifacts
# The stage boundaries (pyproject.toml [tool.importlinter]): a broken contract fails here.
.venv/bin/lint-imports --no-cache
set +e
# Two workers: much of the suite waits on services starting and stopping, and a serial run keeps
# one of the 2 cores idle a third of the time (tests/conftest.py: GROUPS, OMP_WAIT_POLICY).
.venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$code"
