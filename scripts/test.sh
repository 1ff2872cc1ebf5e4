#!/usr/bin/env bash
# Install everything the test suite needs, lint with ruff and run the whole suite.
#
# For Debian (run as root, or with sudo) and Python >= 3.11. Safe to run again:
# system packages are installed only when one is missing, and pip skips what is
# already there. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k cli`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Xvfb and Mesa: the napari GUI tests need a real (virtual) X server with OpenGL.
# xauth is a "recommends" of xvfb that xvfb-run needs, so it is named here too.
APT_PACKAGES=(
  xvfb xauth libgl1 libegl1 libopengl0 libglx-mesa0 libgl1-mesa-dri libglib2.0-0 libdbus-1-3
  libfontconfig1 libfreetype6 libx11-xcb1 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
  libxcb-xfixes0 libxcb-xkb1 libxcb-xinerama0 libxcb-xinput0
)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

# torch==2.13.0 first, in the same command: it is the local CPU wheel, whereas the
# package's range alone would pull the newest torch with gigabytes of CUDA wheels.
python -m pip install --progress-bar off torch==2.13.0 -e ".[test]"

# Lint first (ruff, configured in pyproject.toml): a lint error fails the run before the tests start.
python -m ruff check .

# pytest-xvfb (in the test extra) starts Xvfb for the GUI tests.
exec python -m pytest -q "$@"
