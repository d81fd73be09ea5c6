// Flotilla's service load balancer, at the socket: cgroup programs that turn a connect() or a
// UDP sendmsg() to a Service's virtual address (a cluster IP, or a node address and node port)
// into one to a backend, before a packet exists. No per-packet NAT and no conntrack entries
// are needed, and a connection keeps its backend for life: removing a backend from the maps
// stops new connections to it while the ones it has run on (graceful removal).
//
// A socket is served only when its network namespace is in NETNS: the host's and this node's
// pods'. (Several agents, each with its own maps, may share one machine's cgroup tree.)
//
// Maps, written by the agent:
//   SERVICES  (address, port, protocol, slot) -> slot 0: the service (backend count, affinity);
//             slot i > 0: the id of its i-th backend
//   BACKENDS  id -> (address, port)
//   AFFINITY  (client netns, service) -> (backend, last use), for ClientIP session affinity
//   REVNAT    (socket, backend address, port) -> the virtual address, so getpeername() and
//             recvmsg() report the address the program connected to

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define FLAG_AFFINITY 1

struct svc_key {
	__u32 addr; // network order
	__u16 port; // host order
	__u8 protocol;
	__u8 pad;
	__u16 slot;
	__u16 pad2;
};

struct svc_value {
	__u32 backend; // slot > 0
	__u16 count;   // slot 0
	__u8 flags;    // slot 0
	__u8 pad;
	__u32 affinity_seconds;
	__u32 id; // slot 0: the service's number, for AFFINITY
};

struct backend {
	__u32 addr; // network order
	__u16 port; // host order
	__u16 pad;
};

struct affinity_key {
	__u64 netns;
	__u32 service;
	__u32 pad;
};

struct affinity_value {
	__u64 last_ns;
	__u32 backend;
	__u32 pad;
};

struct revnat_key {
	__u64 socket;
	__u32 addr;
	__u16 port;
	__u16 pad;
};

struct revnat_value {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
} SERVICES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, __u32);
	__type(value, struct backend);
} BACKENDS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct affinity_key);
	__type(value, struct affinity_value);
} AFFINITY SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct revnat_key);
	__type(value, struct revnat_value);
} REVNAT SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} NETNS SEC(".maps");

// Index 0: connections (and datagrams) translated; 1: refused for want of a backend.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} LB_COUNTERS SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&LB_COUNTERS, &index);
	if (n)
		*n += 1;
}

static __always_inline struct backend *pick(struct svc_key *key, struct svc_value *svc, __u64 netns, __u32 *chosen)
{
	struct affinity_key akey = {.netns = netns, .service = svc->id};
	__u64 now = bpf_ktime_get_ns();
	if (svc->flags & FLAG_AFFINITY) {
		struct affinity_value *held = bpf_map_lookup_elem(&AFFINITY, &akey);
		if (held && now - held->last_ns < (__u64)svc->affinity_seconds * 1000000000ULL) {
			struct backend *b = bpf_map_lookup_elem(&BACKENDS, &held->backend);
			// A backend taken out of the service has lost its entry: choose again.
			if (b) {
				held->last_ns = now;
				*chosen = held->backend;
				return b;
			}
		}
	}
	key->slot = (bpf_get_prandom_u32() % svc->count) + 1;
	struct svc_value *slot = bpf_map_lookup_elem(&SERVICES, key);
	if (!slot)
		return 0;
	struct backend *b = bpf_map_lookup_elem(&BACKENDS, &slot->backend);
	if (b && (svc->flags & FLAG_AFFINITY)) {
		struct affinity_value value = {.last_ns = now, .backend = slot->backend};
		bpf_map_update_elem(&AFFINITY, &akey, &value, BPF_ANY);
	}
	*chosen = slot->backend;
	return b;
}

// 1: leave the call alone or translated; 0: refuse it (EPERM), a service without backends.
static __always_inline int translate(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != AF_INET)
		return 1;
	__u8 protocol = ctx->protocol;
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
		return 1;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	struct svc_key key = {.addr = ctx->user_ip4, .port = port, .protocol = protocol};
	struct svc_value *svc = bpf_map_lookup_elem(&SERVICES, &key);
	if (!svc)
		return 1;
	__u64 netns = bpf_get_netns_cookie(ctx);
	if (!bpf_map_lookup_elem(&NETNS, &netns))
		return 1;
	if (svc->count == 0) {
		count(1);
		return 0;
	}
	__u32 chosen = 0;
	struct backend *b = pick(&key, svc, netns, &chosen);
	if (!b) {
		count(1);
		return 0;
	}
	struct revnat_key rkey = {.socket = bpf_get_socket_cookie(ctx), .addr = b->addr, .port = b->port};
	struct revnat_value rvalue = {.addr = ctx->user_ip4, .port = port};
	bpf_map_update_elem(&REVNAT, &rkey, &rvalue, BPF_ANY);
	ctx->user_ip4 = b->addr;
	ctx->user_port = bpf_htons(b->port);
	count(0);
	return 1;
}

// The peer a socket reports is the virtual address it asked for.
static __always_inline int reverse(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != AF_INET)
		return 1;
	struct revnat_key rkey = {.socket = bpf_get_socket_cookie(ctx), .addr = ctx->user_ip4, .port = bpf_ntohs((__u16)ctx->user_port)};
	struct revnat_value *original = bpf_map_lookup_elem(&REVNAT, &rkey);
	if (original) {
		ctx->user_ip4 = original->addr;
		ctx->user_port = bpf_htons(original->port);
	}
	return 1;
}

SEC("cgroup/connect4")
int lb_connect4(struct bpf_sock_addr *ctx)
{
	return translate(ctx);
}

SEC("cgroup/sendmsg4")
int lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate(ctx);
}

SEC("cgroup/recvmsg4")
int lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx);
}

SEC("cgroup/getpeername4")
int lb_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
