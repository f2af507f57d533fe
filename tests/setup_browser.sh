#!/usr/bin/env bash
# Set-up for tests/test_browser.py: Debian's Chromium, driven by Playwright for Python (a dev dependency) through
# executable_path, so no `playwright install` download is needed. Idempotent: does nothing if chromium is present.
# Usage: tests/setup_browser.sh   (as root, or with sudo available)
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium present: $(command -v chromium)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
command -v chromium >/dev/null 2>&1 || { echo "chromium was not installed" >&2; exit 1; }
echo "installed: $(chromium --version 2>/dev/null | head -1)"
