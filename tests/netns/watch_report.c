/* Analysis of a watcher timeline (watch.h): pure functions of the
 * recorded events. A node's state is that of its last sample: it holds
 * from one sample until the next one says otherwise. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "watch.h"

static int64_t end_of(const struct watch_timeline *tl)
{
    if (tl->t_end != 0) {
        return tl->t_end;
    }
    return tl->n > 0 ? tl->ev[tl->n - 1].t : 0;
}

static bool is_node(const struct watch_timeline *tl, int node)
{
    return node >= 1 && node <= tl->nodes && node <= WATCH_MAX_NODES;
}

uint32_t watch_holders(const struct watch_timeline *tl, int vip, int64_t t)
{
    uint32_t nodes = 0;
    for (size_t i = 0; i < tl->n && tl->ev[i].t <= t; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if (e->kind != WATCH_SAMPLE || !is_node(tl, e->node)) {
            continue;
        }
        if (e->held & (1u << vip)) {
            nodes |= 1u << e->node;
        } else {
            nodes &= ~(1u << e->node);
        }
    }
    return nodes;
}

bool watch_link_up(const struct watch_timeline *tl, int node, int64_t t)
{
    bool up = false;
    for (size_t i = 0; i < tl->n && tl->ev[i].t <= t; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if (e->kind == WATCH_SAMPLE && e->node == node) {
            up = (e->flags & WATCH_F_UP) != 0;
        }
    }
    return up;
}

static void span_add(struct watch_span *s, int64_t from, int64_t to)
{
    if (to <= from) {
        return; /* two samples at the same instant: no measurable overlap */
    }
    s->count++;
    s->total_ns += to - from;
    if (to - from > s->longest_ns) {
        s->longest_ns = to - from;
    }
    if (s->first_ns < 0) {
        s->first_ns = from;
    }
}

/* Intervals where ≥ 2 nodes are "on" with their data link up (a node
 * without carrier answers nobody and reports nothing to a host): for
 * WATCH_SAMPLE, holding vip; for WATCH_ANA, an ANA group optimized (the
 * link comes from the samples). */
static int overlaps(const struct watch_timeline *tl, enum watch_kind kind, int vip,
                    struct watch_span *out)
{
    memset(out, 0, sizeof *out);
    out->first_ns = -1;
    bool on[WATCH_MAX_NODES + 1] = {false};
    bool up[WATCH_MAX_NODES + 1] = {false}, opt[WATCH_MAX_NODES + 1] = {false};
    int count = 0;
    bool in = false;
    int64_t since = 0;
    for (size_t i = 0; i < tl->n; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if ((e->kind != kind && e->kind != WATCH_SAMPLE) || !is_node(tl, e->node)) {
            continue;
        }
        bool now;
        if (e->kind == WATCH_SAMPLE) {
            up[e->node] = (e->flags & WATCH_F_UP) != 0;
        } else {
            opt[e->node] = (e->flags & WATCH_F_OPTIMIZED) != 0;
        }
        if (kind == WATCH_SAMPLE) {
            now = (e->held & (1u << vip)) && up[e->node];
        } else {
            now = opt[e->node] && up[e->node];
        }
        if (now != on[e->node]) {
            on[e->node] = now;
            count += now ? 1 : -1;
        }
        if (!in && count >= 2) {
            in = true;
            since = e->t;
        } else if (in && count < 2) {
            in = false;
            span_add(out, since, e->t);
        }
    }
    if (in) {
        span_add(out, since, end_of(tl));
    }
    return out->count;
}

int watch_double_owner(const struct watch_timeline *tl, int vip, struct watch_span *out)
{
    return overlaps(tl, WATCH_SAMPLE, vip, out);
}

int watch_ana_double(const struct watch_timeline *tl, struct watch_span *out)
{
    return overlaps(tl, WATCH_ANA, 0, out);
}

int watch_arp_conflicts(const struct watch_timeline *tl, int vip, int64_t *first)
{
    int rounds = 0;
    int64_t first_t = -1;
    bool have = false, counted = false;
    uint32_t seq = 0;
    unsigned char macs[2][6];
    int nmacs = 0;
    for (size_t i = 0; i < tl->n; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if (e->kind != WATCH_REPLY || e->vip != vip) {
            continue;
        }
        if (!have || e->seq != seq) {
            have = true;
            seq = e->seq;
            nmacs = 0;
            counted = false;
        }
        if (counted || (nmacs == 1 && memcmp(macs[0], e->mac, 6) == 0)) {
            continue;
        }
        memcpy(macs[nmacs++], e->mac, 6);
        if (nmacs == 2) {
            counted = true;
            rounds++;
            if (first_t < 0) {
                first_t = e->t;
            }
        }
    }
    if (first != NULL) {
        *first = first_t;
    }
    return rounds;
}

int64_t watch_first_reply(const struct watch_timeline *tl, int vip, int node, int64_t t)
{
    for (size_t i = 0; i < tl->n; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if (e->t >= t && e->kind == WATCH_REPLY && e->vip == vip &&
            (node == WATCH_ANY || e->node == node)) {
            return e->t;
        }
    }
    return -1;
}

int64_t watch_first_sample(const struct watch_timeline *tl, int vip, int node, bool holds,
                           int64_t t)
{
    for (size_t i = 0; i < tl->n; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if (e->t >= t && e->kind == WATCH_SAMPLE && e->node == node &&
            ((e->held & (1u << vip)) != 0) == holds) {
            return e->t;
        }
    }
    return -1;
}

size_t watch_count(const struct watch_timeline *tl, enum watch_kind kind, int vip, int node,
                   int64_t t0, int64_t t1)
{
    size_t n = 0;
    for (size_t i = 0; i < tl->n; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if (e->kind == kind && e->t >= t0 && e->t < t1 && (vip < 0 || e->vip == vip) &&
            (node == WATCH_ANY || e->node == node)) {
            n++;
        }
    }
    return n;
}

int64_t watch_max_gap(const struct watch_timeline *tl, enum watch_kind kind, int node)
{
    int64_t max = -1;
    bool have = tl->t_start != 0;
    int64_t prev = tl->t_start;
    bool have_seq = false;
    uint32_t seq = 0;
    for (size_t i = 0; i < tl->n; i++) {
        const struct watch_ev *e = &tl->ev[i];
        if (e->kind != kind) {
            continue;
        }
        if (kind == WATCH_PROBE) {
            if (have_seq && e->seq == seq) {
                continue; /* the same round, another VIP */
            }
            have_seq = true;
            seq = e->seq;
        } else if (e->node != node) {
            continue;
        }
        if (have && e->t - prev > max) {
            max = e->t - prev;
        }
        have = true;
        prev = e->t;
    }
    if (have && tl->t_end != 0 && tl->t_end - prev > max) {
        max = tl->t_end - prev;
    }
    return max < 0 ? INT64_MAX : max;
}

int64_t watch_mark_time(const struct watch_timeline *tl, const char *label)
{
    for (size_t i = 0; i < tl->nmarks; i++) {
        if (strcmp(tl->marks[i].label, label) == 0) {
            return tl->marks[i].t;
        }
    }
    return -1;
}

size_t watch_errors(const struct watch_timeline *tl)
{
    return watch_count(tl, WATCH_ERROR, -1, WATCH_ANY, INT64_MIN, INT64_MAX);
}

/* ---- printing ---- */

struct printer {
    const struct watch_timeline *tl;
    FILE *out;
    int64_t t0;
    int lines, max;
};

static bool line(struct printer *p, int64_t t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool line(struct printer *p, int64_t t, const char *fmt, ...)
{
    if (p->lines >= p->max) {
        return false;
    }
    if (++p->lines == p->max) {
        fprintf(p->out, "  ... (more lines not shown)\n");
        return false;
    }
    fprintf(p->out, "%10.3f ms  ", (double)(t - p->t0) / 1e6);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    return true;
}

static void held_text(const struct watch_timeline *tl, const struct watch_ev *e, char *buf,
                      size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int v = 0; v < tl->nvips && off < len; v++) {
        if (e->held & (1u << v)) {
            int n = snprintf(buf + off, len - off, "%s%s%s", off ? ", " : "", tl->vip[v].text,
                             e->tentative & (1u << v) ? " (tentative)" : "");
            off += n > 0 ? (size_t)n : 0;
        }
    }
    if (off == 0) {
        snprintf(buf, len, "-");
    }
}

static const char *who(int node, char *buf, size_t len)
{
    if (node == WATCH_UNKNOWN) {
        snprintf(buf, len, "unknown MAC");
    } else if (node == LAB_CLIENT) {
        snprintf(buf, len, "client");
    } else {
        snprintf(buf, len, "n%d", node);
    }
    return buf;
}

void watch_print(const struct watch_timeline *tl, FILE *out, int max_lines)
{
    struct printer p = {.tl = tl, .out = out, .max = max_lines};
    p.t0 = tl->t_start ? tl->t_start : tl->n > 0 ? tl->ev[0].t : 0;
    bool seen[WATCH_MAX_NODES + 1] = {false}, ana_seen[WATCH_MAX_NODES + 1] = {false};
    uint32_t held[WATCH_MAX_NODES + 1] = {0}, tent[WATCH_MAX_NODES + 1] = {0};
    uint8_t flags[WATCH_MAX_NODES + 1] = {0}, ana[WATCH_MAX_NODES + 1] = {0};
    /* per VIP and answering node (index node + 1: WATCH_UNKNOWN is 0) */
    int64_t last_t[WATCH_MAX_VIPS][WATCH_MAX_NODES + 2];
    memset(last_t, 0, sizeof last_t);
    size_t m = 0;
    char a[256], b[24];
    for (size_t i = 0; i <= tl->n; i++) {
        const struct watch_ev *e = i < tl->n ? &tl->ev[i] : NULL;
        for (; m < tl->nmarks && (e == NULL || tl->marks[m].t <= e->t); m++) {
            line(&p, tl->marks[m].t, "mark \"%s\"", tl->marks[m].label);
        }
        if (e == NULL) {
            break;
        }
        int n = e->node;
        switch (e->kind) {
            case WATCH_START:
                line(&p, e->t, "watcher started (%d nodes, %d VIPs, every %.1f ms, %s scheduling)",
                     tl->nodes, tl->nvips, (double)tl->interval_ns / 1e6,
                     e->flags & WATCH_F_REALTIME ? "real-time" : "normal");
                break;
            case WATCH_END:
                line(&p, e->t, "watcher stopped");
                break;
            case WATCH_SAMPLE:
                if (!is_node(tl, n) || (seen[n] && held[n] == e->held && tent[n] == e->tentative &&
                                        flags[n] == e->flags)) {
                    break;
                }
                seen[n] = true;
                held[n] = e->held, tent[n] = e->tentative, flags[n] = e->flags;
                held_text(tl, e, a, sizeof a);
                line(&p, e->t, "n%d holds %s, link %s", n, a,
                     e->flags & WATCH_F_UP ? "up" : "down");
                break;
            case WATCH_ANA:
                if (!is_node(tl, n) || (ana_seen[n] && ana[n] == e->flags)) {
                    break;
                }
                ana_seen[n] = true;
                ana[n] = e->flags;
                line(&p, e->t, "n%d ANA %s (%u groups optimized)", n,
                     e->flags & WATCH_F_OPTIMIZED ? "optimized" : "not optimized", e->held);
                break;
            case WATCH_REPLY:
                if (e->vip >= WATCH_MAX_VIPS || n < WATCH_UNKNOWN || n > WATCH_MAX_NODES) {
                    break;
                }
                /* a node that starts answering, or answers again after a
                 * silence of a few rounds */
                if (last_t[e->vip][n + 1] == 0 ||
                    e->t - last_t[e->vip][n + 1] > 4 * tl->interval_ns) {
                    line(&p, e->t, "%s answered by %s (%02x:%02x:%02x:%02x:%02x:%02x), round %u",
                         tl->vip[e->vip].text, who(n, b, sizeof b), e->mac[0], e->mac[1], e->mac[2],
                         e->mac[3], e->mac[4], e->mac[5], e->seq);
                }
                last_t[e->vip][n + 1] = e->t;
                break;
            case WATCH_ANNOUNCE:
                if (e->vip < WATCH_MAX_VIPS) {
                    line(&p, e->t, "%s announced by %s", tl->vip[e->vip].text, who(n, b, sizeof b));
                }
                break;
            case WATCH_ERROR:
                line(&p, e->t, "watcher error in %s: %s", who(n, b, sizeof b),
                     strerror((int)e->seq));
                break;
            default:
                break;
        }
    }
    for (int n = 1; n <= tl->nodes && n <= WATCH_MAX_NODES; n++) {
        int64_t g = watch_max_gap(tl, WATCH_SAMPLE, n);
        fprintf(out, "  n%d: largest sampling gap %.3f ms\n", n,
                g == INT64_MAX ? -1.0 : (double)g / 1e6);
    }
    int64_t g = watch_max_gap(tl, WATCH_PROBE, 0);
    fprintf(out, "  probes: largest gap between rounds %.3f ms\n",
            g == INT64_MAX ? -1.0 : (double)g / 1e6);
}
