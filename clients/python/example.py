#!/usr/bin/env python3
"""The complete setup of the nvmet-ha API through the Python client: a
subsystem, a namespace, a port, the port-subsystem link, a host, the
host-subsystem link, then the global enable; prints each resulting object.

    python3 example.py --socket /run/nvmet-ha/nvmetd.sock
    python3 example.py --url 10.0.0.1:7100,10.0.0.2:7100 --api-key-file key --cacert ca.pem

Run it again and each create fails (the object exists): the error is printed
as nvmetctl prints it and the existing object, found by a query, is used
instead. Exit status 0 when every object is there at the end, 1 when a step
failed, 2 when no node answered."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvmetha import DEFAULT_SOCKET, Client, NvmetError, read_key_file  # noqa: E402

SUBNQN = "nqn.2024-01.com.example:nvme:subsys1"
HOSTNQN = "nqn.2024-01.com.example:host:server1"


def step(c, what, method, arg, filters):
    """Create one object, or on an error print it and find the existing one
    with filters; the object, or None."""
    try:
        obj = c.call(method, arg)
        print("%s: created" % what)
    except NvmetError as e:
        print("%s: %s failed:" % (what, method))
        for line in str(e).splitlines():
            print("    " + line)
        found = c.call(method.replace(".create", ".query"), filters)
        if not found:
            print("%s: no existing object either" % what)
            return None
        obj = found[0]
        print("%s: using the existing one (id %s)" % (what, obj["id"]))
    print(json.dumps(obj, indent=2, sort_keys=True))
    return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="TCP endpoints HOST:PORT[,HOST:PORT...]")
    ap.add_argument("--socket", help="the node's unix socket (default %s)" % DEFAULT_SOCKET)
    ap.add_argument("--api-key-file", help="the API key (first line), for --url")
    ap.add_argument("--cacert", help="CA certificates (PEM) verifying the nodes' TLS certificates")
    ap.add_argument("--cert", help="client certificate (PEM)")
    ap.add_argument("--key", help="its key (mode 0600)")
    ap.add_argument("--plaintext", action="store_true", help="TCP without TLS")
    ap.add_argument("--device", default="zvol/tank/nvme/ns1", help="the namespace's device")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    if a.url and a.socket:
        ap.error("give --url or --socket, not both")
    endpoints = a.url.split(",") if a.url else ["unix:" + (a.socket or DEFAULT_SOCKET)]
    key = read_key_file(a.api_key_file) if a.api_key_file else None
    with Client(endpoints, api_key=key, cafile=a.cacert, certfile=a.cert, keyfile=a.key,
                plaintext=a.plaintext, timeout=a.timeout) as c:
        subsys = step(c, "subsystem", "nvmet.subsys.create",
                      {"name": SUBNQN, "serial": "TRUENAS001"}, [["subnqn", "=", SUBNQN]])
        if subsys is None:
            return 1
        sid = subsys["id"]
        ns = step(c, "namespace", "nvmet.namespace.create",
                  {"subsys": sid, "device": a.device, "device_nguid": None, "device_uuid": None,
                   "enabled": True},
                  [["subsys.id", "=", sid], ["nsid", "=", 1]])
        port = step(c, "port", "nvmet.port.create",
                    {"addr_trtype": "TCP", "addr_traddr": "0.0.0.0", "addr_trsvcid": "4420",
                     "addr_adrfam": "IPV4"},
                    [["addr_trtype", "=", "TCP"], ["addr_traddr", "=", "0.0.0.0"],
                     ["addr_trsvcid", "=", 4420]])
        if port is None:
            return 1
        link = step(c, "port_subsys", "nvmet.port_subsys.create",
                    {"port": port["id"], "subsys": sid},
                    [["port.id", "=", port["id"]], ["subsys.id", "=", sid]])
        host = step(c, "host", "nvmet.host.create", {"hostnqn": HOSTNQN},
                    [["hostnqn", "=", HOSTNQN]])
        if host is None:
            return 1
        hlink = step(c, "host_subsys", "nvmet.host_subsys.create",
                     {"host": host["id"], "subsys": sid},
                     [["host.id", "=", host["id"]], ["subsys.id", "=", sid]])
        glob = c.call("nvmet.global.update", {"enabled": True})
        print("global: " + json.dumps(glob, sort_keys=True))
        return 0 if None not in (ns, link, hlink) and glob.get("enabled") else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (NvmetError, ConnectionError) as e:
        print(e, file=sys.stderr)
        sys.exit(1 if isinstance(e, NvmetError) else 2)
