#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the console's browser tests (tests/support/browser.py), from Debian's
# packages: nothing downloads a browser or a driver of its own.
#   deploy/chromium.sh ensure|versions
# ensure:   installs chromium and chromium-driver with apt-get when either is missing, then prints their versions.
# versions: prints the versions (exit 3 when either is missing).
# No server: each test session starts its own browser through /usr/bin/chromedriver.
set -euo pipefail

browser=/usr/bin/chromium
driver=/usr/bin/chromedriver

log() { echo "chromium.sh: $*" >&2; }

installed() { [ -x "$browser" ] && [ -x "$driver" ]; }

install() {
  if installed; then return; fi
  if [ "$(id -u)" != 0 ]; then log "Chromium is not installed; run: sudo apt-get install chromium chromium-driver"; exit 1; fi
  log "installing chromium and chromium-driver from Debian's packages"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
}

versions() {
  if ! installed; then echo "missing ($browser or $driver)"; exit 3; fi
  # The launcher's /etc/chromium.d/dev-shm check can print shell noise on stderr; only the version line counts.
  echo "$("$browser" --version 2>/dev/null); $("$driver" --version 2>/dev/null | cut -d' ' -f1-2)"
}

case "${1:-}" in
  ensure) install; versions ;;
  versions) versions ;;
  *) echo "usage: $0 ensure|versions" >&2; exit 2 ;;
esac
