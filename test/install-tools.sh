#!/usr/bin/env bash
# Installs the Debian packages some tests run for real: prometheus and promtool
# (the metrics tests scrape a run), Open MPI's mpirun (workers launched by
# it), Chromium (the report page is opened in a real headless browser) and the
# DejaVu fonts (the figures' text). `npm test` runs this first; it does nothing when they are there. It
# needs root for apt-get; without root it names the command to run, and fails:
# a test that cannot run is not a pass.
set -euo pipefail
need=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
command -v mpirun >/dev/null || need+=(openmpi-bin)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "npm test needs Debian packages: ${need[*]}" >&2
  echo "install them as root: apt-get update && apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "installing for the tests (apt-get, as root): ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${need[@]}" >&2
