/* consensus: lifecycle (start/close), readiness, polled role changes,
 * status, membership and error translation. Framing, group commit and the
 * fsm adapters live in cons_log.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cons_int.h"
#include "cons_tr.h"
#include "nv_err.h"
#include "nv_file.h"
#include "nv_log.h"

#define POLL_MS 5
#define CONNECT_RETRY_MS 100
#define DEFAULT_SEGMENT ((size_t)4 << 20)
#define NODE_ID_FILE "node-id"

/* ------------------------------------------------------------------ */
/* errors and names */

/* The one translation of libraft codes (cons.h). */
int cons_err(int rv)
{
    switch (rv) {
        case 0:
            return 0;
        case RAFT_NOTLEADER:
            return -NV_ENOTLEADER;
        case RAFT_LEADERSHIPLOST:
            return -NV_ELEADERSHIPLOST;
        case RAFT_SHUTDOWN:
        case RAFT_CANCELED:
            return -ESHUTDOWN;
        case RAFT_NOMEM:
            return -ENOMEM;
        case RAFT_TOOBIG:
            return -EMSGSIZE;
        case RAFT_IOERR:
            return -EIO;
        case RAFT_NOSPACE:
            return -ENOSPC;
        case RAFT_CANTCHANGE:
        case RAFT_BUSY:
            return -EBUSY;
        case RAFT_BADID:
        case RAFT_NOTFOUND:
            return -ENOENT;
        case RAFT_DUPLICATEID:
        case RAFT_DUPLICATEADDRESS:
            return -EEXIST;
        case RAFT_NOCONNECTION:
            return -ENOTCONN;
        case RAFT_CORRUPT:
        case RAFT_MALFORMED:
            return -EBADMSG;
        case RAFT_BADROLE:
        case RAFT_INVALID:
            return -EINVAL;
        case RAFT_NAMETOOLONG:
            return -ENAMETOOLONG;
        default:
            return -EPROTO;
    }
}

const char* cons_state_name(int state)
{
    switch (state) {
        case CONS_UNAVAILABLE:
            return "unavailable";
        case CONS_FOLLOWER:
            return "follower";
        case CONS_CANDIDATE:
            return "candidate";
        case CONS_LEADER:
            return "leader";
        default:
            return "unknown";
    }
}

const char* cons_role_name(int role)
{
    switch (role) {
        case CONS_ROLE_VOTER:
            return "voter";
        case CONS_ROLE_STANDBY:
            return "standby";
        case CONS_ROLE_SPARE:
            return "spare";
        default:
            return "unknown";
    }
}

void cons_log(const struct cons_node* n, const char* fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    nv_logf(NV_LOG_INFO, "consensus[%" PRIu64 "]: %s", n != NULL ? n->id : 0, line);
}

/* ------------------------------------------------------------------ */
/* libraft 0.15 internals: every read of struct raft fields is here (they
 * were hidden or renamed in 0.16-0.18). */

static struct raft* R(const struct cons_node* n)
{
    return (struct raft*)&n->raft;
}
static uint64_t raft_term_of(const struct cons_node* n)
{
    return R(n)->current_term;
}
static uint64_t raft_commit_of(const struct cons_node* n)
{
    return R(n)->commit_index;
}
static uint64_t raft_snapshot_index_of(const struct cons_node* n)
{
    return R(n)->log.snapshot.last_index;
}
static bool raft_transferring(const struct cons_node* n)
{
    return R(n)->transfer != NULL;
}
static uint64_t raft_follower_contact(const struct cons_node* n)
{
    return R(n)->election_timer_start;
}
static const struct raft_configuration* raft_conf_of(const struct cons_node* n)
{
    return &R(n)->configuration;
}
/* The leader's replication progress, parallel to the configuration's
 * servers (NULL unless leading). */
static const struct raft_progress* raft_progress_of(const struct cons_node* n)
{
    return R(n)->state == RAFT_LEADER ? R(n)->leader_state.progress : NULL;
}

static void note_committed(struct cons_node* n);

/* ------------------------------------------------------------------ */
/* readiness and change reporting */

bool cons_is_ready(const struct cons_node* n)
{
    return !n->closing && !n->raft_down && n->ready && raft_state(R(n)) == RAFT_LEADER &&
           raft_term_of(n) == n->ready_term && !raft_transferring(n) && !n->disk.stop;
}

static void ready_cb(struct raft_barrier* req, int status)
{
    struct cons_node* n = req->data;
    n->ready_pending = false;
    cons_disk_write_done(n, status);
    if (status == 0 && !n->closing && raft_state(&n->raft) == RAFT_LEADER &&
        raft_term_of(n) == n->ready_pending_term) {
        n->ready = true;
        n->ready_term = n->ready_pending_term;
    }
    if (!n->closing) {
        n->check_change = true; /* report from the idle handle, outside libraft */
        cons_kick(n);
    }
}

/* After winning an election: commit a barrier in the new term before
 * serving anything (0.15 has no leader no-op entry). */
static void maybe_start_ready(struct cons_node* n)
{
    if (raft_state(&n->raft) != RAFT_LEADER) {
        n->ready = false;
        return;
    }
    if (n->ready && n->ready_term != raft_term_of(n)) {
        n->ready = false;
    }
    if (n->ready || n->ready_pending || !cons_disk_may_retry_ready(n)) {
        return;
    }
    n->ready_req.data = n;
    n->ready_pending_term = raft_term_of(n);
    int rv = raft_barrier(&n->raft, &n->ready_req, ready_cb);
    if (rv == 0) {
        n->ready_pending = true;
    } /* else (e.g. transfer in progress): retried at the next poll */
}

void cons_check_change(struct cons_node* n)
{
    if (n->change_cb == NULL || n->raft_down) {
        return;
    }
    struct cons_status st;
    cons_get_status(n, &st);
    bool caught = st.commit_index > 0 && st.last_applied >= st.commit_index;
    bool changed = !n->reported || st.state != n->last_state || st.ready != n->last_ready ||
                   st.leader_id != n->last_leader || (caught && !n->last_caught) ||
                   (st.storage_stop && !n->disk.stop_reported);
    n->disk.stop_reported = n->disk.stop_reported || st.storage_stop;
    n->last_caught = caught;
    if (!changed) {
        return;
    }
    n->reported = true;
    n->last_state = st.state;
    n->last_ready = st.ready;
    n->last_leader = st.leader_id;
    n->change_cb(n->change_arg, &st);
}

static void poll_cb(uv_timer_t* t)
{
    struct cons_node* n = t->data;
    if (n->closing || n->raft_down) {
        return;
    }
    maybe_start_ready(n);
    note_committed(n);
    cons_disk_poll(n);
    if (raft_state(&n->raft) == RAFT_FOLLOWER) {
        raft_id lid = 0;
        const char* laddr = NULL;
        raft_leader(&n->raft, &lid, &laddr);
        if (lid != 0 && raft_follower_contact(n) > n->contact_at) {
            n->contact_at = raft_follower_contact(n);
        }
    } else if (raft_state(&n->raft) == RAFT_LEADER) {
        n->contact_at = uv_now(n->loop);
    }
    cons_check_change(n);
}

void cons_on_change(struct cons_node* n, cons_change_cb cb, void* arg)
{
    n->change_cb = cb;
    n->change_arg = arg;
    n->reported = false;
}

static int map_state(int s)
{
    switch (s) {
        case RAFT_FOLLOWER:
            return CONS_FOLLOWER;
        case RAFT_CANDIDATE:
            return CONS_CANDIDATE;
        case RAFT_LEADER:
            return CONS_LEADER;
        default:
            return CONS_UNAVAILABLE;
    }
}

void cons_get_status(const struct cons_node* n, struct cons_status* st)
{
    memset(st, 0, sizeof *st);
    if (n == NULL) {
        return;
    }
    st->id = n->id;
    st->state = CONS_UNAVAILABLE;
    st->start_error = n->start_error;
    st->storage_error = n->disk.error;
    st->storage_stop = n->disk.stop;
    if (n->start_error < 0) {
        snprintf(st->start_msg, sizeof st->start_msg, "%s", n->start_msg);
    }
    if (n->raft_down || !n->started) {
        return;
    }
    struct raft* r = R(n);
    st->state = map_state(raft_state(r));
    st->ready = cons_is_ready(n);
    st->term = raft_term_of(n);
    st->commit_index = raft_commit_of(n);
    st->last_applied = raft_last_applied(r);
    st->last_index = raft_last_index(r);
    st->snapshot_index = raft_snapshot_index_of(n);
    raft_id lid = 0;
    const char* laddr = NULL;
    raft_leader(r, &lid, &laddr);
    st->leader_id = lid;
    if (laddr != NULL) {
        snprintf(st->leader_address, sizeof st->leader_address, "%s", laddr);
    }
    if (st->state != CONS_LEADER) {
        uint64_t now = uv_now(n->loop);
        uint64_t at = n->contact_at;
        if (st->state == CONS_FOLLOWER && lid != 0 && raft_follower_contact(n) > at) {
            at = raft_follower_contact(n);
        }
        st->last_contact_ms = now > at ? now - at : 0;
    }
    const struct raft_configuration* c = raft_conf_of(n);
    size_t max = sizeof st->members / sizeof st->members[0];
    const struct raft_progress* p = raft_progress_of(n);
    for (unsigned i = 0; i < c->n && st->n_members < max; i++) {
        struct cons_member* m = &st->members[st->n_members++];
        m->id = c->servers[i].id;
        snprintf(m->address, sizeof m->address, "%s",
                 c->servers[i].address != NULL ? c->servers[i].address : "");
        m->role = c->servers[i].role;
        m->match_index = c->servers[i].id == n->id ? raft_last_index(r)
                         : p != NULL                ? p[i].match_index
                                                    : 0;
    }
}

/* ------------------------------------------------------------------ */
/* start */

static int mkdir_p(const char* path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char save = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
                return -errno;
            }
            buf[i] = save;
        }
    }
    struct stat sb;
    if (stat(path, &sb) < 0) {
        return -errno;
    }
    return S_ISDIR(sb.st_mode) ? 0 : -ENOTDIR;
}

/* 0 and *id (0 if the file is missing), or -errno. */
static int read_node_id(const char* dir, uint64_t* id)
{
    char path[PATH_MAX];
    *id = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, NODE_ID_FILE) >= sizeof path) {
        return -ENAMETOOLONG;
    }
    FILE* f = fopen(path, "r");
    if (f == NULL) {
        return errno == ENOENT ? 0 : -errno;
    }
    unsigned long long v = 0;
    int got = fscanf(f, "%llu", &v);
    fclose(f);
    if (got != 1 || v == 0) {
        return -EBADMSG;
    }
    *id = v;
    return 0;
}

static int write_node_id(const char* dir, uint64_t id)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, NODE_ID_FILE) >= sizeof path) {
        return -ENAMETOOLONG;
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%" PRIu64 "\n", id);
    return nv_write_durably(path, text, (size_t)len, 0600);
}

static int fail(char* errmsg, size_t errlen, int rv, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char* errmsg, size_t errlen, int rv, const char* fmt, ...)
{
    if (errmsg != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, errlen, fmt, ap);
        va_end(ap);
    }
    return rv;
}

bool cons_address_ok(const char* address)
{
    struct sockaddr_storage sa;
    socklen_t len;
    return cons_parse_addr(address, &sa, &len) == 0;
}

/* libraft reports a busy port only as a bare I/O error from raft_start:
 * look first (bind the way libuv does, then let go). */
static int probe_bind(const struct sockaddr_storage* sa, socklen_t len)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    int rv = bind(fd, (const struct sockaddr*)sa, len) < 0 ? -errno : 0;
    close(fd);
    return rv;
}

/* ------------------------------------------------------------------ */
/* who may use the Raft port */

/* Remember the committed configuration while no change is pending: during
 * a change the transport admits the members of both. */
static void note_committed(struct cons_node* n)
{
    const struct raft_configuration* c = raft_conf_of(n);
    if (R(n)->configuration_uncommitted_index != 0 || c->n == 0) {
        return;
    }
    if (c->n != n->n_committed) {
        uint64_t* ids = realloc(n->committed_ids, c->n * sizeof *ids);
        if (ids == NULL) {
            return;
        }
        n->committed_ids = ids;
        n->n_committed = c->n;
    }
    for (unsigned i = 0; i < c->n; i++) {
        n->committed_ids[i] = c->servers[i].id;
    }
}

/* A member of the last or of the committed configuration; anybody that
 * authenticated while this node has no configuration at all (it is
 * joining: the leader reaches it before it knows the cluster). */
static bool transport_allowed(void* arg, uint64_t id, char* address, size_t len)
{
    struct cons_node* n = arg;
    note_committed(n);
    const struct raft_configuration* c = raft_conf_of(n);
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            snprintf(address, len, "%s", c->servers[i].address);
            return true;
        }
    }
    for (size_t i = 0; i < n->n_committed; i++) {
        if (n->committed_ids[i] == id) {
            return true;
        }
    }
    return c->n == 0 && n->n_committed == 0;
}

static int transport_init(struct cons_node* n, const struct cons_config* cfg, char* errmsg,
                          size_t errlen)
{
    bool psk = cfg->psk_file != NULL && cfg->psk_file[0] != '\0';
    bool cert = (cfg->ca_file != NULL && cfg->ca_file[0] != '\0') ||
                (cfg->cert_file != NULL && cfg->cert_file[0] != '\0') ||
                (cfg->key_file != NULL && cfg->key_file[0] != '\0');
    if ((int)psk + (int)cert + (int)cfg->insecure != 1) {
        return fail(errmsg, errlen, -EINVAL,
                    psk + cert + cfg->insecure == 0
                        ? "the Raft transport needs a cluster secret (PSK file), a CA with this "
                          "node's certificate and key, or an explicit choice of plaintext "
                          "(insecure)"
                        : "the Raft transport takes one of: a PSK file, certificates, insecure");
    }
    if (cert && (cfg->ca_file == NULL || cfg->cert_file == NULL || cfg->key_file == NULL)) {
        return fail(errmsg, errlen, -EINVAL,
                    "certificate mode needs the CA, this node's certificate and its key");
    }
    struct cons_tr_config tc = {.id = cfg->id,
                                .mode = psk    ? CONS_TR_PSK
                                        : cert ? CONS_TR_CERT
                                               : CONS_TR_INSECURE,
                                .psk_file = cfg->psk_file,
                                .ca_file = cfg->ca_file,
                                .cert_file = cfg->cert_file,
                                .key_file = cfg->key_file,
                                .allowed = transport_allowed,
                                .arg = n};
    return cons_tr_init(&n->transport, n->loop, &tc, errmsg, errlen);
}

static void free_node(struct cons_node* n)
{
    free(n->committed_ids);
    cons_fail_inflight(n, -ESHUTDOWN);
    cons_complete_all(n, &n->proposals, -ESHUTDOWN);
    cons_complete_all(n, &n->barriers, -ESHUTDOWN);
    cons_dispatch(n);
    free(n);
}

static void handle_closed(uv_handle_t* h)
{
    struct cons_node* n = h->data;
    if (--n->handles_open > 0) {
        return;
    }
    void (*done)(void*) = n->close_done;
    void* arg = n->close_arg;
    free_node(n);
    if (done != NULL) {
        done(arg);
    }
}

static void raft_closed_cb(struct raft* r)
{
    struct cons_node* n = r->data;
    raft_uv_close(&n->io);
    cons_tr_free(&n->transport);
    n->raft_down = true;
    /* Whatever libraft failed while closing, and anything still queued. */
    cons_fail_inflight(n, -ESHUTDOWN);
    cons_complete_all(n, &n->proposals, -ESHUTDOWN);
    cons_complete_all(n, &n->barriers, -ESHUTDOWN);
    cons_dispatch(n);
    n->handles_open = 3;
    uv_close((uv_handle_t*)&n->poll, handle_closed);
    uv_close((uv_handle_t*)&n->work, handle_closed);
    uv_close((uv_handle_t*)&n->start_timer, handle_closed);
}

/* Failure after raft_init: libraft owns loop handles, so the node is torn
 * down asynchronously (the caller's loop finishes it). */
static void start_failed(struct cons_node* n)
{
    n->closing = true;
    uv_timer_stop(&n->poll);
    uv_timer_stop(&n->start_timer);
    raft_close(&n->raft, raft_closed_cb);
}

static int bootstrap(struct cons_node* n,
                     const struct cons_config* cfg,
                     bool* fresh,
                     char* errmsg,
                     size_t errlen)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = 0;
    bool self = false;
    if (cfg->peers == NULL || cfg->n_peers == 0) {
        rv = raft_configuration_add(&conf, cfg->id, cfg->address, RAFT_VOTER);
        self = true;
    } else {
        for (size_t i = 0; i < cfg->n_peers && rv == 0; i++) {
            const struct cons_peer* p = &cfg->peers[i];
            if (p->id == 0 || !cons_address_ok(p->address) ||
                (p->role != CONS_ROLE_VOTER && p->role != CONS_ROLE_STANDBY &&
                 p->role != CONS_ROLE_SPARE)) {
                raft_configuration_close(&conf);
                return fail(errmsg, errlen, -EINVAL,
                            "peer %zu: bad id, address (IPv4:port or [IPv6]:port) or role (id %" PRIu64
                            ", '%s')", i,
                            p->id, p->address);
            }
            rv = raft_configuration_add(&conf, p->id, p->address, p->role);
            if (p->id == cfg->id) {
                self = true;
            }
        }
    }
    if (rv != 0) {
        raft_configuration_close(&conf);
        return fail(errmsg, errlen, cons_err(rv), "initial configuration: %s", raft_strerror(rv));
    }
    *fresh = false;
    if (self && !cfg->join) {
        /* A node missing from the peers joins an existing cluster: it starts
         * empty and waits for cons_add/cons_assign from the leader. */
        rv = raft_bootstrap(&n->raft, &conf);
        if (rv == 0) {
            *fresh = true;
        } else if (rv != RAFT_CANTBOOTSTRAP) {
            raft_configuration_close(&conf);
            return fail(errmsg, errlen, cons_err(rv), "bootstrap %s: %s", cfg->data_dir,
                        raft_errmsg(&n->raft));
        }
    }
    raft_configuration_close(&conf);
    return 0;
}

static int start_raft(struct cons_node* n, char* errmsg, size_t errlen)
{
    int rv = cons_disk_start(n, errmsg, errlen);
    if (rv != 0) {
        return rv;
    }
    n->started = true;
    n->contact_at = uv_now(n->loop);
    uv_timer_start(&n->poll, poll_cb, 0, POLL_MS);
    return 0;
}

static void delayed_start_cb(uv_timer_t* t)
{
    struct cons_node* n = t->data;
    if (n->closing) {
        return;
    }
    int rv = start_raft(n, n->start_msg, sizeof n->start_msg);
    if (rv < 0) {
        n->start_error = rv;
        if (n->change_cb != NULL) {
            struct cons_status st;
            cons_get_status(n, &st);
            n->change_cb(n->change_arg, &st);
        }
    }
}

int cons_start(struct uv_loop_s* loop,
               const struct cons_config* cfg,
               const struct cons_fsm* fsm,
               struct cons_node** out,
               char* errmsg,
               size_t errlen)
{
    if (errmsg != NULL && errlen > 0) {
        errmsg[0] = '\0';
    }
    if (loop == NULL || cfg == NULL || fsm == NULL || out == NULL) {
        return fail(errmsg, errlen, -EINVAL, "missing argument");
    }
    *out = NULL;
    if (fsm->apply == NULL || fsm->snapshot == NULL || fsm->restore == NULL) {
        return fail(errmsg, errlen, -EINVAL, "fsm needs apply, snapshot and restore");
    }
    if (cfg->id == 0) {
        return fail(errmsg, errlen, -EINVAL, "node id must be > 0");
    }
    if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0') {
        return fail(errmsg, errlen, -EINVAL, "no data dir");
    }
    struct sockaddr_storage sa;
    socklen_t salen;
    if (cons_parse_addr(cfg->address, &sa, &salen) < 0) {
        return fail(errmsg, errlen, -EINVAL,
                    "raft address '%s' is neither a.b.c.d:port nor [IPv6]:port",
                    cfg->address ? cfg->address : "");
    }
    unsigned et = cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000;
    unsigned hb = cfg->heartbeat_ms ? cfg->heartbeat_ms : et / 10;
    if (hb == 0 || hb >= et) {
        return fail(errmsg, errlen, -EINVAL,
                    "heartbeat %u ms must be > 0 and below the election timeout %u ms", hb, et);
    }
    unsigned threshold = cfg->snapshot_threshold ? cfg->snapshot_threshold : 8192;
    unsigned trailing = cfg->snapshot_trailing ? cfg->snapshot_trailing : threshold / 2;
    size_t segment = cfg->segment_size ? cfg->segment_size : DEFAULT_SEGMENT;
    segment = (segment + 4095) & ~(size_t)4095;

    int rv = mkdir_p(cfg->data_dir);
    if (rv < 0) {
        return fail(errmsg, errlen, rv, "data dir %s: %s", cfg->data_dir, strerror(-rv));
    }
    uint64_t owner = 0;
    rv = read_node_id(cfg->data_dir, &owner);
    if (rv < 0) {
        return fail(errmsg, errlen, rv, "data dir %s: %s: %s", cfg->data_dir, NODE_ID_FILE,
                    strerror(-rv));
    }
    if (owner != 0 && owner != cfg->id) {
        return fail(errmsg, errlen, -EEXIST,
                    "data dir %s belongs to node %" PRIu64 ", not %" PRIu64, cfg->data_dir, owner,
                    cfg->id);
    }
    rv = probe_bind(&sa, salen);
    if (rv < 0) {
        return fail(errmsg, errlen, rv, "raft address %s: %s", cfg->address, strerror(-rv));
    }
    /* libraft writes to peers with plain write(): a peer that went away
     * would raise SIGPIPE and kill the process. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }

    struct cons_node* n = calloc(1, sizeof *n);
    if (n == NULL) {
        return fail(errmsg, errlen, -ENOMEM, "out of memory");
    }
    n->loop = loop;
    n->fsm = *fsm;
    n->id = cfg->id;
    snprintf(n->address, sizeof n->address, "%s", cfg->address);
    n->max_batch = cfg->max_batch ? cfg->max_batch : 256;
    /* Keep an entry well inside one segment (a lone big command may still
     * exceed it). */
    n->max_entry_bytes = segment / 2;
    cons_list_init(&n->proposals);
    cons_list_init(&n->barriers);
    cons_list_init(&n->done);
    n->last_state = -1;
    rv = cons_disk_open(n, cfg, segment, errmsg, errlen);
    if (rv < 0) {
        free(n);
        return rv;
    }

    rv = transport_init(n, cfg, errmsg, errlen);
    if (rv < 0) {
        free(n);
        return rv;
    }
    rv = raft_uv_init(&n->io, loop, cfg->data_dir, &n->transport);
    if (rv != 0) {
        rv = fail(errmsg, errlen, cons_err(rv), "raft io %s: %s", cfg->data_dir, n->io.errmsg);
        cons_tr_free(&n->transport);
        free(n);
        return rv;
    }
    raft_uv_set_segment_size(&n->io, segment);
    /* a damaged segment is ours to judge (cons_disk.c), not renamed away */
    raft_uv_set_auto_recovery(&n->io, false);
    cons_disk_guard_close(n);
    raft_uv_set_connect_retry_delay(&n->io, CONNECT_RETRY_MS);
    cons_fsm_setup(n);
    rv = raft_init(&n->raft, &n->io, &n->rfsm, cfg->id, n->address);
    if (rv != 0) {
        rv = fail(errmsg, errlen, cons_err(rv), "raft init %s: %s", cfg->data_dir,
                  raft_errmsg(&n->raft));
        raft_uv_close(&n->io);
        cons_tr_free(&n->transport);
        free(n);
        return rv;
    }
    n->raft.data = n;
    uv_timer_init(loop, &n->poll);
    n->poll.data = n;
    uv_idle_init(loop, &n->work);
    n->work.data = n;
    uv_timer_init(loop, &n->start_timer);
    n->start_timer.data = n;

    bool fresh = false;
    rv = bootstrap(n, cfg, &fresh, errmsg, errlen);
    if (rv < 0) {
        start_failed(n);
        return rv;
    }
    if (owner == 0) {
        rv = write_node_id(cfg->data_dir, cfg->id);
        if (rv < 0) {
            start_failed(n);
            return fail(errmsg, errlen, rv, "data dir %s: write %s: %s", cfg->data_dir,
                        NODE_ID_FILE, strerror(-rv));
        }
    }
    raft_set_election_timeout(&n->raft, et);
    raft_set_heartbeat_timeout(&n->raft, hb);
    raft_set_snapshot_threshold(&n->raft, threshold);
    raft_set_snapshot_trailing(&n->raft, trailing);
    raft_set_pre_vote(&n->raft, cfg->pre_vote);
    if (cfg->start_delay_ms > 0) {
        uv_timer_start(&n->start_timer, delayed_start_cb, cfg->start_delay_ms, 0);
        *out = n;
        return 0;
    }
    rv = start_raft(n, errmsg, errlen);
    if (rv < 0) {
        start_failed(n);
        return rv;
    }
    *out = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* close */

void cons_close(struct cons_node* n, void (*done)(void* arg), void* arg)
{
    if (n == NULL || n->closing) {
        return;
    }
    n->closing = true;
    n->close_done = done;
    n->close_arg = arg;
    uv_timer_stop(&n->start_timer);
    /* Queued proposals never reached raft: nothing happened. */
    cons_complete_all(n, &n->proposals, -ESHUTDOWN);
    cons_complete_all(n, &n->barriers, -ESHUTDOWN);
    uv_timer_stop(&n->poll);
    cons_disk_close(n);
    /* Fails pending applies/barriers/changes (leadership lost: outcome
     * unknown) and the transfer; all land in the done queue. */
    raft_close(&n->raft, raft_closed_cb);
    cons_kick(n);
}
