#!/usr/bin/env bash
# Installs the Debian 12 packages nvmet-ha needs to build and test.
# Idempotent: packages already present are not downloaded again.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libraft-dev libuv1-dev libmsgpack-dev libnvme-dev libcmocka-dev
      libjson-c-dev libssl-dev zlib1g-dev libmnl-dev libmicrohttpd-dev libsystemd-dev
      dpkg-dev
      iproute2 procps openssl
      python3-msgpack             # the Python client (clients/python/) and its test
      clang libclang-rt-14-dev)   # the libFuzzer harnesses (test.sh's last stage)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
