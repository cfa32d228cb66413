/* failover: the active-controller decision (see fo.h). No I/O, no clock:
 * the time comes in fo_input.now_ms. */
#include "fo.h"

struct fo_decision fo_decide(struct fo_state *st, const struct fo_input *in)
{
    struct fo_decision d = {.role = FO_STANDBY, .actions = 0};
    if (in->witness) {
        d.role = FO_WITNESS;
        if (in->ready_leader && in->data_voters > 0) {
            d.actions |= FO_ACT_HANDOFF;
        }
        return d;
    }
    if (in->data_voters < 2) {
        d.role = FO_SINGLE;
        return d;
    }
    if (!in->ready_leader || in->passive_requested) {
        st->planned = false; /* released at once */
        st->fenced = false;
        return d;
    }
    if (in->active != in->self) {
        if (!in->activate_in_flight) {
            st->prev_active = in->active;
            d.actions |= FO_ACT_ACTIVATE;
        }
        return d;
    }
    bool takeover = st->prev_active != 0 && st->prev_active != in->self;
    if (!st->planned) {
        st->acquire_at_ms = in->now_ms + (takeover ? in->takeover_delay_ms : 0);
        st->planned = true;
        st->fenced = false;
    }
    if (in->now_ms < st->acquire_at_ms) {
        return d; /* the deposed node may still think it leads */
    }
    if (takeover && in->fence_configured && !st->fenced) {
        d.actions |= FO_ACT_FENCE;
        return d;
    }
    d.role = FO_ACTIVE;
    return d;
}

void fo_fenced(struct fo_state *st)
{
    st->fenced = true;
}

const char *fo_status_name(enum fo_role role)
{
    return role == FO_ACTIVE ? "MASTER" : role == FO_SINGLE ? "SINGLE" : "BACKUP";
}

const char *fo_role_name(enum fo_role role)
{
    static const char *const names[] = {"SINGLE", "ACTIVE", "STANDBY", "WITNESS"};
    return (unsigned)role < 4 ? names[role] : "?";
}
