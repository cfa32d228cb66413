/* Failover rig (fo_rig.h): real nvmetd processes in the lab's namespaces,
 * the faults, and the measurements from the watcher's timeline. */
#include "fo_rig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

#define RPC_PORT 7100
#define RAFT_PORT 7001
#define NEW_MASTER_TIMEOUT_MS 15000
#define STABLE_TIMEOUT_MS 20000
#define AFTER_MS 300 /* watched on after the new master, for late double owners */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long now_ms(void)
{
    return (long)(watch_now() / 1000000);
}

/* The write of a fault ends while the rig waits for other things: every
 * wait looks at it at least every 5 ms, so its time is that precise. */
static void poll_writer(struct rig *r)
{
    int st;
    if (r->writer > 0 && lab_exited(&r->lab, r->writer, &st) == 1) {
        r->writer_end = watch_now();
        r->writer_status = st;
        r->writer = 0;
    }
}

static void rig_wait(struct rig *r, long ms)
{
    for (long until = now_ms() + ms;;) {
        poll_writer(r);
        long left = until - now_ms();
        if (left <= 0) {
            return;
        }
        sleep_ms(left < 5 ? left : 5);
    }
}

static void mkdirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

const char *rig_fault_name(enum rig_fault f)
{
    static const char *const names[] = {"node death", "daemon crash", "pause", "partition",
                                        "planned switchover"};
    return (unsigned)f < 5 ? names[f] : "?";
}

/* ---- calls ---- */

char *rig_call(struct rig *r, int i, const char *method, const char *params_json)
{
    char ep[320];
    snprintf(ep, sizeof ep, "unix:%s", r->node[i].sock);
    struct nv *params = params_json != NULL ? nv_from_json(params_json) : nv_arr();
    if (params == NULL) {
        fprintf(stderr, "rig: bad JSON %s\n", params_json);
        return NULL;
    }
    struct rpc_sync_opts o = {.timeout_ms = 3000};
    struct nv *res = NULL;
    struct nv_err e;
    nv_err_init(&e);
    int rv = rpc_call_sync(ep, method, params, &o, &res, &e);
    nv_err_clear(&e);
    if (rv < 0) {
        return NULL;
    }
    char *out = nv_dump(res);
    nv_free(res);
    return out;
}

/* A call that must succeed (logged otherwise). */
static int must(struct rig *r, int i, const char *method, const char *params)
{
    char ep[320];
    snprintf(ep, sizeof ep, "unix:%s", r->node[i].sock);
    struct nv *p = nv_from_json(params);
    struct rpc_sync_opts o = {.timeout_ms = 15000};
    struct nv *res = NULL;
    struct nv_err e;
    nv_err_init(&e);
    int rv = rpc_call_sync(ep, method, p, &o, &res, &e);
    if (rv < 0) {
        char *why = nv_err_reason(&e);
        fprintf(stderr, "rig: %s %s: %s\n", method, params, why ? why : strerror(-rv));
        free(why);
    }
    nv_err_clear(&e);
    nv_free(res);
    return rv;
}

/* failover.status_details of node i (owned), NULL if it does not answer. */
static struct nv *details(struct rig *r, int i)
{
    if (r->node[i].pid == 0 || r->node[i].paused) {
        return NULL;
    }
    char ep[320];
    snprintf(ep, sizeof ep, "unix:%s", r->node[i].sock);
    struct rpc_sync_opts o = {.timeout_ms = 500};
    struct nv *res = NULL;
    struct nv_err e;
    nv_err_init(&e);
    int rv = rpc_call_sync(ep, "failover.status_details", nv_arr(), &o, &res, &e);
    nv_err_clear(&e);
    return rv < 0 ? NULL : res;
}

static bool holds_all(const struct nv *d)
{
    const struct nv *v = nv_get(d, "vips");
    bool all = nv_len(v) > 0;
    for (size_t k = 0; k < nv_len(v); k++) {
        all &= nv_get_bool(nv_at(v, k), "held", false);
    }
    return all;
}

static bool holds_any(const struct nv *d)
{
    const struct nv *v = nv_get(d, "vips");
    bool any = false;
    for (size_t k = 0; k < nv_len(v); k++) {
        any |= nv_get_bool(nv_at(v, k), "held", false);
    }
    return any;
}

int rig_master(struct rig *r)
{
    int m = 0;
    for (int i = 1; i <= r->nodes; i++) {
        struct nv *d = details(r, i);
        const char *s = nv_get_str(d, "status");
        if (s != NULL && strcmp(s, "MASTER") == 0 && holds_all(d)) {
            m = i;
        }
        nv_free(d);
    }
    return m;
}

int rig_stable(struct rig *r, int timeout_ms)
{
    for (long until = now_ms() + timeout_ms; now_ms() < until; rig_wait(r, 20)) {
        int masters = 0, holders = 0, answering = 0, running = 0, ready = 0;
        for (int i = 1; i <= r->nodes; i++) {
            if (r->node[i].pid == 0) {
                continue;
            }
            running++;
            struct nv *d = details(r, i);
            if (d == NULL) {
                continue;
            }
            answering++;
            const char *s = nv_get_str(d, "status");
            masters += s != NULL && strcmp(s, "MASTER") == 0 && holds_all(d);
            holders += holds_any(d);
            ready += nv_get(d, "leader") != NULL && !nv_is(nv_get(d, "leader"), NV_NIL);
            nv_free(d);
        }
        if (answering == running && masters == 1 && holders == 1 && ready == running) {
            return 0;
        }
    }
    fprintf(stderr, "rig: the cluster did not become stable within %d ms\n", timeout_ms);
    return -ETIMEDOUT;
}

/* ---- nodes ---- */

int rig_start(struct rig *r, int i)
{
    struct rig_node *n = &r->node[i];
    char id[8], raft[32], rpc[32], et[16];
    snprintf(id, sizeof id, "%d", i);
    snprintf(raft, sizeof raft, "198.51.100.%d:%d", 10 + i, RAFT_PORT);
    snprintf(rpc, sizeof rpc, "198.51.100.%d:%d", 130 + i, RPC_PORT);
    snprintf(et, sizeof et, "%u", r->election_ms);
    char data[320], dev[320];
    snprintf(data, sizeof data, "%s/data", n->dir);
    snprintf(dev, sizeof dev, "%s/root", n->dir);
    char *argv[40] = {NVMETD_BIN,  "--id",          id,         "--data-dir",
                      data,        "--raft",        raft,       "--rpc",
                      rpc,         "--socket",      n->sock,    "--configfs",
                      n->configfs, "--device-root", dev,        "--api-key-file",
                      r->key,      "--cluster",     r->cluster, "--raft-psk-file",
                      r->psk,      "--rpc-plaintext", "--emulate", NULL};
    /* (plaintext RPC: the lab's network exists only in its namespaces;
     * TLS is covered by the integration and unit tests) */
    int argc = 23;
    if (n->witness) {
        argv[argc++] = "--witness";
    }
    if (r->election_ms > 0) {
        argv[argc++] = "--election-timeout";
        argv[argc++] = et;
    }
    if (getenv("RIG_LOG_LEVEL") != NULL) {
        argv[argc++] = "--log-level";
        argv[argc++] = getenv("RIG_LOG_LEVEL");
    }
    argv[argc] = NULL;
    unlink(n->sock);
    pid_t pid = lab_spawn(&r->lab, i, argv, n->log);
    if (pid < 0) {
        fprintf(stderr, "rig: start node %d: %s\n", i, strerror((int)-pid));
        return (int)pid;
    }
    n->pid = pid;
    n->paused = false;
    for (long until = now_ms() + 10000; now_ms() < until; rig_wait(r, 20)) {
        char *pong = rig_call(r, i, "core.ping", NULL);
        free(pong);
        if (pong != NULL) {
            return 0;
        }
        int st;
        if (lab_exited(&r->lab, pid, &st) == 1) {
            fprintf(stderr, "rig: node %d exited at start (status %d), log %s\n", i, st, n->log);
            n->pid = 0;
            return -ECHILD;
        }
    }
    fprintf(stderr, "rig: node %d does not answer, log %s\n", i, n->log);
    return -ETIMEDOUT;
}

static int configure(struct rig *r)
{
    char vips[1024], na4[256] = "", na6[256] = "";
    size_t o4 = 0, o6 = 0;
    for (int i = 1; i <= r->nodes; i++) {
        if (r->node[i].witness) {
            continue;
        }
        o4 += (size_t)snprintf(na4 + o4, sizeof na4 - o4, "%s\"%d\": \"198.51.100.%d\"",
                               o4 ? ", " : "", i, 130 + i);
        o6 += (size_t)snprintf(na6 + o6, sizeof na6 - o6, "%s\"%d\": \"2001:db8::%d\"",
                               o6 ? ", " : "", i, 10 + i);
    }
    snprintf(vips, sizeof vips,
             "[{\"vips\": [{\"address\": \"" RIG_VIP4
             "\", \"prefix\": %d, \"interface\": "
             "\"eth0\", \"node_addresses\": {%s}}, {\"address\": \"" RIG_VIP6
             "\", \"prefix\": %d, \"interface\": \"eth0\", \"node_addresses\": {%s}}], "
             "\"announce_count\": 3, \"announce_interval_ms\": 100}]",
             LAB_DATA_PREFIX4, na4, LAB_DATA_PREFIX6, na6);
    const char *calls[][2] = {
        {"failover.update", vips},
        {"nvmet.subsys.create",
         "[{\"name\": \"nqn.2024-01.com.example:nvme:fo\", \"allow_any_host\": true}]"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\"}]"},
        {"nvmet.port.create",
         "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"" RIG_VIP4 "\", \"addr_trsvcid\": 4420}]"},
        {"nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"" RIG_VIP6
                              "\", \"addr_trsvcid\": 4420, \"addr_adrfam\": \"IPV6\"}]"},
        {"nvmet.port_subsys.create", "[{\"port\": 1, \"subsys\": 1}]"},
        {"nvmet.port_subsys.create", "[{\"port\": 2, \"subsys\": 1}]"},
        {"nvmet.global.update", r->ana ? "[{\"ana\": true}]" : NULL},
        {"nvmet.global.update", "[{\"enabled\": true}]"},
    };
    int rv = 0;
    for (size_t k = 0; k < sizeof calls / sizeof calls[0] && rv == 0; k++) {
        if (calls[k][1] != NULL) {
            rv = must(r, 1, calls[k][0], calls[k][1]);
        }
    }
    return rv;
}

int rig_up(struct rig *r, const struct rig_opts *o)
{
    memset(r, 0, sizeof *r);
    r->nodes = o->nodes ? o->nodes : 3;
    r->ana = o->ana;
    r->election_ms = o->election_ms;
    int rv = lab_create(&r->lab, r->nodes);
    if (rv < 0) {
        return rv;
    }
    snprintf(r->base, sizeof r->base, "/tmp/nvmet-fo.XXXXXX");
    if (mkdtemp(r->base) == NULL) {
        lab_destroy(&r->lab);
        return -errno;
    }
    snprintf(r->key, sizeof r->key, "%s/api.key", r->base);
    FILE *k = fopen(r->key, "w");
    if (k != NULL) {
        fputs("rig-key\n", k);
        fclose(k);
        chmod(r->key, 0600); /* nvmetd refuses a key file others can read */
    }
    /* a fresh Raft secret per rig, private to root like a real one */
    snprintf(r->psk, sizeof r->psk, "%s/raft.psk", r->base);
    unsigned char secret[32];
    int pfd = open(r->psk, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (pfd >= 0 && getrandom(secret, sizeof secret, 0) == (ssize_t)sizeof secret) {
        for (size_t b = 0; b < sizeof secret; b++) {
            dprintf(pfd, "%02x", secret[b]);
        }
        dprintf(pfd, "\n");
    }
    if (pfd >= 0) {
        close(pfd);
    }
    size_t oc = 0, ou = 0;
    for (int i = 1; i <= r->nodes; i++) {
        struct rig_node *n = &r->node[i];
        n->id = i;
        n->witness = i == o->witness;
        char dir[sizeof n->dir]; /* a copy: gcc sees r->base and n->dir as one object */
        snprintf(dir, sizeof dir, "%s/n%d", r->base, i);
        snprintf(n->dir, sizeof n->dir, "%s", dir);
        snprintf(n->sock, sizeof n->sock, "%s/sock", dir);
        snprintf(n->configfs, sizeof n->configfs, "%s/configfs", dir);
        snprintf(n->log, sizeof n->log, "%s/nvmetd.log", dir);
        mkdirs(n->configfs);
        char dev[400];
        snprintf(dev, sizeof dev, "%s/root/dev/zvol/tank/nvme", n->dir);
        mkdirs(dev);
        snprintf(dev, sizeof dev, "%s/root/dev/zvol/tank/nvme/ns1", n->dir);
        /* the shared disk as the emulated kernel sees it: a block device node */
        if (mknod(dev, S_IFBLK | 0600, makedev(7, 201)) < 0 && errno != EEXIST) {
            perror("rig: mknod");
        }
        oc += (size_t)snprintf(r->cluster + oc, sizeof r->cluster - oc, "%s%d=198.51.100.%d:%d",
                               i > 1 ? "," : "", i, 10 + i, RAFT_PORT);
        ou += (size_t)snprintf(r->urls + ou, sizeof r->urls - ou, "%s198.51.100.%d:%d",
                               i > 1 ? "," : "", 130 + i, RPC_PORT);
    }
    for (int i = 1; i <= r->nodes && rv == 0; i++) {
        rv = rig_start(r, i);
    }
    if (rv == 0) {
        rv = configure(r);
    }
    if (rv == 0) {
        rv = rig_stable(r, STABLE_TIMEOUT_MS);
    }
    if (rv < 0) {
        rig_down(r);
    }
    return rv;
}

void rig_down(struct rig *r)
{
    for (int i = 1; i <= r->nodes; i++) {
        if (r->node[i].pid > 0) {
            if (r->node[i].paused) {
                kill(r->node[i].pid, SIGCONT);
            }
            lab_stop(&r->lab, r->node[i].pid, SIGTERM, 5000);
            r->node[i].pid = 0;
        }
    }
    lab_destroy(&r->lab);
    if (r->base[0] != '\0' && getenv("RIG_KEEP") == NULL) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->base);
        if (system(cmd) != 0) {
            fprintf(stderr, "rig: could not remove %s\n", r->base);
        }
    }
    r->base[0] = '\0';
}

/* ---- a fault ---- */

static void wipe_configfs(struct rig *r, int i)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/nvmet' '%s/.nvmet-emu'", r->node[i].configfs,
             r->node[i].configfs);
    if (system(cmd) != 0) {
        fprintf(stderr, "rig: could not wipe %s\n", r->node[i].configfs);
    }
}

/* The write a user starts at the moment of the fault: nvmetctl with every
 * node's URL, from the client namespace. */
static pid_t start_write(struct rig *r, char *name, size_t len)
{
    snprintf(name, len, "nqn.2024-01.com.example:host:w%d", ++r->writes);
    char arg[200], log[320];
    snprintf(arg, sizeof arg, "{\"hostnqn\": \"%s\"}", name);
    snprintf(log, sizeof log, "%s/writes.log", r->base);
    char *argv[] = {NVMETCTL_BIN, "--url", r->urls,        "--api-key-file",    r->key,
                    "--plaintext", "--timeout", "30", "call", "nvmet.host.create", arg,
                    NULL};
    return lab_spawn(&r->lab, LAB_CLIENT, argv, log);
}

/* The new master: another data node that says MASTER and holds both VIPs. */
static int wait_new_master(struct rig *r, int old, long ms)
{
    for (long until = now_ms() + ms; now_ms() < until; rig_wait(r, 10)) {
        for (int i = 1; i <= r->nodes; i++) {
            if (i == old) {
                continue;
            }
            struct nv *d = details(r, i);
            const char *s = nv_get_str(d, "status");
            bool m = s != NULL && strcmp(s, "MASTER") == 0 && holds_all(d);
            nv_free(d);
            if (m) {
                return i;
            }
        }
    }
    return 0;
}

static double ms_of(int64_t t, int64_t t0)
{
    return t < 0 ? -1.0 : (double)(t - t0) / 1e6;
}

static int count_hosts(struct rig *r, const char *name)
{
    char q[300];
    snprintf(q, sizeof q, "[[[\"hostnqn\", \"=\", \"%s\"]], {\"count\": true}]", name);
    for (int i = 1; i <= r->nodes; i++) {
        if (r->node[i].pid == 0 || r->node[i].paused) {
            continue;
        }
        char *out = rig_call(r, i, "nvmet.host.query", q);
        if (out != NULL) {
            int c = atoi(out);
            free(out);
            return c;
        }
    }
    return -1;
}

int rig_fault(struct rig *r, enum rig_fault f, struct rig_result *res, bool verbose)
{
    memset(res, 0, sizeof *res);
    res->write_status = -1;
    int m = rig_master(r);
    if (m == 0) {
        fprintf(stderr, "rig: no master before the fault\n");
        return -EAGAIN;
    }
    res->old_master = m;
    struct nv *d = details(r, m);
    pid_t guardian = (pid_t)nv_get_int(d, "guardian_pid", 0);
    nv_free(d);

    struct watch_cfg cfg;
    watch_cfg_init(&cfg, &r->lab);
    int v4 = watch_cfg_vip(&cfg, RIG_VIP4), v6 = watch_cfg_vip(&cfg, RIG_VIP6);
    for (int i = 1; r->ana && i <= r->nodes; i++) {
        snprintf(cfg.configfs[i], sizeof cfg.configfs[i], "%s", r->node[i].configfs);
    }
    struct watch *w = NULL;
    int rv = watch_start(&cfg, &w);
    if (rv < 0) {
        fprintf(stderr, "rig: watcher: %s\n", strerror(-rv));
        return rv;
    }
    sleep_ms(100);

    char wname[128];
    int64_t t0 = watch_mark(w, "fault");
    r->writer = start_write(r, wname, sizeof wname);
    r->writer_status = -1;
    if (r->writer < 0) {
        fprintf(stderr, "rig: the write could not start: %s\n", strerror((int)-r->writer));
        r->writer = 0;
    }
    pid_t mpid = r->node[m].pid;
    switch (f) {
        case RIG_DEATH:
            /* power loss: daemon and guardian gone at once, links dead */
            if (guardian > 0) {
                kill(guardian, SIGKILL);
            }
            lab_stop(&r->lab, mpid, SIGKILL, 2000);
            r->node[m].pid = 0;
            lab_set_link(&r->lab, m, LAB_DATA, false);
            lab_set_link(&r->lab, m, LAB_CLUSTER, false);
            break;
        case RIG_CRASH:
            lab_stop(&r->lab, mpid, SIGKILL, 2000);
            r->node[m].pid = 0;
            break;
        case RIG_PAUSE:
            kill(mpid, SIGSTOP);
            r->node[m].paused = true;
            break;
        case RIG_PARTITION:
            lab_set_link(&r->lab, m, LAB_CLUSTER, false);
            break;
        case RIG_SWITCHOVER:
            must(r, m, "failover.become_passive", "[]");
            break;
    }
    int nm = wait_new_master(r, m, NEW_MASTER_TIMEOUT_MS);
    res->new_master = nm;
    res->ok = nm != 0;
    rig_wait(r, AFTER_MS);
    watch_mark(w, "new master");

    /* back to a whole cluster, still watched: the old master must not
     * take anything back while it returns */
    switch (f) {
        case RIG_DEATH:
            /* it boots again: a new kernel holds none of the VIPs it had and
             * its configfs starts empty */
            lab_ip(&r->lab, m, "addr", "del", RIG_VIP4 "/25", "dev", "eth0", NULL);
            lab_ip(&r->lab, m, "addr", "del", RIG_VIP6 "/64", "dev", "eth0", NULL);
            wipe_configfs(r, m);
            /* a reboot takes longer than the watcher's two ANA rounds that
             * must see the empty configfs before the link is up again */
            rig_wait(r, 20);
            lab_set_link(&r->lab, m, LAB_DATA, true);
            lab_set_link(&r->lab, m, LAB_CLUSTER, true);
            watch_mark(w, "restart");
            rig_start(r, m);
            break;
        case RIG_CRASH:
            watch_mark(w, "restart");
            rig_start(r, m);
            break;
        case RIG_PAUSE:
            watch_mark(w, "resume");
            kill(mpid, SIGCONT);
            r->node[m].paused = false;
            break;
        case RIG_PARTITION:
            watch_mark(w, "heal");
            lab_set_link(&r->lab, m, LAB_CLUSTER, true);
            break;
        case RIG_SWITCHOVER:
            break;
    }
    int stable = rig_stable(r, STABLE_TIMEOUT_MS);
    rig_wait(r, AFTER_MS);

    /* the write started at the fault */
    for (long until = now_ms() + 35000; r->writer > 0 && now_ms() < until;) {
        rig_wait(r, 5);
    }
    if (r->writer > 0) {
        lab_stop(&r->lab, r->writer, SIGKILL, 1000);
        r->writer = 0;
    } else {
        res->write_status = r->writer_status;
        res->write_ms = ms_of(r->writer_end, t0);
    }
    int n = count_hosts(r, wname);
    res->writes_lost = (res->write_status == 0 && n != 1) || n > 1;

    struct watch_timeline tl;
    rv = watch_stop(w, &tl);
    if (rv < 0 && tl.ev == NULL) {
        return rv;
    }
    int vip[2] = {v4, v6};
    res->server_ms = 0;
    for (int k = 0; k < 2; k++) {
        res->answer_ms[k] = nm ? ms_of(watch_first_reply(&tl, vip[k], nm, t0), t0) : -1;
        double s = nm ? ms_of(watch_first_sample(&tl, vip[k], nm, true, t0), t0) : -1;
        res->server_ms = s < 0 || res->server_ms < 0 ? -1 : s > res->server_ms ? s : res->server_ms;
        double rel = ms_of(watch_first_sample(&tl, vip[k], m, false, t0), t0);
        res->release_ms = rel > res->release_ms ? rel : res->release_ms;
        struct watch_span sp;
        res->double_count += watch_double_owner(&tl, vip[k], &sp);
        res->double_ms += (double)sp.total_ns / 1e6;
        res->arp_conflicts += watch_arp_conflicts(&tl, vip[k], NULL);
    }
    res->ana_ms = -1;
    for (size_t k = 0; r->ana && nm && k < tl.n; k++) {
        const struct watch_ev *e = &tl.ev[k];
        if (e->t >= t0 && e->kind == WATCH_ANA && e->node == nm && (e->flags & WATCH_F_OPTIMIZED)) {
            res->ana_ms = ms_of(e->t, t0);
            break;
        }
    }
    struct watch_span as;
    watch_ana_double(&tl, &as);
    res->ana_double_ms = (double)as.total_ns / 1e6;
    int64_t gap = watch_max_gap(&tl, WATCH_PROBE, 0);
    for (int i = 1; i <= r->nodes; i++) {
        int64_t g = watch_max_gap(&tl, WATCH_SAMPLE, i);
        gap = g > gap ? g : gap;
    }
    res->max_gap_ms = (double)gap / 1e6;
    if (verbose || !res->ok || res->double_count > 0 || res->arp_conflicts > 0 ||
        res->ana_double_ms > 0) {
        fprintf(stderr, "---- %s of node %d: timeline ----\n", rig_fault_name(f), m);
        watch_print(&tl, stderr, 400);
    }
    watch_timeline_free(&tl);
    return stable;
}
