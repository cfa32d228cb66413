#!/usr/bin/env bash
# Installs the Debian 12 packages nvmet-ha needs to build and test.
# Idempotent: packages already present are not downloaded again.
#   bash scripts/deps.sh          build and test
#   bash scripts/deps.sh docker   the container stage (ctest -L docker): a
#                                 docker engine, docker-compose (v1) and
#                                 debootstrap (the base image, no registry)
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libraft-dev libuv1-dev libmsgpack-dev libnvme-dev libcmocka-dev
      libjson-c-dev libssl-dev zlib1g-dev libmnl-dev libmicrohttpd-dev libsystemd-dev
      dpkg-dev
      iproute2 procps openssl
      python3-msgpack             # the Python client (clients/python/) and its test
      clang libclang-rt-14-dev)   # the libFuzzer harnesses (test.sh's last stage)
if [ "${1:-}" = docker ]; then
    PKGS=(docker.io docker-compose debootstrap iproute2 openssl)
fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    # docker.io's maintainer scripts would start the system's docker
    # service, whose default bridge sits on 172.17.0.0/16: the container
    # test starts its own engine on 198.51.100.128/25 instead, so services
    # are not started during this install (policy-rc.d, as in a chroot)
    POLICY=/usr/sbin/policy-rc.d
    if [ "${1:-}" = docker ] && [ ! -e $POLICY ]; then
        printf '#!/bin/sh\n# scripts/deps.sh docker: no service starts while it installs\nexit 101\n' |
            $SUDO tee $POLICY >/dev/null
        $SUDO chmod 755 $POLICY
        trap '$SUDO rm -f $POLICY' EXIT
    fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
