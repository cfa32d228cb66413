#!/usr/bin/env bash
# Makes the certificates of the RPC port's TLS (README "TLS on the RPC
# port"): a CA (DIR/ca.pem, DIR/ca.key) unless DIR already has one, and for
# each NAME=ADDRESS[,ADDRESS...] a certificate DIR/NAME.pem with its key
# DIR/NAME.key (mode 0600), signed by the CA, naming each ADDRESS (an IP
# address becomes an IP subjectAltName, anything else a DNS one) and usable
# both as a server and as a client certificate (nodes present theirs when
# they call each other). EC P-256, valid DAYS days (default 825).
#   bash scripts/rpc-certs.sh keys node1=10.0.0.1 node2=10.0.0.2 node3=10.0.0.3 admin=admin.example
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [NAME=ADDRESS[,ADDRESS...] ...]" >&2
    exit 2
fi
DIR=$1
shift
DAYS=${DAYS:-825}
mkdir -p "$DIR"
umask 077
if [ ! -e "$DIR/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$DAYS" \
        -subj "/CN=nvmet-ha RPC CA" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
    chmod 644 "$DIR/ca.pem"
fi
for spec in "$@"; do
    name=${spec%%=*}
    addrs=${spec#*=}
    if [ -z "$name" ] || [ "$name" = "$spec" ] || [ -z "$addrs" ]; then
        echo "$0: '$spec': want NAME=ADDRESS[,ADDRESS...]" >&2
        exit 2
    fi
    san=""
    IFS=, read -ra list <<< "$addrs"
    for a in "${list[@]}"; do
        if [[ $a =~ ^[0-9.]+$ || $a == *:* ]]; then san="${san:+$san,}IP:$a"; else san="${san:+$san,}DNS:$a"; fi
    done
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' \
        "$san" > "$DIR/$name.ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$DIR/$name.key" -out "$DIR/$name.csr" 2>/dev/null
    openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -extfile "$DIR/$name.ext" \
        -out "$DIR/$name.pem" 2>/dev/null
    chmod 600 "$DIR/$name.key"
    chmod 644 "$DIR/$name.pem"
    rm -f "$DIR/$name.csr" "$DIR/$name.ext"
    echo "$DIR/$name.pem ($san)"
done
