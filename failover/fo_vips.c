/* The virtual IPs of this node: read from the replicated failover
 * settings, added while serving and removed otherwise (each step read
 * back by fo_net), announced after every acquire, watched by a netlink
 * monitor, and remembered in the data dir so the next start can drop
 * them before anything else.
 *
 * The monitor keeps the rule both ways: while serving, a VIP removed
 * behind our back (an operator's `ip addr del`, an interface that went
 * down and took its IPv6 addresses along) is put back and announced
 * again; while not serving, a configured VIP that appears on this node is
 * removed, since another node may hold it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fo_int.h"
#include "nv.h"
#include "nv_file.h"
#include "sm.h"

#define STATE_FILE "failover-vips"
#define STATE_MAGIC "nvmet-ha failover v1"

/* ---- announcements ---- */

static void announce_once(struct fo *f)
{
    for (size_t i = 0; f->ann != NULL && i < f->n_vips; i++) {
        if (!f->held[i]) {
            continue;
        }
        char msg[200];
        if (fo_announce(f->ann, &f->vips[i], msg, sizeof msg) < 0) {
            fo__log(f, FO_LOG_ERROR, "%s", msg);
        }
    }
}

static void announce_cb(uv_timer_t *t)
{
    struct fo *f = t->data;
    if (!f->serving || f->announce_left == 0) {
        uv_timer_stop(t);
        return;
    }
    announce_once(f);
    if (--f->announce_left == 0) {
        uv_timer_stop(t);
    }
}

void fo__announce_start(struct fo *f)
{
    const struct nv *fo = nv_get(sm_cluster(f->cfg.sm), "failover");
    int64_t count = nv_get_int(fo, "announce_count", 3);
    int64_t interval = nv_get_int(fo, "announce_interval_ms", 200);
    if (count <= 0) {
        return;
    }
    /* the first one now: a host that cached the old owner's MAC moves at
     * once; the repeats cover lost frames and slow switches */
    announce_once(f);
    f->announce_left = (unsigned)count - 1;
    f->announce_interval_ms = interval > 0 ? (unsigned)interval : 200;
    if (f->announce_left > 0) {
        uv_timer_start(&f->announce_timer, announce_cb, f->announce_interval_ms,
                       f->announce_interval_ms);
    }
}

/* ---- add / remove ---- */

/* Whether this node may hold its VIPs right now: always without other
 * voters, else only within its lease, checked on a fresh clock right
 * before the address goes on (after a stop the loop's cached time is old,
 * and an event from before the stop must not put back what the guardian
 * removed). */
static bool may_hold(struct fo *f)
{
    if (!f->shared) {
        return true;
    }
    uv_update_time(f->loop);
    return fo__lease_valid(f);
}

static int vip_add(struct fo *f, size_t i)
{
    if (!may_hold(f)) {
        return -ESTALE;
    }
    char msg[200];
    int rv = fo_addr_add(f->nl, &f->vips[i], msg, sizeof msg);
    if (rv < 0) {
        snprintf(f->vip_error, sizeof f->vip_error, "%s", msg);
        fo__log(f, FO_LOG_ERROR, "%s", msg);
        return rv;
    }
    f->held[i] = true;
    return 0;
}

static void vip_del(struct fo *f, const struct fo_vip *v)
{
    char msg[200];
    if (fo_addr_del(f->nl, v, msg, sizeof msg) < 0) {
        fo__log(f, FO_LOG_ERROR, "%s", msg);
    }
}

unsigned fo__vips_acquire(struct fo *f)
{
    unsigned failed = 0;
    f->vip_error[0] = '\0';
    for (size_t i = 0; i < f->n_vips; i++) {
        if (vip_add(f, i) < 0) {
            failed++;
        }
    }
    return failed;
}

void fo__vips_release(struct fo *f)
{
    uv_timer_stop(&f->announce_timer);
    f->announce_left = 0;
    for (size_t i = 0; i < f->n_vips; i++) {
        vip_del(f, &f->vips[i]);
        f->held[i] = false;
    }
}

/* While serving, a VIP that could not be added (its interface missing, a
 * refused address) is tried again, at most once a second. */
void fo__vips_retry(struct fo *f)
{
    uint64_t now = fo__now(f);
    if (!f->serving || now < f->vip_retry_at) {
        return;
    }
    bool missing = false, added = false;
    for (size_t i = 0; i < f->n_vips; i++) {
        if (!f->held[i]) {
            missing = true;
            added |= vip_add(f, i) == 0;
        }
    }
    if (!missing) {
        f->vip_error[0] = '\0';
        return;
    }
    f->vip_retry_at = now + 1000;
    bool all = true;
    for (size_t i = 0; i < f->n_vips; i++) {
        all &= f->held[i];
    }
    if (all) {
        f->vip_error[0] = '\0';
    }
    if (added) {
        fo__announce_start(f);
    }
}

/* ---- the settings ---- */

static bool same_vip(const struct fo_vip *a, const struct fo_vip *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->addr, b->addr, sizeof a->addr) == 0 && strcmp(a->ifname, b->ifname) == 0;
}

void fo__vips_persist(struct fo *f)
{
    if (f->cfg.data_dir == NULL) {
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/" STATE_FILE, f->cfg.data_dir);
    char *text = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&text, &len);
    if (o == NULL) {
        fo__log(f, FO_LOG_ERROR, "write %s: %s", path, strerror(errno));
        return;
    }
    fprintf(o, STATE_MAGIC "\nshared %d\n", f->shared ? 1 : 0);
    for (size_t i = 0; i < f->n_vips; i++) {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(f->vips[i].family, f->vips[i].addr, a, sizeof a);
        fprintf(o, "vip %s %u %s\n", a, f->vips[i].prefix, f->vips[i].ifname);
    }
    int rv = fclose(o) == 0 ? nv_write_durably(path, text, len, 0644) : -ENOMEM;
    if (rv < 0) {
        fo__log(f, FO_LOG_ERROR, "write %s: %s", path, strerror(-rv));
    }
    free(text);
}

void fo__vips_refresh(struct fo *f)
{
    uint64_t gen = sm_generation(f->cfg.sm) + 1;
    bool shared = fo__voters(f) > 1;
    if (gen == f->vips_gen && shared == f->shared) {
        return;
    }
    f->vips_gen = gen;
    const struct nv *list = nv_get(nv_get(sm_cluster(f->cfg.sm), "failover"), "vips");
    struct fo_vip now[FO_MAX_VIPS];
    size_t n = 0;
    for (size_t i = 0; i < nv_len(list) && n < FO_MAX_VIPS; i++) {
        const struct nv *v = nv_at(list, i);
        char msg[200];
        if (fo_vip_parse(nv_get_str(v, "address"), (unsigned)nv_get_int(v, "prefix", 0),
                         nv_get_str(v, "interface"), &now[n], msg, sizeof msg) < 0) {
            fo__log(f, FO_LOG_ERROR, "vips[%zu]: %s", i, msg);
            continue;
        }
        n++;
    }
    bool changed = n != f->n_vips || shared != f->shared;
    for (size_t i = 0; !changed && i < n; i++) {
        changed = !same_vip(&now[i], &f->vips[i]);
    }
    if (!changed) {
        return;
    }
    /* VIPs that went away are removed wherever we are; new ones are added
     * if we serve */
    bool held[FO_MAX_VIPS] = {false};
    for (size_t i = 0; i < f->n_vips; i++) {
        bool kept = false;
        for (size_t j = 0; j < n && !kept; j++) {
            if (same_vip(&f->vips[i], &now[j])) {
                kept = true;
                held[j] = f->held[i];
            }
        }
        if (!kept) {
            vip_del(f, &f->vips[i]);
        }
    }
    memcpy(f->vips, now, n * sizeof now[0]);
    memcpy(f->held, held, sizeof held);
    f->n_vips = n;
    f->shared = shared;
    if (f->guard != NULL) {
        fo_guard_set_vips(f->guard, f->vips, f->n_vips);
    }
    fo__vips_persist(f);
    bool added = false;
    for (size_t i = 0; i < n; i++) {
        if (f->serving && !f->held[i]) {
            added |= vip_add(f, i) == 0;
        } else if (!f->serving) {
            vip_del(f, &f->vips[i]);
        }
    }
    if (added) {
        fo__announce_start(f);
    }
}

/* ---- start-up: what an earlier run may have left ---- */

static void startup_log(void *arg, const char *line)
{
    fo__log(arg, FO_LOG_INFO, "%s", line);
}

void fo__vips_startup(struct fo *f)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/" STATE_FILE, f->cfg.data_dir ? f->cfg.data_dir : ".");
    FILE *in = f->cfg.data_dir ? fopen(path, "r") : NULL;
    if (in == NULL) {
        return;
    }
    char line[256];
    bool ok = fgets(line, sizeof line, in) != NULL && strncmp(line, STATE_MAGIC, 20) == 0;
    int shared = 0;
    unsigned dropped = 0;
    while (ok && fgets(line, sizeof line, in) != NULL) {
        char a[64], ifn[32];
        unsigned prefix;
        if (sscanf(line, "shared %d", &shared) == 1) {
            continue;
        }
        if (sscanf(line, "vip %63s %u %31s", a, &prefix, ifn) != 3) {
            continue;
        }
        struct fo_vip v;
        char msg[200];
        if (fo_vip_parse(a, prefix, ifn, &v, msg, sizeof msg) == 0) {
            bool present = false;
            if (fo_addr_present(f->nl, &v, &present) == 0 && present) {
                vip_del(f, &v);
                dropped++;
            }
        }
    }
    fclose(in);
    if (dropped > 0) {
        fo__log(f, FO_LOG_INFO, "start: removed %u VIP(s) of an earlier run", dropped);
    }
    if (shared && f->cfg.configfs != NULL) {
        fo__release_configfs(f->cfg.configfs, "start: an earlier run may have been active",
                             startup_log, f);
    }
}

/* ---- the monitor ---- */

struct mon_ctx {
    struct fo *f;
    bool recheck;
    bool restored;
};

static void on_event(void *arg, const struct fo_mon_event *ev)
{
    struct mon_ctx *c = arg;
    struct fo *f = c->f;
    if (ev->kind == FO_MON_LINK) {
        if (ev->up && f->serving) {
            c->recheck = true; /* IPv6 addresses go with a link that went down */
        }
        return;
    }
    for (size_t i = 0; i < f->n_vips; i++) {
        if (!fo_mon_is(ev, &f->vips[i], 0)) {
            continue;
        }
        if (ev->kind == FO_MON_ADDR_DEL && f->serving && f->held[i]) {
            fo__log(f, FO_LOG_ERROR, "%s was removed behind our back: putting it back",
                    f->vips[i].text);
            f->held[i] = false;
            if (vip_add(f, i) == 0) {
                f->restored++;
                c->restored = true;
            }
        } else if (ev->kind == FO_MON_ADDR_ADD && !f->serving) {
            fo__log(f, FO_LOG_ERROR, "%s appeared on this node, which is not active: removing it",
                    f->vips[i].text);
            vip_del(f, &f->vips[i]);
        }
    }
}

static void mon_cb(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct fo *f = p->data;
    if (status < 0 || f->closing) {
        return;
    }
    /* I/O callbacks run before the loop's timers: a daemon resumed after a
     * stop reads the guardian's removals here before its lease timer has
     * fired, so the lease is looked at first (and released if it ran out) */
    if (f->serving && !may_hold(f)) {
        fo__evaluate(f);
    }
    struct mon_ctx c = {.f = f};
    int rv = fo_mon_read(f->mon_fd, on_event, &c);
    if (rv == -ENOBUFS) {
        c.recheck = true; /* events were lost: look at the state itself */
    }
    if (c.recheck) {
        for (size_t i = 0; i < f->n_vips; i++) {
            bool present = false;
            if (fo_addr_present(f->nl, &f->vips[i], &present) < 0) {
                continue;
            }
            if (f->serving && !present) {
                f->held[i] = false;
                if (vip_add(f, i) == 0) {
                    f->restored++;
                    c.restored = true;
                }
            } else if (!f->serving && present) {
                vip_del(f, &f->vips[i]);
            }
        }
    }
    if (c.restored) {
        fo__announce_start(f);
    }
}

int fo__vips_open(struct fo *f, char *msg, size_t msglen)
{
    uv_timer_init(f->loop, &f->announce_timer);
    f->announce_timer.data = f;
    f->mon_fd = -1;
    int rv = fo_nl_open(&f->nl);
    if (rv < 0) {
        snprintf(msg, msglen, "netlink: %s", strerror(-rv));
        return rv;
    }
    rv = f->cfg.witness ? 0 : fo_ann_open(&f->ann);
    if (rv < 0) {
        /* without CAP_NET_RAW: VIPs still move, neighbours learn late */
        fo__log(f, FO_LOG_ERROR, "no announcements (packet sockets: %s)", strerror(-rv));
        f->ann = NULL;
    }
    rv = fo_mon_open(&f->mon_fd);
    if (rv < 0) {
        snprintf(msg, msglen, "netlink monitor: %s", strerror(-rv));
        return rv;
    }
    uv_poll_init(f->loop, &f->mon_poll, f->mon_fd);
    f->mon_poll.data = f;
    uv_poll_start(&f->mon_poll, UV_READABLE, mon_cb);
    return 0;
}

void fo__vips_close(struct fo *f, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&f->announce_timer, cb);
    if (f->mon_fd >= 0) {
        uv_close((uv_handle_t *)&f->mon_poll, cb);
    }
}
