#!/usr/bin/env bash
# Install everything on Debian, as root: apt packages (Python, the Fashion-MNIST dataset, Slurm,
# iproute2 and util-linux for the namespaced test hosts), a virtualenv in .venv, and this package.
#   bash scripts/setup.sh          what the README's commands need
#   bash scripts/setup.sh --test   and what only the tests need: Chromium and its driver for the
#                                  gallery tests, Java for the Nu HTML checker, the [test] extras
#                                  (scripts/test.sh passes it; the demo waits for none of them)
# Re-running is quick: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-pip git dataset-fashion-mnist slurm-wlm munge iproute2 util-linux)
TEST_APT_PACKAGES=(chromium chromium-driver default-jre-headless)
extras=""  # pip extras: the tests' (pytest, ruff, selenium, the checkers) only with --test
case "${1:-}" in
  "") ;;
  --test) APT_PACKAGES+=("${TEST_APT_PACKAGES[@]}"); extras="[test]" ;;
  *) echo "setup.sh: unknown argument '$1'; use no argument, or --test for the tests' extra packages" >&2; exit 2 ;;
esac

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last successful install, or when the tests'
# extras are asked for and not yet there (an install with them also serves a plain set-up).
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat .venv/.installed 2>/dev/null || true)
if [ "$have" != "$want $extras" ] && [ "$have" != "$want [test]" ]; then
  echo "setup: installing the package${extras:+ with its test tools} into .venv (torch is large: minutes)"
  .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
  echo "$want $extras" > .venv/.installed
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch, ray; print("torch", torch.__version__, "ray", ray.__version__)'))"
