/* The arguments of every method, as core.get_methods and `nvmetctl
 * methods` show them.
 *
 * Notation: the positional argument list in brackets; a map in braces
 * with "field: type"; "!" after a field name: required; "?" after an
 * argument: it may be left out; "a|b": either; "nqn": an NQN string.
 * A CRUD service's create/update map lists the fields the statemachine
 * accepts (tests/unit/test_method_args.c holds the two together: every
 * field listed here is accepted by the statemachine, and nothing else). */
#include <stddef.h>
#include <string.h>

#include "rpc.h"

#define QUERY "[filters?: list, options?: {select, order_by, offset, limit, count, get, extra}]"
#define INSTANCE "[id: int, options?: {select, extra}]"

static const struct {
    const char *method, *args;
} table[] = {
    {"auth.login_with_api_key", "[key: str]"},
    {"auth.me", "[]"},
    {"core.ping", "[]"},
    {"core.set_options", "[{client_id: str|null}]"},
    {"core.subscribe", "[collection: str (a collection name or \"*\")]"},
    {"core.unsubscribe", "[collection: str]"},
    {"core.get_methods", "[]"},
    {"nvmet.global.config", "[]"},
    {"nvmet.global.update",
     "[{basenqn: nqn, kernel: bool, ana: bool, rdma: bool, xport_referral: bool, "
     "enabled: bool}]"},
    {"nvmet.global.sessions", QUERY},
    {"nvmet.global.export_nvmetcli", "[]"},
    {"config.save", "[]"},
    {"config.restore", "[document: map (from config.save)]"},
    {"nvmet.subsys.query", QUERY},
    {"nvmet.subsys.get_instance", INSTANCE},
    {"nvmet.subsys.create",
     "[{name!: str, subnqn: nqn|null, serial: str|null, allow_any_host: bool, "
     "pi_enable: bool|null, qid_max: int|null, ieee_oui: str|null, ana: bool|null}]"},
    {"nvmet.subsys.update",
     "[id: int, {name: str, subnqn: nqn|null, serial: str|null, allow_any_host: bool, "
     "pi_enable: bool|null, qid_max: int|null, ieee_oui: str|null, ana: bool|null}]"},
    {"nvmet.subsys.delete", "[id: int, options?: {force: bool}]"},
    {"nvmet.namespace.query", QUERY},
    {"nvmet.namespace.get_instance", INSTANCE},
    {"nvmet.namespace.create",
     "[{subsys_id!: int (or subsys), device_type!: ZVOL|FILE|BLOCK, device_path!: str "
     "(or device: str), nsid: int|null, filesize: int|null, enabled: bool, "
     "device_uuid: str|null, device_nguid: str|null}]"},
    {"nvmet.namespace.update",
     "[id: int, {subsys_id: int (or subsys), device_type: ZVOL|FILE|BLOCK, device_path: str "
     "(or device: str), nsid: int|null, filesize: int|null, enabled: bool, "
     "device_uuid: str|null, device_nguid: str|null}]"},
    {"nvmet.namespace.delete", "[id: int, options?: {remove: bool}]"},
    {"nvmet.port.query", QUERY},
    {"nvmet.port.get_instance", INSTANCE},
    {"nvmet.port.create",
     "[{addr_trtype!: TCP|RDMA|FC|LOOP, addr_traddr!: str, addr_trsvcid: int|str, "
     "addr_adrfam: IPV4|IPV6|FC|LOOP, inline_data_size: int|null, max_queue_size: int|null, "
     "pi_enable: bool|null, enabled: bool}]"},
    {"nvmet.port.update",
     "[id: int, {addr_trtype: TCP|RDMA|FC|LOOP, addr_traddr: str, addr_trsvcid: int|str, "
     "addr_adrfam: IPV4|IPV6|FC|LOOP, inline_data_size: int|null, max_queue_size: int|null, "
     "pi_enable: bool|null, enabled: bool}]"},
    {"nvmet.port.delete", "[id: int, options?: {force: bool}]"},
    {"nvmet.port.transport_address_choices", "[addr_trtype?: TCP|RDMA|FC|LOOP, force_ana?: bool]"},
    {"nvmet.host.query", QUERY},
    {"nvmet.host.get_instance", INSTANCE},
    {"nvmet.host.create",
     "[{hostnqn!: nqn, description: str, dhchap_key: str|null, dhchap_ctrl_key: str|null, "
     "dhchap_dhgroup: 2048-BIT|3072-BIT|4096-BIT|6144-BIT|8192-BIT|null, "
     "dhchap_hash: SHA-256|SHA-384|SHA-512}]"},
    {"nvmet.host.update",
     "[id: int, {hostnqn: nqn, description: str, dhchap_key: str|null, "
     "dhchap_ctrl_key: str|null, dhchap_dhgroup: 2048-BIT|3072-BIT|4096-BIT|6144-BIT|8192-BIT|null, "
     "dhchap_hash: SHA-256|SHA-384|SHA-512}]"},
    {"nvmet.host.delete", "[id: int, options?: {force: bool}]"},
    {"nvmet.host.generate_key", "[dhchap_hash?: SHA-256|SHA-384|SHA-512, nqn?: nqn]"},
    {"nvmet.host.dhchap_dhgroup_choices", "[]"},
    {"nvmet.host.dhchap_hash_choices", "[]"},
    {"nvmet.host_subsys.query", QUERY},
    {"nvmet.host_subsys.get_instance", INSTANCE},
    {"nvmet.host_subsys.create", "[{host_id!: int (or host), subsys_id!: int (or subsys)}]"},
    {"nvmet.host_subsys.update", "[id: int, {host_id: int (or host), subsys_id: int (or subsys)}]"},
    {"nvmet.host_subsys.delete", "[id: int]"},
    {"nvmet.port_subsys.query", QUERY},
    {"nvmet.port_subsys.get_instance", INSTANCE},
    {"nvmet.port_subsys.create", "[{port_id!: int (or port), subsys_id!: int (or subsys)}]"},
    {"nvmet.port_subsys.update", "[id: int, {port_id: int (or port), subsys_id: int (or subsys)}]"},
    {"nvmet.port_subsys.delete", "[id: int]"},
    {"cluster.status", "[options?: {local: bool}]"},
    {"cluster.forward", "(internal: a follower forwarding a call to the leader)"},
    {"cluster.node.register", "(internal: a node registering itself at start)"},
    {"cluster.node.add",
     "[{id!: int, raft!: str (host:port), rpc: str (host:port), kind: data|witness, "
     "voter: bool}]"},
    {"cluster.node.promote", "[id: int]"},
    {"cluster.node.remove", "[id: int]"},
    {"failover.status", "[]"},
    {"failover.status_details", "[]"},
    {"failover.disabled_reasons", "[]"},
    {"failover.disabled.reasons", "[]"},
    {"failover.node", "[]"},
    {"failover.config", "[]"},
    {"failover.update",
     "[{takeover_delay_ms: int, fence_command: str|null, announce_count: int, "
     "announce_interval_ms: int, vips: [{address!: str, prefix!: int, interface!: str, "
     "node_addresses: {node id: address}}]}]"},
    {"failover.become_passive", "[node?: int | {node: int}]"},
};

const char *rpc_method_args(const char *method)
{
    for (size_t i = 0; method != NULL && i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(table[i].method, method) == 0) {
            return table[i].args;
        }
    }
    return NULL;
}
