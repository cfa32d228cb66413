#!/usr/bin/python3
"""Integration test of the Python client (clients/python/nvmetha.py)
against real nvmetd processes on loopback:

  - one node (Raft PSK, TLS on the RPC port with a CA made by
    scripts/rpc-certs.sh, a key file of hashed admin and readonly keys):
    calls over the unix socket and TLS, errors, logins, roles, TLS with and
    without the CA, pipelined calls, a subscription, example.py twice;
  - three nodes with plaintext RPC and no node-to-node key (plaintext
    Raft and hashed API keys only, so followers answer NOT_LEADER with the
    leader's address instead of forwarding): NOT_LEADER followed to the
    leader, a write whose reply is lost retried with the same client id
    and msgid and applied once, a call riding through the leader's stop.
Every node is stopped with SIGTERM at the end and must exit 0.

Paths come from the environment (set by CMake): NVMETD_BIN, RPC_CERTS_SH,
NVMETHA_DIR. Exit 77 (skipped) without the msgpack module."""

import hashlib
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NVMETD = os.environ.get("NVMETD_BIN", os.path.join(ROOT, "build/me/cmd/nvmetd"))
CERTS_SH = os.environ.get("RPC_CERTS_SH", os.path.join(ROOT, "scripts/rpc-certs.sh"))
CLIENT_DIR = os.environ.get("NVMETHA_DIR", os.path.join(ROOT, "clients/python"))

try:
    import msgpack
except ImportError:
    print("SKIP: the Python msgpack module is missing (apt-get install python3-msgpack)")
    sys.exit(77)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, CLIENT_DIR)
import nvmetha  # noqa: E402
from nvmetha import CallTimeout, Client, NvmetError, TLSError, TransportError  # noqa: E402

ADMIN_KEY = "py-admin-" + secrets.token_hex(8)
RO_KEY = "py-ro-" + secrets.token_hex(8)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_line(name, role, key):
    """A key file line, hashed as the server checks it (PBKDF2-HMAC-SHA256)."""
    salt = os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, 10000, 32)
    return "%s %s pbkdf2-sha256$10000$%s$%s\n" % (name, role, salt.hex(), dk.hex())


def write_secret(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


class Node:
    """One nvmetd under base/nodeN: data dir, unix socket, emulated
    configfs, a device root holding zvol/tank/nvme/ns1..4."""

    def __init__(self, base, nid, tls):
        self.id, self.tls, self.base = nid, tls, base
        self.dir = os.path.join(base, "node%d" % nid)
        self.sock = os.path.join(self.dir, "nvmetd.sock")
        self.raft_port, self.rpc_port = free_port(), free_port()
        self.rpc = "127.0.0.1:%d" % self.rpc_port
        self.proc = None
        dev = os.path.join(self.dir, "root/dev/zvol/tank/nvme")
        os.makedirs(dev)
        os.makedirs(os.path.join(self.dir, "configfs"))
        for i in range(1, 5):
            os.mknod(os.path.join(dev, "ns%d" % i), stat.S_IFBLK | 0o600, os.makedev(7, 200 + i))

    def start(self, extra):
        argv = [NVMETD, "--id", str(self.id), "--data-dir", os.path.join(self.dir, "data"),
                "--raft", "127.0.0.1:%d" % self.raft_port, "--socket", self.sock,
                "--rpc", self.rpc, "--api-key-file", os.path.join(self.base, "api.keys"),
                "--configfs", os.path.join(self.dir, "configfs"), "--emulate",
                "--device-root", os.path.join(self.dir, "root"),
                "--debugfs", self.dir, "--election-timeout", "300"]
        if self.tls:
            tls = os.path.join(self.base, "tls")
            argv += ["--rpc-cert", os.path.join(tls, "node%d.pem" % self.id),
                     "--rpc-key", os.path.join(tls, "node%d.key" % self.id),
                     "--rpc-cacert", os.path.join(tls, "ca.pem")]
        else:
            argv += ["--rpc-plaintext"]
        self.log = open(os.path.join(self.dir, "nvmetd.log"), "ab")
        self.proc = subprocess.Popen(argv + list(extra), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)

    def status(self):
        """cluster.status of this node alone over its unix socket, or None."""
        try:
            with Client(["unix:" + self.sock], timeout=1.0) as c:
                return c.call("cluster.status", {"local": True})
        except (NvmetError, ConnectionError):
            return None

    def wait_up(self, leader=False, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nvmetd %d exited (%s) during start:\n%s"
                                     % (self.id, self.proc.returncode, self.read_log()))
            st = self.status()
            if st is not None and (not leader or st["node"].get("leader_ready")):
                return
            time.sleep(0.05)
        raise AssertionError("nvmetd %d did not come up:\n%s" % (self.id, self.read_log()))

    def stop(self):
        """SIGTERM and wait (bounded); the exit status (SIGKILL after 20 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            rc = "hung (SIGKILL)"
        self.log.close()
        return rc

    def read_log(self):
        with open(os.path.join(self.dir, "nvmetd.log"), errors="replace") as f:
            return f.read()[-4000:]


class Base(unittest.TestCase):
    nodes = []

    @classmethod
    def make_base(cls):
        cls.base = tempfile.mkdtemp(prefix="nvmetha-test-")
        write_secret(os.path.join(cls.base, "raft.psk"), secrets.token_hex(32) + "\n")
        write_secret(os.path.join(cls.base, "api.keys"),
                     key_line("pyadmin", "admin", ADMIN_KEY) + key_line("pyro", "readonly", RO_KEY))

    @classmethod
    def stop_all(cls):
        bad = []
        for n in cls.nodes:
            rc = n.stop()
            if rc != 0:
                bad.append("node %d exited %s:\n%s" % (n.id, rc, n.read_log()))
        if not bad:
            shutil.rmtree(cls.base, ignore_errors=True)
        if bad:
            raise AssertionError("unclean shutdown: " + "\n".join(bad))


class TestSingleNode(Base):
    """One node, TLS on its RPC port."""

    @classmethod
    def setUpClass(cls):
        cls.make_base()
        tls = os.path.join(cls.base, "tls")
        subprocess.run(["bash", CERTS_SH, tls, "node1=127.0.0.1,localhost"], check=True,
                       stdout=subprocess.DEVNULL)
        cls.ca = os.path.join(tls, "ca.pem")
        cls.node = Node(cls.base, 1, tls=True)
        cls.nodes = [cls.node]
        cls.node.start(["--raft-psk-file", os.path.join(cls.base, "raft.psk")])
        try:
            cls.node.wait_up(leader=True)
        except Exception:
            cls.stop_all()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_all()

    def unix(self, **kw):
        return Client(["unix:" + self.node.sock], **kw)

    def tls(self, key=ADMIN_KEY, **kw):
        kw.setdefault("cafile", self.ca)
        return Client([self.node.rpc], api_key=key, **kw)

    def test_unix_socket(self):
        with self.unix() as c:
            self.assertEqual(c.call("core.ping"), "pong")
            self.assertEqual(c.call("auth.me"),
                             {"name": "root", "role": "admin", "transport": "unix"})
            methods = c.call("core.get_methods")
            create = methods["nvmet.subsys.create"]
            self.assertEqual((create["role"], create["before_login"]), ("admin", False))
            self.assertTrue(create["args"].startswith("[{name!: str, "))
            self.assertTrue(methods["auth.login_with_api_key"]["before_login"])
            self.assertEqual(c.call("core.ping"), "pong")  # the connection is reused

    def test_invalid_create(self):
        with self.unix() as c:
            with self.assertRaises(NvmetError) as cm:
                c.call("nvmet.subsys.create", {"name": "", "serial": 5})
            e = cm.exception
            self.assertEqual(e.code, nvmetha.INVALID_PARAMS)
            self.assertEqual(e.errname, "EINVAL")
            self.assertIn("nvmet_subsys_create.name", e.attributes())
            self.assertIn("nvmet_subsys_create.serial", e.attributes())
            self.assertIn("[EINVAL] nvmet_subsys_create.name: ", str(e))
            with self.assertRaises(NvmetError) as cm:
                c.call("nvmet.no_such.method")
            self.assertEqual((cm.exception.code, cm.exception.errname),
                             (nvmetha.NO_METHOD, "ENOMETHOD"))
            with self.assertRaises(NvmetError) as cm:
                c.call("nvmet.subsys.get_instance", 424242)
            self.assertEqual(cm.exception.code, nvmetha.INVALID_PARAMS)
            self.assertEqual(cm.exception.errors[0][2], "ENOENT")
            self.assertTrue(str(cm.exception).startswith("[ENOENT] ALL: "), str(cm.exception))
            self.assertEqual(c.call("core.ping"), "pong")  # errors leave the connection usable

    def test_tls_with_ca(self):
        with self.tls() as c:
            self.assertEqual(c.call("auth.me"),
                             {"name": "pyadmin", "role": "admin", "transport": "tcp"})
            self.assertEqual(c.call("core.ping"), "pong")
        # the certificate names 127.0.0.1 and localhost
        with Client(["localhost:%d" % self.node.rpc_port], api_key=ADMIN_KEY,
                    cafile=self.ca) as c:
            self.assertEqual(c.call("core.ping"), "pong")

    def test_tls_without_ca(self):
        t0 = time.monotonic()
        with self.assertRaises(TLSError) as cm:
            # the system's store does not know the test CA
            self.tls(cafile=None, timeout=20).call("core.ping")
        self.assertEqual(cm.exception.errname, "EPROTO")
        self.assertIn("certificate verify failed", str(cm.exception))
        self.assertLess(time.monotonic() - t0, 5.0, "a TLS failure is final, not retried")
        with self.assertRaises(FileNotFoundError):
            self.tls(cafile=os.path.join(self.base, "missing.pem"))

    def test_plaintext_to_tls_port(self):
        with self.assertRaises(TransportError) as cm:
            Client([self.node.rpc], api_key=ADMIN_KEY, plaintext=True, timeout=1.5).call(
                "core.ping")
        self.assertIn(cm.exception.errname, ("ECONNRESET", "ETIMEDOUT"))

    def test_login(self):
        with self.assertRaises(NvmetError) as cm:
            self.tls(key="not-the-key").call("core.ping")
        self.assertEqual(cm.exception.code, nvmetha.NOT_AUTHENTICATED)
        self.assertEqual(cm.exception.errname, "ENOTAUTHENTICATED")
        with self.assertRaises(NvmetError) as cm:
            self.tls(key=None).call("core.ping")  # no login at all
        self.assertEqual(cm.exception.code, nvmetha.NOT_AUTHENTICATED)

    def test_readonly_role(self):
        with self.tls(key=RO_KEY) as c:
            self.assertEqual(c.call("auth.me")["role"], "readonly")
            self.assertIsInstance(c.call("nvmet.host.query"), list)
            with self.assertRaises(NvmetError) as cm:
                c.call("nvmet.host.create", {"hostnqn": "nqn.2024-01.com.example:ro"})
            self.assertEqual(cm.exception.errname, "EPERM")

    def test_unreachable(self):
        for ep in ("127.0.0.1:%d" % free_port(), "unix:" + os.path.join(self.base, "no.sock")):
            t0 = time.monotonic()
            with self.assertRaises(TransportError) as cm:
                Client([ep], plaintext=True, timeout=1.0).call("core.ping")
            self.assertEqual(cm.exception.errname, "ECONNREFUSED")
            took = time.monotonic() - t0
            self.assertTrue(0.9 <= took < 3.0, "retried until the timeout: %.2f s" % took)

    def test_call_many(self):
        nqns = ["nqn.2024-01.com.example:many%d" % i for i in range(100)]
        with self.tls() as c:
            hosts = c.call_many([("nvmet.host.create", {"hostnqn": q}) for q in nqns])
            self.assertEqual([h["hostnqn"] for h in hosts], nqns)
            self.assertEqual(len({h["id"] for h in hosts}), 100)
            mixed = c.call_many([("core.ping",), ("nvmet.host.create", {"hostnqn": nqns[0]}),
                                 ("nvmet.host.query", [["hostnqn", "^", "nqn.2024-01.com.example:many"]],
                                  {"count": True})], return_errors=True)
            self.assertEqual(mixed[0], "pong")
            self.assertIsInstance(mixed[1], NvmetError)
            self.assertEqual(mixed[1].errname, "EINVAL")
            self.assertEqual(mixed[2], 100)
            with self.assertRaises(NvmetError):
                c.call_many([("nvmet.host.create", {"hostnqn": nqns[1]})])

    def test_session_replay(self):
        """Two Clients with one client id: the second one's first write
        (same msgid) is answered from the session table, not applied."""
        cid = "py-test-" + secrets.token_hex(4)
        arg = {"hostnqn": "nqn.2024-01.com.example:replay"}
        with self.unix(client_id=cid) as a:
            first = a.call("nvmet.host.create", arg)
        with self.tls(client_id=cid) as b:
            self.assertEqual(b.call("nvmet.host.create", arg), first)
            self.assertEqual(b.call("nvmet.host.query", [["hostnqn", "=", arg["hostnqn"]]],
                                    {"count": True}), 1)
        with self.unix() as c:  # another client id: a new write, refused
            with self.assertRaises(NvmetError) as cm:
                c.call("nvmet.host.create", arg)
            self.assertIn("nvmet_host_create.hostnqn", cm.exception.attributes())

    def test_subscribe(self):
        """callback(event) for the collection's events, in commit order with
        the entry's fields; renewed on a new connection; unsubscribe stops
        them; an unknown name is refused with the valid ones."""
        seen = []
        with self.tls() as c:
            c.subscribe("nvmet.subsys", seen.append)
            s1 = c.call("nvmet.subsys.create", {"name": "nqn.2024-01.com.example:sub1"})
            c.call("nvmet.subsys.update", s1["id"], {"allow_any_host": True})
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                c.poll(0.2)
            self.assertEqual([(e["msg"], e["collection"], e["id"]) for e in seen[:2]],
                             [("ADDED", "nvmet.subsys", s1["id"]),
                              ("CHANGED", "nvmet.subsys", s1["id"])])
            self.assertEqual(seen[0]["fields"]["name"], "nqn.2024-01.com.example:sub1")
            self.assertIs(seen[1]["fields"]["allow_any_host"], True)
            c.close()  # the subscriptions are renewed on the next connection
            c.call("nvmet.subsys.delete", s1["id"])
            deadline = time.monotonic() + 10
            while len(seen) < 3 and time.monotonic() < deadline:
                c.poll(0.2)
            self.assertEqual((seen[2]["msg"], seen[2]["id"], seen[2]["fields"]),
                             ("REMOVED", s1["id"], {"id": s1["id"]}))
            self.assertIs(c.unsubscribe("nvmet.subsys"), True)
            c.call("nvmet.subsys.create", {"name": "nqn.2024-01.com.example:sub2"})
            c.poll(0.5)
            self.assertEqual(len(seen), 3)
            with self.assertRaises(NvmetError) as cm:
                c.call("core.subscribe", "")
            self.assertEqual(cm.exception.errname, "EINVAL")
            with self.assertRaises(NvmetError) as cm:
                c.subscribe("nvmet.nope")
            self.assertIn("failover.status", str(cm.exception))
            self.assertEqual(c.call("core.ping"), "pong")

    def test_subscribe_iterator_readonly(self):
        """events() yields the events of callback-less subscriptions; a
        readonly key sees the DH-CHAP key masked."""
        with self.tls(key=RO_KEY) as ro, self.unix() as adm:
            ro.subscribe("*")
            key = adm.call("nvmet.host.generate_key", "SHA-256")
            h = adm.call("nvmet.host.create", {"hostnqn": "nqn.2024-01.com.example:evhost",
                                               "dhchap_key": key})
            got = None
            for ev in ro.events(timeout=10):
                if ev["collection"] == "nvmet.host" and ev["id"] == h["id"]:
                    got = ev
                    break
            self.assertIsNotNone(got)
            self.assertEqual(got["msg"], "ADDED")
            self.assertEqual(got["fields"]["dhchap_key"], "********")
            self.assertEqual(got["fields"]["hostnqn"], "nqn.2024-01.com.example:evhost")
            adm.call("nvmet.host.delete", h["id"])

    def test_z_example(self):
        """example.py twice: the second run reports every create's error and
        uses the existing objects."""
        ex = os.path.join(CLIENT_DIR, "example.py")
        keyfile = os.path.join(self.base, "admin.key")
        write_secret(keyfile, ADMIN_KEY + "\n")
        runs = [[sys.executable, ex, "--socket", self.node.sock],
                [sys.executable, ex, "--url", self.node.rpc, "--api-key-file", keyfile,
                 "--cacert", self.ca]]
        outs = []
        for argv in runs:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            outs.append(p.stdout)
        for what in ("subsystem", "namespace", "port", "port_subsys", "host", "host_subsys"):
            self.assertIn("%s: created" % what, outs[0])
            self.assertIn("%s: using the existing one" % what, outs[1])
        self.assertIn("[EINVAL] nvmet_subsys_create.name: ", outs[1])
        with self.unix() as c:
            self.assertTrue(c.call("nvmet.global.config")["enabled"])
            self.assertEqual(c.call("nvmet.port_subsys.query", [], {"count": True}), 1)
        subsys = os.path.join(self.node.dir, "configfs/nvmet/subsystems",
                              "nqn.2024-01.com.example:nvme:subsys1")
        deadline = time.monotonic() + 10
        while not os.path.isdir(subsys) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.isdir(os.path.join(subsys, "namespaces/1")), "not rendered")


class DropOnce:
    """A plaintext msgpack-rpc relay in front of a node that, once, closes
    the client's connection instead of passing on the answer to the first
    request for `method`: the call ran, its reply is lost. It records every
    (client id, msgid) that request was sent with."""

    def __init__(self, target, method):
        self.target, self.method = target, method
        self.seen, self.dropped = [], False
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.endpoint = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                cs, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            ss = socket.create_connection((host, int(port)), timeout=5)
            state = {"cid": None, "watch": set()}
            threading.Thread(target=self._up, args=(cs, ss, state), daemon=True).start()
            threading.Thread(target=self._down, args=(cs, ss, state), daemon=True).start()

    def _up(self, cs, ss, state):
        u = msgpack.Unpacker(raw=False)
        try:
            while True:
                data = cs.recv(65536)
                if not data:
                    break
                u.feed(data)
                for m in u:
                    if m[0] == 0 and m[2] == "core.set_options":
                        state["cid"] = m[3][0].get("client_id")
                    if m[0] == 0 and m[2] == self.method:
                        self.seen.append((state["cid"], m[1]))
                        state["watch"].add(m[1])
                ss.sendall(data)
        except OSError:
            pass
        _shut(cs, ss)

    def _down(self, cs, ss, state):
        u = msgpack.Unpacker(raw=False)
        try:
            while True:
                data = ss.recv(65536)
                if not data:
                    break
                u.feed(data)
                for m in u:
                    if m[0] == 1 and m[1] in state["watch"] and not self.dropped:
                        self.dropped = True
                        raise OSError("dropped")
                cs.sendall(data)
        except OSError:
            pass
        _shut(cs, ss)

    def close(self):
        self.stopping = True
        self.lsock.close()
        self.thread.join(timeout=5)


def _shut(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class TestCluster(Base):
    """Three nodes, plaintext RPC, no forwarding (see the module doc)."""

    @classmethod
    def setUpClass(cls):
        cls.make_base()
        cls.nodes = [Node(cls.base, i, tls=False) for i in (1, 2, 3)]
        members = ",".join("%d=127.0.0.1:%d" % (n.id, n.raft_port) for n in cls.nodes)
        try:
            for n in cls.nodes:
                n.start(["--cluster", members, "--raft-insecure", "--rpc-hold-timeout", "300"])
            for n in cls.nodes:
                n.wait_up()
            cls.leader = cls.wait_leader()
        except Exception:
            cls.stop_all()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_all()

    @classmethod
    def wait_leader(cls, timeout=15.0, among=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in among or cls.nodes:
                st = n.status()
                if st is not None and st["node"].get("leader_ready"):
                    return n
            time.sleep(0.05)
        raise AssertionError("no leader")

    def setUp(self):
        # the leader of now (an election may have moved it)
        type(self).leader = self.wait_leader(among=[n for n in self.nodes
                                                    if n.proc.poll() is None])

    def client(self, eps, **kw):
        kw.setdefault("timeout", 20.0)
        return Client(eps, api_key=ADMIN_KEY, plaintext=True, **kw)

    def followers(self):
        return [n for n in self.nodes if n is not self.leader and n.proc.poll() is None]

    def test_not_leader_one_endpoint(self):
        """One endpoint: NOT_LEADER is final and names the leader."""
        f = self.followers()[0]
        deadline = time.monotonic() + 15
        while True:  # until the follower knows the leader's RPC address
            with self.assertRaises(NvmetError) as cm:
                self.client([f.rpc]).call("nvmet.subsys.create",
                                          {"name": "nqn.2024-01.com.example:nl"})
            e = cm.exception
            if e.leader is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual((e.code, e.errname), (nvmetha.NOT_LEADER, "ENOTLEADER"))
        self.assertEqual(e.leader, self.leader.rpc)

    def test_follows_leader(self):
        """Followers first: NOT_LEADER sends the call to the leader it names,
        which then stays the first endpoint tried."""
        f1, f2 = self.followers()
        with self.client([f1.rpc, f2.rpc, self.leader.rpc]) as c:
            s = c.call("nvmet.subsys.create", {"name": "nqn.2024-01.com.example:follow"})
            self.assertEqual(s["name"], "nqn.2024-01.com.example:follow")
            self.assertEqual(c.endpoint, self.leader.rpc)
            hosts = c.call_many([("nvmet.host.create", {"hostnqn": "nqn.2024-01.com.example:f%d"
                                                        % i}) for i in range(20)])
            self.assertEqual(len({h["id"] for h in hosts}), 20)

    def test_lost_reply_applied_once(self):
        """The reply of a create is lost: the client sends it again with
        the same client id and msgid and gets the first result."""
        relay = DropOnce(self.leader.rpc, "nvmet.subsys.create")
        try:
            name = "nqn.2024-01.com.example:once"
            with self.client([relay.endpoint]) as c:
                s = c.call("nvmet.subsys.create", {"name": name})
                self.assertEqual(s["name"], name)
            self.assertTrue(relay.dropped)
            self.assertEqual(len(relay.seen), 2, relay.seen)
            self.assertEqual(relay.seen[0], relay.seen[1])
            self.assertEqual(relay.seen[0][0], c.client_id)
            with self.client([self.leader.rpc]) as c:
                self.assertEqual(c.call("nvmet.subsys.query", [["name", "=", name]],
                                        {"count": True}), 1)
                self.assertEqual(c.call("nvmet.subsys.query", [["name", "=", name]],
                                        {"get": True})["id"], s["id"])
        finally:
            relay.close()

    def test_paused_node(self):
        """A node that accepts connections but does not answer (SIGSTOP):
        alone it is a CallTimeout; first of two endpoints it costs about
        the 1 s login timeout, then the next endpoint answers."""
        f = self.followers()[0]
        os.kill(f.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with self.assertRaises(CallTimeout) as cm:
                self.client([f.rpc], timeout=1.0).call("core.ping")
            self.assertEqual(cm.exception.errname, "ETIMEDOUT")
            self.assertLess(time.monotonic() - t0, 3.0)
            t0 = time.monotonic()
            with self.client([f.rpc, self.leader.rpc]) as c:
                self.assertEqual(c.call("core.ping"), "pong")
                self.assertEqual(c.endpoint, self.leader.rpc)
            took = time.monotonic() - t0
            self.assertTrue(0.9 <= took < 5.0, "%.2f s" % took)
        finally:
            os.kill(f.proc.pid, signal.SIGCONT)

    def test_z_leader_stopped(self):
        """The leader stops (cleanly): a client of every node rides
        through the election within its timeout."""
        old = self.leader
        with self.client([n.rpc for n in self.nodes]) as c:
            self.assertEqual(c.call("core.ping"), "pong")
            self.assertEqual(old.stop(), 0)
            s = c.call("nvmet.subsys.create", {"name": "nqn.2024-01.com.example:after"})
            self.assertEqual(s["name"], "nqn.2024-01.com.example:after")
            self.assertNotEqual(c.endpoint, old.rpc)
            self.assertEqual(c.call("nvmet.subsys.query",
                                    [["name", "=", "nqn.2024-01.com.example:after"]],
                                    {"count": True}), 1)


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (device nodes for the emulated namespaces)")
        return 77
    if not os.access(NVMETD, os.X_OK):
        print("FAIL: no nvmetd at %s (set NVMETD_BIN)" % NVMETD)
        return 1
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    res = runner.run(suite)
    print("python client tests: %d run, %d failures, %d errors, %d skipped: %s"
          % (res.testsRun, len(res.failures), len(res.errors), len(res.skipped),
             "OK" if res.wasSuccessful() else "FAILED"))
    return 0 if res.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
