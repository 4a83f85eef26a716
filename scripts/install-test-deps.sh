#!/usr/bin/env bash
# Installs the Debian packages the test suite needs: strongSwan with the
# standard plugins (gcm, openssl; the interop
# peer), tshark (independent decoder), iproute2 (network namespaces).
# Idempotent: skips apt entirely when everything is already present.
set -euo pipefail
pkgs=(strongswan-swanctl charon-systemd libstrongswan-standard-plugins libstrongswan-extra-plugins tshark iproute2 openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: all Debian packages present"
  exit 0
fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
