// Flotilla's policy datapath: two tc programs on the host end of every pod's veth.
//
//   from_pod  (tc ingress of the host veth: packets the pod sends)     egress policy
//   to_pod    (tc egress of the host veth: packets delivered to the pod) ingress policy
//
// Each packet's peer is resolved to a numeric identity through IPCACHE (longest prefix match;
// an address no entry covers is WORLD). A packet of a flow already seen passes; the first
// packet of a flow is checked against POLICY, keyed by (the pod's identity, the peer's
// identity, port, protocol, direction), with 0 as a wildcard for the peer and the port, and
// recorded in CONNTRACK when allowed, so the rest of the flow and its replies pass. A pod
// whose identity has no ENFORCED entry for a direction is not restricted in it (Kubernetes:
// default allow until a policy selects the pod).
//
// Every flow the programs judge (a packet that made a conntrack entry, or one they dropped) is
// reported on the FLOWS ring buffer, unless SETTINGS turns the flow log off; a full buffer
// loses the report, never the packet, and counts it.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IDENTITY_WORLD 2
#define DIRECTION_INGRESS 0
#define DIRECTION_EGRESS 1
#define VERDICT_FORWARDED 0
#define VERDICT_DROPPED 1
#define REASON_NONE 0
#define REASON_POLICY_DENIED 1
#define COUNTER_PASSED 0
#define COUNTER_DROPPED 1
#define COUNTER_FLOWS_LOST 2
#define SETTING_FLOW_LOG 0

struct ipcache_key {
	__u32 prefixlen;
	__u32 addr; // network order
};

struct policy_key {
	__u32 local_identity;
	__u32 peer_identity; // 0: any
	__u16 port;          // host order; 0: any
	__u8 protocol;       // IPPROTO_*
	__u8 direction;
};

struct ct_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 pad[3];
};

struct ct_value {
	__u64 last_seen_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct ipcache_key);
	__type(value, __u32);
} IPCACHE SEC(".maps");

// Allocated as entries are added: a node with few rules holds little kernel memory.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, struct policy_key);
	__type(value, __u8);
} POLICY SEC(".maps");

// Key: identity << 1 | direction.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} ENFORCED SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
} CONNTRACK SEC(".maps");

// Packets passed, packets dropped by policy, flow reports lost to a full ring buffer.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} COUNTERS SEC(".maps");

// SETTING_FLOW_LOG: nonzero while flows are reported.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} SETTINGS SEC(".maps");

// One report per judged flow; laid out as `FlowRecord` in datapath.rs (32 bytes, no padding).
struct flow_event {
	__u64 time_ns; // CLOCK_MONOTONIC
	__u32 saddr;   // network order
	__u32 daddr;
	__u16 sport; // host order
	__u16 dport;
	__u32 local_identity;
	__u32 peer_identity;
	__u8 protocol;
	__u8 direction;
	__u8 verdict;
	__u8 reason;
};

// 1 MiB: 32,768 reports between two reads of the agent.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} FLOWS SEC(".maps");

struct tuple {
	__u32 saddr, daddr;
	__u16 sport, dport;
	__u8 protocol;
	int syn; // a TCP SYN without ACK: the first packet of a connection
};

static __always_inline int parse(struct __sk_buff *skb, struct tuple *t)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return 0;
	t->saddr = ip->saddr;
	t->daddr = ip->daddr;
	t->protocol = ip->protocol;
	t->sport = 0;
	t->dport = 0;
	t->syn = 0;
	// Later fragments carry no ports; they are judged as port 0.
	if (ip->frag_off & bpf_htons(0x1fff))
		return 1;
	void *l4 = (void *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return 1;
		t->sport = bpf_ntohs(tcp->source);
		t->dport = bpf_ntohs(tcp->dest);
		t->syn = tcp->syn && !tcp->ack;
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end)
			return 1;
		t->sport = bpf_ntohs(udp->source);
		t->dport = bpf_ntohs(udp->dest);
	}
	return 1;
}

static __always_inline __u32 identity_of(__u32 addr)
{
	struct ipcache_key key = {.prefixlen = 32, .addr = addr};
	__u32 *identity = bpf_map_lookup_elem(&IPCACHE, &key);
	return identity ? *identity : IDENTITY_WORLD;
}

static __always_inline void count(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&COUNTERS, &index);
	if (n)
		*n += 1;
}

static __always_inline void report(struct tuple *t, __u64 time_ns, __u32 local, __u32 peer, __u8 direction, __u8 verdict, __u8 reason)
{
	__u32 setting = SETTING_FLOW_LOG;
	__u32 *on = bpf_map_lookup_elem(&SETTINGS, &setting);
	if (!on || !*on)
		return;
	struct flow_event *e = bpf_ringbuf_reserve(&FLOWS, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_FLOWS_LOST);
		return;
	}
	e->time_ns = time_ns;
	e->saddr = t->saddr;
	e->daddr = t->daddr;
	e->sport = t->sport;
	e->dport = t->dport;
	e->local_identity = local;
	e->peer_identity = peer;
	e->protocol = t->protocol;
	e->direction = direction;
	e->verdict = verdict;
	e->reason = reason;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int allowed(__u32 local, __u32 peer, __u16 port, __u8 protocol, __u8 direction)
{
	__u64 enforced_key = ((__u64)local << 1) | direction;
	if (!bpf_map_lookup_elem(&ENFORCED, &enforced_key))
		return 1;
	struct policy_key key = {.local_identity = local, .peer_identity = peer, .port = port, .protocol = protocol, .direction = direction};
	if (bpf_map_lookup_elem(&POLICY, &key))
		return 1;
	key.port = 0;
	if (bpf_map_lookup_elem(&POLICY, &key))
		return 1;
	key.peer_identity = 0;
	key.port = port;
	if (bpf_map_lookup_elem(&POLICY, &key))
		return 1;
	key.port = 0;
	return bpf_map_lookup_elem(&POLICY, &key) != 0;
}

// Judges a packet whose pod end is `pod_addr` and far end `peer_addr`, travelling in
// `direction` as seen from the pod.
static __always_inline int judge(struct tuple *t, __u32 pod_addr, __u32 peer_addr, __u16 port, __u8 direction)
{
	struct ct_key forward = {.saddr = t->saddr, .daddr = t->daddr, .sport = t->sport, .dport = t->dport, .protocol = t->protocol};
	struct ct_key reverse = {.saddr = t->daddr, .daddr = t->saddr, .sport = t->dport, .dport = t->sport, .protocol = t->protocol};
	struct ct_value now = {.last_seen_ns = bpf_ktime_get_ns()};
	// A new TCP connection is always judged, even over a tuple seen before.
	if (!t->syn) {
		struct ct_value *seen = bpf_map_lookup_elem(&CONNTRACK, &forward);
		if (!seen)
			seen = bpf_map_lookup_elem(&CONNTRACK, &reverse);
		if (seen) {
			seen->last_seen_ns = now.last_seen_ns;
			count(COUNTER_PASSED);
			return TC_ACT_OK;
		}
	}
	__u32 local = identity_of(pod_addr), peer = identity_of(peer_addr);
	if (!allowed(local, peer, port, t->protocol, direction)) {
		count(COUNTER_DROPPED);
		report(t, now.last_seen_ns, local, peer, direction, VERDICT_DROPPED, REASON_POLICY_DENIED);
		return TC_ACT_SHOT;
	}
	bpf_map_update_elem(&CONNTRACK, &forward, &now, BPF_ANY);
	count(COUNTER_PASSED);
	report(t, now.last_seen_ns, local, peer, direction, VERDICT_FORWARDED, REASON_NONE);
	return TC_ACT_OK;
}

SEC("classifier")
int from_pod(struct __sk_buff *skb)
{
	struct tuple t;
	if (!parse(skb, &t))
		return TC_ACT_OK;
	return judge(&t, t.saddr, t.daddr, t.dport, DIRECTION_EGRESS);
}

SEC("classifier")
int to_pod(struct __sk_buff *skb)
{
	struct tuple t;
	if (!parse(skb, &t))
		return TC_ACT_OK;
	return judge(&t, t.daddr, t.saddr, t.dport, DIRECTION_INGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
