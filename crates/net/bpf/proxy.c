// Flotilla's L7 redirect: one tc program on the pod's own eth0 (tc ingress, inside the pod's
// network namespace) that hands new TCP connections to the pod's ports with HTTP rules to the
// node's proxy instead of the pod's server.
//
// REDIRECT is keyed by (pod address, port); its value is the port of the proxy's listening
// socket in the pod's namespace and the one source (the node, whose proxy connects on to the
// server, and whose probes pass as everywhere else) that goes straight to the server. A packet
// to a key that belongs to no connection yet (a SYN, or an ACK bearing a SYN cookie) is
// assigned to that listener with bpf_sk_assign, so the connection the proxy accepts keeps its
// addresses: the client's, and the pod's address and port it asked for. A packet of a
// connection already made (its socket found by its addresses) goes on to that socket as any
// other. Where the listener is gone the packet is dropped: a port with HTTP rules is never
// served without them.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct redirect_key {
	__u32 addr; // network order
	__u16 port; // host order
	__u16 pad;
};

struct redirect_value {
	__u16 proxy_port; // host order
	__u16 pad;
	__u32 exempt; // network order
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct redirect_key);
	__type(value, struct redirect_value);
} REDIRECT SEC(".maps");

SEC("classifier")
int to_proxy(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->protocol != IPPROTO_TCP || (ip->frag_off & bpf_htons(0x1fff)))
		return TC_ACT_OK;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return TC_ACT_OK;
	struct redirect_key key = { .addr = ip->daddr, .port = bpf_ntohs(tcp->dest) };
	struct redirect_value *to = bpf_map_lookup_elem(&REDIRECT, &key);
	if (!to || ip->saddr == to->exempt)
		return TC_ACT_OK;
	struct bpf_sock_tuple tuple = {};
	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	tuple.ipv4.sport = tcp->source;
	tuple.ipv4.dport = tcp->dest;
	if (!tcp->syn) {
		// A connection already made (or being made, or closing) has a socket of its own
		// under its addresses: the proxy's, or one that predates the redirect.
		struct bpf_sock *made = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (made) {
			int listening = made->state == BPF_TCP_LISTEN;
			bpf_sk_release(made);
			if (!listening)
				return TC_ACT_OK;
		}
	}
	tuple.ipv4.dport = bpf_htons(to->proxy_port);
	struct bpf_sock *sk = bpf_sk_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return TC_ACT_SHOT;
	long assigned = -1;
	if (sk->state == BPF_TCP_LISTEN)
		assigned = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return assigned == 0 ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
