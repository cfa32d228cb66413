#!/usr/bin/env bash
# The container test (ctest -L docker; README "Containers"). Two parts:
#   cluster  builds docker/Dockerfile on a Debian 12 base image made with
#            debootstrap (no registry needed), starts docker/compose.yml (two
#            data nodes and a witness on 198.51.100.0/25, TLS on the RPC
#            ports), runs the complete setup through nvmetctl (a FILE
#            namespace on a shared volume, a port on a virtual IP, a host,
#            the links, the failover VIP), kills the active container and
#            checks the other data node becomes MASTER and holds the VIP
#            within a bound, restarts the killed one (it comes back BACKUP,
#            without the VIP), then tears it all down.
#   package  builds the .deb with cpack from BUILD_DIR, installs it with apt
#            into a container of the base image, starts nvmetd with the
#            installed config as the unit does, checks it serves through
#            nvmetctl, stops it and purges the package.
# With no engine running, it starts its own dockerd (bridge and address
# pools inside 198.51.100.128/25, no iptables rules, no ip_forward change,
# its state under build/docker/) and stops it at the end; an engine that
# already runs is used and left running. Exit 77 (a skip) only when no
# engine can run here: not root, docker.io, docker-compose or debootstrap
# missing (bash scripts/deps.sh docker), or dockerd does not start.
#   bash scripts/docker-test.sh [--build-dir DIR] [--rmi] [--keep] [all|cluster|package]
#     --build-dir DIR  the build tree whose package the package part installs
#                      (default build/release)
#     --rmi            remove the images this run built at the end (the
#                      cached rootfs tarball stays)
#     --keep           leave the cluster up after the checks (and the engine
#                      this script started): look around; the next run
#                      takes both down
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
BUILD_DIR=$TOP/build/release
RMI=0
KEEP=0
PART=all
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir)
        [ $# -ge 2 ] && [ -d "$2" ] || { echo "$0: --build-dir wants a build directory" >&2; exit 2; }
        BUILD_DIR=$(cd "$2" && pwd)
        shift ;;
    --rmi) RMI=1 ;;
    --keep) KEEP=1 ;;
    all | cluster | package) PART=$1 ;;
    *) echo "usage: $0 [--build-dir DIR] [--rmi] [--keep] [all|cluster|package]" >&2; exit 2 ;;
    esac
    shift
done
SKIP=77
OUT=$TOP/build/docker          # shared by every build tree: one cache
ENG=$OUT/engine
RUN=$OUT/run-$PART
BASE_IMAGE=nvmet-ha-base:bookworm
NODE_IMAGE=nvmet-ha:test
PKG_IMAGE=nvmet-ha-pkg:test
PKG_CT=nvmet-ha-pkg-test
PROJECT=nvmethatest
COMPOSE=(docker-compose -p "$PROJECT" -f "$TOP/docker/compose.yml")
VIP=198.51.100.100
URLS=198.51.100.11:7100,198.51.100.12:7100,198.51.100.13:7100
T0=$(date +%s)
# the legacy builder: no BuildKit frontend image to pull, --network host
export DOCKER_BUILDKIT=0

log() { echo "docker-test [$(($(date +%s) - T0)) s]: $*"; }
die() { echo "docker-test: FAILED: $*" >&2; exit 1; }
skip() { echo "docker-test: SKIPPED: $*" >&2; exit "$SKIP"; }

if [ "$(id -u)" -ne 0 ]; then
    skip "needs root (it runs dockerd and debootstrap)"
fi
for tool in docker dockerd docker-compose debootstrap; do
    command -v "$tool" >/dev/null ||
        skip "$tool is not installed (bash scripts/deps.sh docker installs docker.io, docker-compose and debootstrap)"
done

# --- the engine ---------------------------------------------------------------
OWN_ENGINE=0
ENGINE_PID=""
MADE_DOCKER0=0
# our dockerd's exec root holds unix sockets: keep its path short
EXEC_ROOT=$ENG/exec
if [ ${#EXEC_ROOT} -gt 60 ]; then
    EXEC_ROOT=/run/nvmet-ha-docker
fi
BUILT=()

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

# Starts dockerd with every address it hands out in 198.51.100.128/25 (the
# compose network takes 198.51.100.0/25 explicitly), without iptables rules
# or NAT (images are built with --network host; the cluster only talks
# inside its bridge) and without turning on the host's ip_forward.
start_engine() {
    mkdir -p "$ENG/data" "$EXEC_ROOT"
    rm -f "$ENG/made-docker0"
    ip link show docker0 >/dev/null 2>&1 || { MADE_DOCKER0=1; touch "$ENG/made-docker0"; }
    export DOCKER_HOST=unix://$EXEC_ROOT/docker.sock
    rm -f "$EXEC_ROOT/docker.sock"
    dockerd --data-root "$ENG/data" --exec-root "$EXEC_ROOT" --pidfile "$ENG/dockerd.pid" \
        --host "$DOCKER_HOST" --bip 198.51.100.129/26 \
        --default-address-pool base=198.51.100.192/26,size=28 \
        --iptables=false --ip-masq=false --ip-forward=false --ip6tables=false \
        >"$ENG/dockerd.log" 2>&1 9>&- & # (not the lock: dockerd may outlive --keep)
    ENGINE_PID=$!
    OWN_ENGINE=1
    local i
    for i in $(seq 1 60); do
        engine_up && return 0
        kill -0 "$ENGINE_PID" 2>/dev/null || break
        sleep 0.5
    done
    echo "--- dockerd's log ($ENG/dockerd.log):" >&2
    tail -n 25 "$ENG/dockerd.log" >&2 || true
    stop_engine
    skip "dockerd did not start (its log above says why): no docker engine can run here"
}

# The processes whose command line names this engine's exec root.
engine_children() {
    local f pid args out=""
    [ -n "$EXEC_ROOT" ] || return 0
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        args=()
        mapfile -d '' args 2>/dev/null <"$f" || continue
        [[ " ${args[*]:-} " == *" $EXEC_ROOT/"* || " ${args[*]:-} " == *"=$EXEC_ROOT/"* ]] &&
            out="$out $pid"
    done
    echo "${out# }"
}

stop_engine() {
    [ "$OWN_ENGINE" = 1 ] && [ -n "$ENGINE_PID" ] || return 0
    kill -TERM "$ENGINE_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 60); do
        kill -0 "$ENGINE_PID" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$ENGINE_PID" 2>/dev/null; then
        echo "docker-test: dockerd $ENGINE_PID did not stop in 30 s: killing it" >&2
        kill -KILL "$ENGINE_PID" 2>/dev/null || true
    fi
    wait "$ENGINE_PID" 2>/dev/null || true
    ENGINE_PID=""
    # containerd and its shims (started by this dockerd, their command lines
    # name its exec root) go shortly after it; wait for them, bounded
    local pids
    for i in $(seq 1 40); do
        pids=$(engine_children)
        [ -z "$pids" ] && break
        [ "$i" -eq 40 ] && { echo "docker-test: killing what dockerd left: $pids" >&2; kill -KILL $pids 2>/dev/null; }
        sleep 0.25
    done
    # dockerd leaves mounts in its exec root (netns/default) and its default
    # bridge behind
    local m
    for m in $(awk -v a="$ENG/" -v b="$EXEC_ROOT/" \
        'index($2, a) == 1 || index($2, b) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    if [ "$MADE_DOCKER0" = 1 ] && ip link show docker0 >/dev/null 2>&1; then
        ip link del docker0 || true
    fi
    rm -f "$ENG/made-docker0"
}

cleanup() {
    local rc=$?
    set +e
    if [ "$KEEP" = 1 ] && [ $rc -eq 0 ]; then
        log "--keep: the cluster stays up (DOCKER_HOST=${DOCKER_HOST:-default}, dockerd pid ${ENGINE_PID:-not ours}); the next run without --keep takes it down"
        return
    fi
    if engine_up; then
        if [ -n "${CLUSTER_UP:-}" ] && [ $rc -ne 0 ]; then
            { "${COMPOSE[@]}" ps; "${COMPOSE[@]}" logs --tail=30; } >&2
        fi
        # also a cluster an earlier --keep run left: its bridge would stay
        # on the host after the engine stops
        timeout 120 "${COMPOSE[@]}" down -v -t 5 >/dev/null 2>&1
        docker rm -f "$PKG_CT" >/dev/null 2>&1
        if [ "$RMI" = 1 ] && [ ${#BUILT[@]} -gt 0 ]; then
            log "--rmi: removing ${BUILT[*]} and the build stages"
            docker rmi -f "${BUILT[@]}" >/dev/null 2>&1
            docker image prune -f >/dev/null 2>&1
            docker images --format '{{.Repository}}:{{.Tag}}' | grep -qxF -f <(printf '%s\n' "${BUILT[@]}") &&
                { echo "docker-test: --rmi left an image" >&2; [ $rc -ne 0 ] || rc=1; }
        fi
    fi
    stop_engine
    # nothing of ours stays on the host: no bridge with our addresses, no
    # dockerd or containerd of our exec root
    local left
    left=$(host_addrs | grep -vxF -f <(echo "$HOST_ADDRS") || true)
    [ "$OWN_ENGINE" = 1 ] && left="$left$(engine_children)"
    if [ -n "$left" ]; then
        echo "docker-test: left on the host: $left" >&2
        [ $rc -ne 0 ] || rc=1
    fi
    log "done (exit $rc)"
    exit $rc
}
# the host's interfaces with addresses in 198.51.100.0/24
host_addrs() { ip -o -4 addr show | awk '$4 ~ /^198\.51\.100\./ {print $2, $4}'; }
HOST_ADDRS=$(host_addrs)
trap cleanup EXIT

# One run at a time on a host: two would both want docker0 and the
# compose network's 198.51.100.0/25 in the host's namespace.
mkdir -p /run/lock
exec 9>/run/lock/nvmet-ha-docker-test.lock
if ! flock -n 9; then
    log "another docker-test.sh runs on this host: waiting for it (at most 25 minutes)"
    flock -w 1500 9 || die "another docker-test.sh held the lock for 25 minutes"
fi

# the engine an earlier run left up with --keep: this run stops it
if [ -z "${DOCKER_HOST:-}" ] && [ -S "$EXEC_ROOT/docker.sock" ] && [ -s "$ENG/dockerd.pid" ] &&
    DOCKER_HOST=unix://$EXEC_ROOT/docker.sock engine_up; then
    export DOCKER_HOST=unix://$EXEC_ROOT/docker.sock
    OWN_ENGINE=1
    ENGINE_PID=$(cat "$ENG/dockerd.pid")
    [ -e "$ENG/made-docker0" ] && MADE_DOCKER0=1
    log "using the dockerd an earlier --keep run left ($ENGINE_PID); stopping it at the end"
elif engine_up; then
    log "using the running docker engine (${DOCKER_HOST:-default socket}); it stays running"
else
    log "no engine running: starting dockerd (state in $ENG)"
    start_engine
    log "dockerd $ENGINE_PID up ($DOCKER_HOST)"
fi

# --- images -------------------------------------------------------------------
# Runs a command that downloads from Debian's mirror; once more, 5 s later,
# if it fails (a mirror's hiccup; the build cache keeps what went well).
twice() {
    "$@" && return 0
    echo "docker-test: '$1 $2 ...' failed: trying once more in 5 s" >&2
    sleep 5
    "$@"
}

# The base image: a minimal debootstrap of bookworm, imported. The rootfs
# tarball is cached (build/docker/rootfs-bookworm.tar) so a second run, or
# a fresh engine, does not debootstrap again.
bootstrap() {
    rm_root "$1"
    timeout 900 debootstrap --variant=minbase bookworm "$1" http://deb.debian.org/debian \
        >"$OUT/debootstrap.log" 2>&1
}

# Removes a debootstrap target: first whatever an interrupted debootstrap
# left mounted in it (proc, sys), and never across a file system boundary.
rm_root() {
    local m
    for m in $(awk -v a="$1/" 'index($2, a) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" || true
    done
    rm -rf --one-file-system "$1"
}

base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    local tar=$OUT/rootfs-bookworm.tar
    if [ ! -s "$tar" ]; then
        local root=$OUT/rootfs.tmp
        log "debootstrap --variant=minbase bookworm (cached afterwards in $tar)"
        twice bootstrap "$root" || { tail -n 20 "$OUT/debootstrap.log" >&2; die "debootstrap failed"; }
        cat >"$root/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
        rm_root "$root"
    fi
    log "importing $tar as $BASE_IMAGE"
    docker import - "$BASE_IMAGE" <"$tar" >/dev/null
    BUILT+=("$BASE_IMAGE")
}

# docker/Dockerfile on the base image. The legacy builder with the host's
# network: no registry, no BuildKit frontend image, no NAT.
node_image() {
    log "building $NODE_IMAGE from docker/Dockerfile"
    local out=$OUT/build-node.log
    twice timeout 1200 docker build --network host --build-arg BASE="$BASE_IMAGE" \
        --build-arg JOBS=2 -f docker/Dockerfile -t "$NODE_IMAGE" . >"$out" 2>&1 ||
        { tail -n 30 "$out" >&2; die "docker build of docker/Dockerfile failed"; }
    BUILT+=("$NODE_IMAGE")
    # .dockerignore keeps the context to the sources nvmetd builds from
    local ctx
    ctx=$(grep -o 'Sending build context to Docker daemon *[0-9.]*[kMG]*B' "$out" | grep -o '[0-9.]*[kMG]*B$' || true)
    log "build context: ${ctx:-?}"
    case $ctx in
    *GB) die "the build context is $ctx: .dockerignore lets build trees in" ;;
    *MB) [ "${ctx%.*}" -lt 5 ] 2>/dev/null || die "the build context is $ctx (over 5 MB): check .dockerignore" ;;
    esac
}

# --- the cluster --------------------------------------------------------------
# nvmetctl inside a container: the whole cluster over TLS (any node answers,
# followers forward writes to the leader; run in the witness, which is
# never killed), or one node's local socket.
ctl() {
    timeout 30 "${COMPOSE[@]}" exec -T node3 nvmetctl --url "$URLS" \
        --api-key-file /etc/nvmet-ha/api.key --cacert /etc/nvmet-ha/ca.pem call "$@"
}
ctl_on() {
    local node=$1
    shift
    timeout 15 "${COMPOSE[@]}" exec -T "$node" nvmetctl call "$@"
}
show() {
    echo "\$ nvmetctl call $*"
    ctl "$@" || die "nvmetctl call $1 failed"
}
status_of() { ctl_on "$1" failover.status 2>/dev/null | tr -d '"\r' || true; }
has_vip() { timeout 15 "${COMPOSE[@]}" exec -T "$1" ip -o -4 addr show dev eth0 2>/dev/null | grep -q " $VIP/"; }
now_ms() { date +%s%3N; }

# Waits (at most $2 seconds) until node $1 says $3; the time it took in WAITED_MS.
wait_status() {
    local node=$1 bound=$2 want=$3 start s
    start=$(now_ms)
    while [ $(($(now_ms) - start)) -lt $((bound * 1000)) ]; do
        s=$(status_of "$node")
        if [ "$s" = "$want" ]; then
            WAITED_MS=$(($(now_ms) - start))
            return 0
        fi
        sleep 0.2
    done
    echo "docker-test: $node is '${s:-no answer}', not $want, after $bound s" >&2
    return 1
}

make_keys() {
    rm -rf "$RUN"
    mkdir -p "$RUN/keys"
    (umask 077 && head -c 24 /dev/urandom | base64 >"$RUN/keys/api.key")
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/keys/raft.psk")
    bash scripts/rpc-certs.sh "$RUN/keys" node1=198.51.100.11 node2=198.51.100.12 \
        node3=198.51.100.13 >/dev/null
    chown root:root "$RUN/keys"/*
    chmod 755 "$RUN/keys"
}

run_cluster() {
    base_image
    node_image
    make_keys
    export NVMET_KEYS=$RUN/keys NVMET_IMAGE=$NODE_IMAGE
    timeout 60 "${COMPOSE[@]}" down -v -t 1 >/dev/null 2>&1 || true # a run killed earlier
    log "docker-compose up: node1, node2 (data), node3 (witness) on 198.51.100.0/25"
    CLUSTER_UP=1
    timeout 180 "${COMPOSE[@]}" up -d --no-build || die "docker-compose up failed"
    local i ok=0
    for i in $(seq 1 60); do
        ctl failover.status >/dev/null 2>&1 && { ok=1; break; }
        sleep 0.5
    done
    [ $ok = 1 ] || die "the cluster did not answer within 30 s"
    sleep 1.5 # every member registers its RPC address through Raft

    log "the complete setup through nvmetctl (TLS, --url over the three nodes)"
    local nqn=nqn.2024-01.com.example:nvme:docker1
    show nvmet.subsys.create "{\"name\": \"$nqn\", \"serial\": \"DOCKER0001\"}"
    # a FILE namespace: its backing file on the volume both data nodes share
    show nvmet.namespace.create '{"subsys": 1, "device_type": "FILE", "device_path": "/srv/nvmet/ns1.img", "filesize": 67108864, "enabled": true}'
    show failover.update "{\"vips\": [{\"address\": \"$VIP\", \"prefix\": 25, \"interface\": \"eth0\", \"node_addresses\": {\"1\": \"198.51.100.11\", \"2\": \"198.51.100.12\"}}], \"announce_count\": 2, \"announce_interval_ms\": 100}"
    show nvmet.port.create "{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"$VIP\", \"addr_trsvcid\": 4420, \"addr_adrfam\": \"IPV4\"}"
    show nvmet.port_subsys.create '{"port": 1, "subsys": 1}'
    show nvmet.host.create '{"hostnqn": "nqn.2024-01.com.example:host:docker-client"}'
    show nvmet.host_subsys.create '{"host": 1, "subsys": 1}'
    show nvmet.global.update '{"enabled": true}'

    # exactly one data node is MASTER, holds the VIP and links the port
    local active="" backup="" s n
    for i in $(seq 1 50); do
        active=""
        for n in node1 node2; do
            s=$(status_of $n)
            [ "$s" = MASTER ] && active="$active $n"
        done
        active=${active# }
        [ -n "$active" ] && [ "${active// /}" = "$active" ] && has_vip "$active" && break
        sleep 0.2
    done
    [ -n "$active" ] && [ "${active// /}" = "$active" ] || die "want one MASTER among node1, node2; got '$active'"
    has_vip "$active" || die "$active is MASTER but does not hold $VIP"
    backup=node1
    [ "$active" = node1 ] && backup=node2
    [ "$(status_of $backup)" = BACKUP ] || die "$backup is not BACKUP"
    has_vip $backup && die "$backup (BACKUP) holds $VIP too"
    local witness
    witness=$(status_of node3)
    log "active: $active (MASTER, holds $VIP), $backup: BACKUP, node3: ${witness:-?}"

    local tree=/var/lib/nvmet-ha/configfs/nvmet
    timeout 15 "${COMPOSE[@]}" exec -T "$active" sh -c \
        "test -L $tree/ports/1/subsystems/$nqn &&
         test \"\$(cat $tree/subsystems/$nqn/namespaces/1/device_path)\" = /srv/nvmet/ns1.img &&
         test -L $tree/subsystems/$nqn/allowed_hosts/nqn.2024-01.com.example:host:docker-client &&
         test \"\$(cat $tree/ports/1/addr_traddr)\" = $VIP" ||
        die "the rendered tree of $active lacks the setup"
    timeout 15 "${COMPOSE[@]}" exec -T "$backup" sh -c \
        "test -d $tree/subsystems/$nqn && test ! -e $tree/ports/1/subsystems/$nqn" ||
        die "$backup should render the subsystem but not link the port"
    local size
    size=$(timeout 15 "${COMPOSE[@]}" exec -T "$backup" stat -c %s /srv/nvmet/ns1.img | tr -d '\r') ||
        die "the FILE namespace's backing file is not on the shared volume"
    [ "$size" = 67108864 ] || die "/srv/nvmet/ns1.img is $size bytes, want 67108864"
    log "rendered: $active links port 1 ($VIP:4420); $backup renders without the link; the backing file is on the shared volume"

    # the failover: SIGKILL of the active container
    local t0 took
    # the backup watches itself (every 50 ms, at most 15 s) from before the
    # kill and prints the time it saw MASTER and the VIP: no docker exec
    # latency in the figure (the containers share the host's clock)
    local victim watch=$RUN/watch.out
    victim=$(timeout 15 "${COMPOSE[@]}" ps -q "$active")
    timeout 30 "${COMPOSE[@]}" exec -T "$backup" sh -c "i=0; while [ \$i -lt 300 ]; do
        if [ \"\$(nvmetctl --timeout 1 call failover.status 2>/dev/null)\" = MASTER ] &&
           ip -o -4 addr show dev eth0 | grep -q ' $VIP/'; then date +%s%3N; exit 0; fi
        sleep 0.05; i=\$((i + 1)); done; exit 1" >"$watch" 2>&1 &
    local watcher=$!
    sleep 1
    log "docker kill $active"
    t0=$(now_ms)
    docker kill "$victim" >/dev/null || die "docker kill $active failed"
    wait "$watcher" || { cat "$watch" >&2; die "$backup did not become MASTER holding $VIP within 15 s of the kill"; }
    took=$(($(tr -d '\r' <"$watch") - t0))
    [ "$(status_of "$backup")" = MASTER ] && has_vip "$backup" || die "$backup is not MASTER with $VIP any more"
    timeout 15 "${COMPOSE[@]}" exec -T "$backup" test -L "$tree/ports/1/subsystems/$nqn" ||
        die "$backup is MASTER but does not link the port"
    log "failover: $backup MASTER holding $VIP $took ms after the kill (bound 15 s), and links the port"
    ctl nvmet.subsys.query '[]' '{"count": true}' | grep -qx 1 || die "the cluster lost the subsystem"

    # the killed node comes back as BACKUP and stays off the VIP
    log "docker start $active"
    timeout 60 "${COMPOSE[@]}" start "$active" >/dev/null || die "docker-compose start $active failed"
    wait_status "$active" 30 BACKUP || die "$active did not come back as BACKUP within 30 s"
    has_vip "$active" && die "$active came back holding $VIP"
    [ "$(status_of "$backup")" = MASTER ] || die "$backup lost MASTER when $active came back"
    log "$active back as BACKUP after ${WAITED_MS} ms; $backup stays MASTER"
    # the containers have every privilege nvmetd uses (NET_ADMIN: every
    # node, the witness too, removes VIPs it must not hold)
    local denied
    denied=$(timeout 60 "${COMPOSE[@]}" logs --no-color 2>&1 | grep -E 'not permitted|Permission denied' || true)
    [ -z "$denied" ] || die "nvmetd lacked a privilege in its container: $denied"
    if [ "$KEEP" = 1 ]; then
        echo "the cluster stays up: DOCKER_HOST=${DOCKER_HOST:-} NVMET_KEYS=$NVMET_KEYS NVMET_IMAGE=$NVMET_IMAGE ${COMPOSE[*]} exec node1 nvmetctl call cluster.status"
        return
    fi
    log "docker-compose down -v"
    timeout 120 "${COMPOSE[@]}" down -v -t 5 >/dev/null 2>&1 || die "docker-compose down failed"
    CLUSTER_UP=""
}

# --- the package --------------------------------------------------------------
run_package() {
    [ -f "$BUILD_DIR/CPackConfig.cmake" ] || die "$BUILD_DIR has no CPackConfig.cmake: build it first"
    [ -x "$BUILD_DIR/cmd/nvmetd" ] || die "$BUILD_DIR/cmd/nvmetd is not built"
    base_image
    local pkg=$RUN/pkg
    rm -rf "$RUN"
    mkdir -p "$pkg"
    log "cpack -G DEB in $BUILD_DIR"
    (cd "$BUILD_DIR" && timeout 300 cpack -G DEB -B "$pkg" --config "$BUILD_DIR/CPackConfig.cmake" \
        >"$pkg/cpack.log" 2>&1) || { cat "$pkg/cpack.log" >&2; die "cpack failed"; }
    local deb
    deb=$(ls "$pkg"/nvmet-ha_*_amd64.deb 2>/dev/null | head -n 1)
    [ -n "$deb" ] || die "cpack made no nvmet-ha_*_amd64.deb"
    cp "$deb" "$pkg/ctx-nvmet-ha.deb"
    mkdir -p "$pkg/ctx"
    mv "$pkg/ctx-nvmet-ha.deb" "$pkg/ctx/nvmet-ha.deb"
    # apt installs the package and its dependencies in a container of the
    # base image (docker build: the host's network reaches Debian's mirror)
    cat >"$pkg/ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY nvmet-ha.deb /tmp/
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/nvmet-ha.deb >/dev/null && rm -rf /var/lib/apt/lists/* /tmp/nvmet-ha.deb
EOF
    log "apt-get install $(basename "$deb") in a container of $BASE_IMAGE"
    twice timeout 600 docker build --network host -t "$PKG_IMAGE" "$pkg/ctx" \
        >"$pkg/build.log" 2>&1 || { tail -n 30 "$pkg/build.log" >&2; die "installing the package failed"; }
    BUILT+=("$PKG_IMAGE")

    docker rm -f "$PKG_CT" >/dev/null 2>&1 || true
    # no network at all: the node serves its local socket; Raft on loopback
    docker run -d --name "$PKG_CT" --network none "$PKG_IMAGE" sleep 600 >/dev/null ||
        die "docker run of $PKG_IMAGE failed"
    dex() { timeout 30 docker exec "$PKG_CT" "$@"; }
    dex test -x /usr/sbin/nvmetd -a -x /usr/bin/nvmetctl -a -f /lib/systemd/system/nvmetd.service ||
        die "the package did not install nvmetd, nvmetctl and the unit"
    [ "$(dex stat -c %a /etc/nvmet-ha)" = 700 ] || die "/etc/nvmet-ha is not mode 0700"
    # the unit's command line, with the settings a node needs appended to
    # the installed (commented) config; no systemd here: the runtime and
    # state directories the unit would create are made by hand
    dex sh -c 'cat >>/etc/nvmet-ha/nvmetd.conf <<EOF
id = 1
data-dir = /var/lib/nvmet-ha/data
raft = 127.0.0.1:7001
raft-insecure = true
configfs = /var/lib/nvmet-ha/configfs
emulate = true
EOF
mkdir -p -m 0700 /run/nvmet-ha /var/lib/nvmet-ha/configfs' || die "writing the config failed"
    local exec_start
    exec_start=$(dex sed -n 's/^ExecStart=//p' /lib/systemd/system/nvmetd.service)
    [ -n "$exec_start" ] || die "the unit has no ExecStart"
    log "starting the installed nvmetd as the unit does: $exec_start"
    timeout 10 docker exec -d "$PKG_CT" sh -c "$exec_start 2>/var/log/nvmetd.log; echo \$? >/var/log/nvmetd.rc" ||
        die "docker exec of nvmetd failed"
    local i s=""
    for i in $(seq 1 50); do
        s=$(dex nvmetctl call failover.status 2>/dev/null | tr -d '"' || true)
        [ "$s" = SINGLE ] && break
        sleep 0.2
    done
    [ "$s" = SINGLE ] || { dex cat /var/log/nvmetd.log >&2 || true; die "the installed nvmetd does not serve (failover.status '$s')"; }
    dex nvmetctl call nvmet.subsys.create '{"name": "nqn.2024-01.com.example:nvme:pkg1"}' >/dev/null ||
        die "nvmet.subsys.create on the installed nvmetd failed"
    dex nvmetctl call nvmet.global.update '{"enabled": true}' >/dev/null || die "nvmet.global.update failed"
    dex test -d /var/lib/nvmet-ha/configfs/nvmet/subsystems/nqn.2024-01.com.example:nvme:pkg1 ||
        die "the installed nvmetd did not render the subsystem"
    # (cluster.status: "nvmetctl status" shows a node without --rpc as
    # unreachable, even the one it asks)
    dex nvmetctl call cluster.status | grep -q '"leader":1,"node":{"id":1,"kind":"data"' ||
        die "cluster.status of the installed nvmetd does not show it as the leader"
    log "the installed nvmetd serves: failover.status SINGLE, a subsystem created and rendered"
    # stop it as systemd would (SIGTERM), then purge
    dex sh -c 'for p in $(pidof nvmetd); do kill -TERM $p; done; i=0
        while pidof nvmetd >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        ! pidof nvmetd >/dev/null' || die "nvmetd did not stop within 10 s of SIGTERM"
    local rc=""
    for i in $(seq 1 20); do
        rc=$(dex cat /var/log/nvmetd.rc 2>/dev/null || true)
        [ -n "$rc" ] && break
        sleep 0.1
    done
    [ "$rc" = 0 ] || { dex tail -n 5 /var/log/nvmetd.log >&2 || true; die "nvmetd exited with '$rc' on SIGTERM, want 0"; }
    dex sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq nvmet-ha >/dev/null' || die "apt-get purge failed"
    dex sh -c '! dpkg-query -W -f="\${Status}" nvmet-ha 2>/dev/null | grep -q installed &&
        test ! -e /usr/sbin/nvmetd -a ! -e /usr/bin/nvmetctl -a ! -e /etc/nvmet-ha -a ! -e /var/lib/nvmet-ha -a ! -e /lib/systemd/system/nvmetd.service' ||
        die "the purge left files of nvmet-ha behind"
    log "SIGTERM: nvmetd exited 0; purged: no nvmetd, nvmetctl, unit, /etc/nvmet-ha or /var/lib/nvmet-ha left"
    docker rm -f "$PKG_CT" >/dev/null 2>&1 || true
}

mkdir -p "$OUT"
case $PART in
cluster) run_cluster ;;
package) run_package ;;
all) run_cluster; RUN=$OUT/run-package; run_package ;;
esac
log "PASSED ($PART)"
