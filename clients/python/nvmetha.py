"""nvmetha: a Python client for the nvmet-ha API (msgpack-rpc).

    from nvmetha import Client, NvmetError

    with Client(["10.0.0.1:7100", "10.0.0.2:7100"], api_key=read_key_file("key"),
                cafile="ca.pem") as c:
        subsys = c.call("nvmet.subsys.create", {"name": "nqn.2024-01.com.example:s1"})
        print(c.call("nvmet.subsys.query", [["id", "=", subsys["id"]]], {"get": True}))

Wire protocol: request [0, msgid, method, params] (params: the positional
arguments), response [1, msgid, error, result], notification
[2, method, params]. error is None or a map {"code", "error", "errname",
"reason", "extra"[, "leader"][, "committed"]}.

Endpoints are "unix:/path" (or "/path"): the node's unix socket, root only,
plaintext, no login; or "HOST:PORT" / "[V6]:PORT": TCP, TLS 1.3 unless
plaintext=True. With TLS the node's certificate must chain to cafile (else
the system's CA store) and name HOST. On TCP the client logs in with
auth.login_with_api_key before anything else.

Retries follow nvmetctl's rules. A call is retried until `timeout` seconds
have passed:
  - an unreachable node, a lost connection or an attempt that timed out is
    retried (on the next endpoint, or the same one a moment later);
  - with several endpoints, NOT_LEADER / NO_QUORUM / leadership lost go to
    the next endpoint, or straight to the leader a NOT_LEADER answer names
    when it is listed. With one endpoint those answers are final: the node
    already held the call while it waited for a leader;
  - a TLS failure (a certificate that does not verify) and every other API
    error are final.
After each round over the endpoints the client pauses 50 ms, doubling up to
500 ms. Every attempt of a call carries the same client id (one per Client,
set with core.set_options) and the same msgid: a write that committed before
its answer was lost is answered from the cluster's session table, not applied
twice.

Events: subscribe("nvmet.subsys", callback) (or "*": everything) makes the
node send collection_update notifications [2, "collection_update", [event]],
event = {"msg": "ADDED"|"CHANGED"|"REMOVED", "collection", "id", "fields"};
callback(event) runs for each, or, without a callback, events() yields them:

    c.subscribe("nvmet.subsys")
    for ev in c.events(timeout=60):
        print(ev["msg"], ev["collection"], ev["id"])

One connection is open at a time, to the endpoint that answered last. The
client is not tied to a thread: calls from several threads are serialised.
Dependencies: the standard library and msgpack (Debian: python3-msgpack).
"""

import errno
import os
import secrets
import socket
import ssl
import threading
import time
import traceback

import msgpack

__all__ = ["Client", "NvmetError", "TransportError", "TLSError", "CallTimeout",
           "read_key_file", "DEFAULT_SOCKET"]

DEFAULT_SOCKET = "/run/nvmet-ha/nvmetd.sock"
BACKOFF_FIRST = 0.05   # pause after the first round over the endpoints
BACKOFF_MAX = 0.5      # the pause doubles up to this
CONNECT_TIMEOUT = 1.0  # connect + login with several endpoints to try
WINDOW = 64            # calls in flight per connection in call_many

# error codes the server sends (README, "The API")
INVALID_REQUEST = -32600
NO_METHOD = -32601
INVALID_PARAMS = -32602
TOO_MANY = -32000
CALL_ERROR = -32001
NOT_LEADER = -32010
NO_QUORUM = -32011
NOT_AUTHENTICATED = -32012

_NO_LEADER_NAMES = ("ENOTLEADER", "ENOQUORUM", "ELEADERSHIPLOST")
# the product's own errnos, beyond Linux's
_ERRNAMES = {201: "ENOMETHOD", 202: "ESERVICESTARTFAILURE", 207: "ENOTAUTHENTICATED",
             210: "EHAUNAVAILABLE", 211: "ENOTLEADER", 212: "ENOQUORUM", 213: "ELEADERSHIPLOST"}


def _errname(num):
    return _ERRNAMES.get(num) or errno.errorcode.get(num, "EUNKNOWN")


class NvmetError(Exception):
    """An error answered by a node.

    code: the msgpack-rpc code (e.g. -32602 validation, -32001 call failed,
    NOT_LEADER); errno / errname: the errno and its name ("EINVAL",
    "EEXIST", "ENOTLEADER", ...); reason: the server's text; errors: the
    validation items as (attribute, message, errname) tuples (attribute None
    for the "... and K more errors" item); extra: the raw "extra" field;
    leader: the leader's RPC address (NOT_LEADER) or None; committed: True
    when the write IS committed and only the answering node's kernel
    refused to render it (do not retry it; cluster.status shows the
    refusal until a render pass repairs it).
    str(e) is one line per item, "[ERRNAME] attribute: message", like
    nvmetctl (attribute ALL when there is none)."""

    def __init__(self, err):
        if not isinstance(err, dict):
            err = {"reason": repr(err)}
        self.code = err.get("code", CALL_ERROR)
        self.errno = err.get("error", 0)
        self.errname = err.get("errname") or "EUNKNOWN"
        self.reason = err.get("reason") or ""
        self.extra = err.get("extra")
        self.leader = err.get("leader")
        self.committed = bool(err.get("committed", False))
        self.errors = []
        for item in self.extra if isinstance(self.extra, list) else []:
            if isinstance(item, (list, tuple)) and len(item) >= 2:
                num = item[2] if len(item) > 2 and isinstance(item[2], int) else errno.EINVAL
                self.errors.append((item[0], item[1], _errname(num)))
        super().__init__(self._text())

    def _text(self):
        if self.errors:
            return "\n".join("[%s] %s: %s" % (n, a or "ALL", m) for a, m, n in self.errors)
        msg, prefix = self.reason or "unknown error", "[%s] " % self.errname
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
        return "[%s] ALL: %s" % (self.errname, msg)

    def attributes(self):
        """The attributes the validation items name."""
        return [a for a, _, _ in self.errors]


class TransportError(ConnectionError):
    """No answer: the node could not be reached (ECONNREFUSED), the
    connection was lost (ECONNRESET) or no answer came in time (ETIMEDOUT).
    errno, errname and endpoint say which and where."""

    def __init__(self, num, message, endpoint=None):
        super().__init__(num, message)
        self.endpoint = endpoint

    @property
    def errname(self):
        return errno.errorcode.get(self.errno, "EUNKNOWN")

    def __str__(self):
        return "[%s] ALL: %s" % (self.errname, self.strerror)


class TLSError(TransportError):
    """The TLS handshake failed or the node refused it (EPROTO), e.g. a
    certificate that does not verify: final, never retried."""

    def __init__(self, message, endpoint=None):
        super().__init__(errno.EPROTO, message, endpoint)


class CallTimeout(TransportError, TimeoutError):
    """No answer within the time given (ETIMEDOUT)."""

    def __init__(self, message, endpoint=None):
        super().__init__(errno.ETIMEDOUT, message, endpoint)


def read_key_file(path):
    """The API key in path: its first line without trailing blanks (as
    nvmetctl --api-key-file). ValueError when it is empty."""
    with open(path, "r", encoding="utf-8") as f:
        key = f.readline().rstrip("\r\n \t")
    if not key:
        raise ValueError("API key file %s is empty" % path)
    return key


def _parse_endpoint(ep):
    """("unix", path) or ("tcp", (host, port)); ValueError if neither."""
    if ep.startswith("unix:"):
        return "unix", ep[5:]
    if ep.startswith("/"):
        return "unix", ep
    if ep.startswith("["):
        host, sep, port = ep[1:].partition("]:")
    else:
        host, sep, port = ep.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad endpoint %r: want unix:/path, HOST:PORT or [V6]:PORT" % ep)
    return "tcp", (host, int(port))


class _Conn:
    """One connection: framing, reading with a deadline, failures mapped to
    TransportError."""

    def __init__(self, endpoint, sock, tls):
        self.endpoint, self.sock, self.tls = endpoint, sock, tls
        self.got_bytes = False
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                         max_buffer_size=64 << 20)

    def send(self, msgs, deadline):
        data = b"".join(msgpack.packb(m, use_bin_type=True) for m in msgs)
        try:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self.sock.sendall(data)
        except socket.timeout:
            raise CallTimeout("no answer from %s in time (send)" % self.endpoint, self.endpoint)
        except OSError as e:
            raise TransportError(errno.ECONNRESET, "lost the connection to %s: %s"
                                 % (self.endpoint, e.strerror or e), self.endpoint)

    def read(self, deadline, what):
        """The next message, a list [1, ...] or [2, ...]."""
        while True:
            try:
                msg = next(self.unpacker)
            except StopIteration:
                msg = None
            except (ValueError, msgpack.UnpackException) as e:
                raise self._lost("malformed msgpack (%s)" % e)
            if msg is not None:
                if (isinstance(msg, list) and ((len(msg) == 4 and msg[0] == 1)
                                               or (len(msg) == 3 and msg[0] == 2))):
                    return msg
                raise self._lost("not a msgpack-rpc message")
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeout("%s: no answer from %s in time" % (what, self.endpoint),
                                  self.endpoint)
            try:
                self.sock.settimeout(left)
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ssl.SSLError as e:
                if not self.got_bytes:
                    raise TLSError("connection to %s: TLS: %s" % (self.endpoint, e.reason or e),
                                   self.endpoint)
                raise self._lost("TLS: %s" % (e.reason or e))
            except OSError as e:
                raise self._lost(e.strerror or str(e))
            if not data:
                raise self._lost("closed by the server" + (
                    "" if self.got_bytes or self.tls else
                    " before any answer (does it require TLS?)"))
            self.got_bytes = True
            self.unpacker.feed(data)

    def _lost(self, why):
        return TransportError(errno.ECONNRESET, "lost the connection to %s: %s"
                              % (self.endpoint, why), self.endpoint)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Client:
    """A connection to an nvmet-ha cluster.

    endpoints: a list of "unix:/path" or "HOST:PORT" / "[V6]:PORT" (one
    string is taken as a list of one); api_key: the key for TCP logins;
    cafile: CA certificates (PEM) that verify the nodes' TLS certificates
    (None: the system's CA store); certfile/keyfile: a client certificate
    and its key (mode 0600), for nodes that require one; plaintext: TCP
    without TLS (nodes started with --rpc-plaintext); timeout: seconds a
    call may take, retries included; client_id: the session id (default: a
    random "py-..." one per Client; two Clients with the same id replay
    each other's answers for the same msgids, so give one only to resume a
    client that died). Nothing is connected until the first call.
    Bad CA, certificate or key files raise here (OSError, ssl.SSLError,
    PermissionError)."""

    def __init__(self, endpoints, api_key=None, cafile=None, certfile=None, keyfile=None,
                 plaintext=False, timeout=30.0, client_id=None):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        self.endpoints = [e.strip() for e in endpoints if e.strip()]
        if not self.endpoints:
            raise ValueError("no endpoint")
        self._addr = [_parse_endpoint(e) for e in self.endpoints]
        if plaintext and (cafile or certfile or keyfile):
            raise ValueError("plaintext and cafile/certfile/keyfile contradict")
        if bool(certfile) != bool(keyfile):
            raise ValueError("certfile and keyfile go together")
        self.api_key = api_key
        self.timeout = float(timeout)
        self.client_id = client_id or "py-" + secrets.token_hex(8)
        self._ssl = None
        if not plaintext and any(kind == "tcp" for kind, _ in self._addr):
            self._ssl = self._make_ssl(cafile, certfile, keyfile)
        self._lock = threading.RLock()
        self._conn = None
        self._at = 0           # the endpoint tried first: the last that answered
        self._msgid = 0        # msgids of calls; connection setup uses 0
        self._subs = {}        # collection -> [callback] (None: to the queue)
        self._notes = []       # notifications read, not yet delivered
        self._queue = []       # events for events(), oldest first
        self._reconnected = False  # the connection was replaced since events() last looked

    @staticmethod
    def _make_ssl(cafile, certfile, keyfile):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if cafile:
            ctx.load_verify_locations(cafile=cafile)
        else:
            ctx.load_default_certs()
        if certfile:
            mode = os.stat(keyfile).st_mode
            if mode & 0o077:
                raise PermissionError("key file %s has mode %04o: it must not be accessible by "
                                      "group or others (chmod 600 %s)"
                                      % (keyfile, mode & 0o7777, keyfile))
            ctx.load_cert_chain(certfile, keyfile)
        return ctx

    # ---- public API ----

    @property
    def endpoint(self):
        """The endpoint tried first by the next call: the last one that
        answered (the leader, after a NOT_LEADER was followed)."""
        return self.endpoints[self._at]

    def call(self, method, *params):
        """Call method with the positional params; its result. Raises
        NvmetError for an error answered by a node, TLSError, or
        TransportError / CallTimeout when no node answered within timeout
        (the last transport failure seen)."""
        return self.call_many([(method,) + params])[0]

    def call_many(self, calls, return_errors=False):
        """Pipelined calls: calls is a list of (method, arg, ...) tuples,
        sent on one connection with up to 64 in flight; the results in the
        same order. Each call has its own msgid and is retried alone under
        the rules above. The node handles a connection's calls in order but
        a write is checked when it arrives: do not pipeline a write with one
        that depends on it. An error answer raises the first NvmetError once
        every call is answered, or with return_errors=True takes that call's
        place in the list."""
        with self._lock:
            items = []
            for c in calls:
                self._msgid += 1
                items.append([c[0], list(c[1:]), self._msgid])
            answers = self._run(items)
            self._deliver()
        out = []
        for err, result in answers:
            if err is not None and not return_errors:
                raise NvmetError(err)
            out.append(NvmetError(err) if err is not None else result)
        return out

    def subscribe(self, collection, callback=None):
        """core.subscribe(collection): a collection ("nvmet.subsys",
        "nvmet.host", ..., "nvmet.global", "failover.status") or "*" (all).
        callback(event) runs for each of its events; without a callback the
        events queue up for events(). Events are delivered by call(),
        call_many(), poll() and events(), in the calling thread; callbacks
        may call the client. An exception in a callback is printed
        (traceback on stderr) and does not stop the others. The
        subscription is renewed on every new connection (events committed
        while there was none are not replayed). An unknown name raises
        NvmetError listing the valid ones."""
        with self._lock:
            if self.call("core.subscribe", collection) is not True:
                raise NvmetError({"reason": "core.subscribe did not answer true"})
            self._subs.setdefault(collection, []).append(callback)

    def unsubscribe(self, collection):
        """Drop the callbacks of collection and core.unsubscribe it."""
        with self._lock:
            self._subs.pop(collection, None)
            return self.call("core.unsubscribe", collection)

    def events(self, timeout=None):
        """Iterate over the events of the subscriptions made without a
        callback, oldest first, waiting for more; ends after timeout
        seconds (None: never). A lost connection is replaced (the next
        endpoint, subscriptions renewed) and announced by a
        {"msg": "RECONNECTED", "endpoint": EP} item: re-read what you
        follow, the events in between are lost."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._queue:
                yield self._queue.pop(0)
                continue
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                self.poll(left)
            except (TransportError, CallTimeout):
                time.sleep(min(0.2, max(0.0, left)))
                continue
            if self._reconnected and not self._queue:
                self._reconnected = False
                yield {"msg": "RECONNECTED", "endpoint": self.endpoint}

    def poll(self, timeout=0.0):
        """Wait up to timeout seconds for notifications on the open
        connection (connecting first if none is) and deliver them; the
        number delivered. A lost connection raises TransportError (the next
        call reconnects)."""
        with self._lock:
            if self._conn is None:
                self.call("core.ping")
            conn, deadline = self._conn, time.monotonic() + timeout
            try:
                while time.monotonic() < deadline and not self._notes:
                    msg = conn.read(deadline, "poll")
                    if msg[0] == 2:
                        self._notes.append((msg[1], msg[2]))
            except CallTimeout:
                pass
            except TransportError:
                self._drop()
                raise
            return self._deliver()

    def close(self):
        """Close the connection; the next call opens a new one."""
        with self._lock:
            self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the retried exchange ----

    def _retryable(self, err):
        """An error answer worth the next endpoint (several endpoints)."""
        return len(self.endpoints) > 1 and isinstance(err, dict) and (
            err.get("code") in (NOT_LEADER, NO_QUORUM) or err.get("errname") in _NO_LEADER_NAMES)

    def _index_of(self, leader):
        try:
            want = _parse_endpoint(leader)
        except (ValueError, TypeError):
            return None
        return next((k for k, a in enumerate(self._addr) if a == want), None)

    def _run(self, items):
        """[(error, result)] of items [method, params, msgid], retried."""
        deadline = time.monotonic() + self.timeout
        answers = [None] * len(items)
        n = len(self.endpoints)
        pause, attempt, last = BACKOFF_FIRST, 0, None
        while True:
            todo = [i for i, a in enumerate(answers) if a is None]
            if not todo:
                return answers
            left = deadline - time.monotonic()
            if left <= 0:
                if last is not None:
                    raise last
                raise CallTimeout("%s: no answer within %g s" % (items[todo[0]][0], self.timeout))
            # with several nodes one that hangs must not eat the whole deadline
            per = left if n == 1 else max(left / n, min(left, 1.0))
            leader = None
            try:
                conn = self._connect(time.monotonic() + (min(per, CONNECT_TIMEOUT) if n > 1
                                                         else per))
                got = {}
                try:
                    self._exchange(conn, [(i,) + tuple(items[i]) for i in todo], got,
                                   time.monotonic() + per)
                finally:
                    for i, (err, result) in got.items():
                        if err is not None and self._retryable(err):
                            leader = err.get("leader") or leader
                            last = NvmetError(err)
                        else:
                            answers[i] = (err, result)
            except TLSError:
                self._drop()
                raise
            except TransportError as e:
                self._drop()
                last = e
            except NvmetError as e:  # a login or set_options refused
                self._drop()
                if not self._retryable({"code": e.code, "errname": e.errname}):
                    raise
                last = e
            if all(a is not None for a in answers):
                return answers
            nxt = (self._at + 1) % n
            k = self._index_of(leader) if leader else None
            if k is not None and k != self._at:
                nxt = k
            if nxt != self._at:
                self._drop()
            self._at = nxt
            attempt += 1
            if attempt % n == 0:
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                pause = min(pause * 2, BACKOFF_MAX)

    def _exchange(self, conn, items, got, deadline):
        """Send items (index, method, params, msgid), at most WINDOW in
        flight, and put each answer in got[index]."""
        queue, waiting = list(items), {}
        while queue or waiting:
            batch = []
            while queue and len(waiting) < WINDOW:
                i, method, params, msgid = queue.pop(0)
                waiting[msgid] = i
                batch.append([0, msgid, method, params])
            if batch:
                conn.send(batch, deadline)
            msg = conn.read(deadline, items[0][1])
            if msg[0] == 2:
                self._notes.append((msg[1], msg[2]))
            elif msg[1] in waiting:
                got[waiting.pop(msg[1])] = (msg[2], msg[3])

    def _setup_call(self, conn, method, params, deadline):
        """A connection setup call (msgid 0); its result or NvmetError."""
        got = {}
        self._exchange(conn, [(0, method, params, 0)], got, deadline)
        err, result = got[0]
        if err is not None:
            raise NvmetError(err)
        return result

    def _connect(self, deadline):
        """The open connection to endpoint self._at, opened, logged in, its
        client id set and subscriptions renewed if it was not open."""
        if self._conn is not None:
            return self._conn
        ep = self.endpoints[self._at]
        kind, addr = self._addr[self._at]
        sock = None
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.connect(addr)
            else:
                sock = socket.create_connection(addr, max(deadline - time.monotonic(), 0.001))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except socket.timeout:
            _close(sock)
            raise CallTimeout("connect to %s: timed out" % ep, ep)
        except OSError as e:
            _close(sock)
            raise TransportError(errno.ECONNREFUSED, "connect to %s: %s"
                                 % (ep, e.strerror or e), ep)
        tls = kind == "tcp" and self._ssl is not None
        if tls:
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock = self._ssl.wrap_socket(sock, server_hostname=addr[0])
            except socket.timeout:
                _close(sock)
                raise CallTimeout("connect to %s: TLS handshake timed out" % ep, ep)
            except ssl.SSLCertVerificationError as e:
                _close(sock)
                raise TLSError("connect to %s: TLS handshake failed: certificate verify failed: "
                               "%s" % (ep, e.verify_message), ep)
            except ssl.SSLError as e:
                _close(sock)
                raise TLSError("connect to %s: TLS handshake failed: %s"
                               % (ep, e.reason or e), ep)
            except OSError as e:
                _close(sock)
                raise TransportError(errno.ECONNRESET, "connect to %s: TLS handshake: %s"
                                     % (ep, e.strerror or e), ep)
        conn = _Conn(ep, sock, tls)
        try:
            if kind == "tcp" and self.api_key is not None:
                if self._setup_call(conn, "auth.login_with_api_key", [self.api_key],
                                    deadline) is not True:
                    raise NvmetError({"code": NOT_AUTHENTICATED, "error": 207,
                                      "errname": "ENOTAUTHENTICATED",
                                      "reason": "Not authenticated: %s refused the API key" % ep})
            self._setup_call(conn, "core.set_options", [{"client_id": self.client_id}], deadline)
            for collection in self._subs:
                self._setup_call(conn, "core.subscribe", [collection], deadline)
            self._reconnected = bool(self._subs)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _deliver(self):
        notes, self._notes = self._notes, []
        n = 0
        for method, params in notes:
            if method != "collection_update" or not params or not isinstance(params[0], dict):
                continue
            event = params[0]
            coll = event.get("collection")
            cbs = self._subs.get(coll, []) + (self._subs.get("*", []) if coll != "*" else [])
            queued = False
            for cb in cbs:
                if cb is None:
                    if not queued:  # once, however many subscriptions match
                        self._queue.append(event)
                        queued = True
                    continue
                try:
                    cb(event)
                except Exception:  # the call's own result must still reach its caller
                    traceback.print_exc()
            n += 1
        return n


def _close(sock):
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
