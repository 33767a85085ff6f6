// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * fixup's GRE fast path (issue 13): tc ingress on the outside and inside interfaces.
 *
 * For the GRE of a call the control plane tracks (RFC 2637 section 4.1: enhanced GRE, version 1,
 * the Key's low half is the receiver's Call ID), this program does what the nftables maps of
 * `gre: kernel` do -- inbound, destination := inside client and Call ID := the client's own;
 * outbound, source := PAT address -- then decrements the TTL, fixes the IPv4 header checksum
 * (RFC 1624, through bpf_l3_csum_replace) and sends the packet straight to its egress device
 * (bpf_fib_lookup + bpf_redirect / bpf_redirect_neigh), before conntrack, routing and every
 * forward chain: the eBPF half of `permit: true` (PIX `sysopt connection permit-pptp`).
 *
 * Everything else goes up the stack unchanged (TC_ACT_OK), where the nftables rules translate,
 * drop or count it: IP options, fragments, GRE that is not PPTP's, no call (or a call whose lease
 * expired), a TTL about to run out, a FIB answer other than "forward" (the stack sends the ICMP,
 * fragments or resolves the neighbour its own way), a packet bigger than the egress MTU.
 *
 * Maps (pinned by name, so a restarted daemon finds them and GRE flows meanwhile; the control
 * plane writes them, this program only reads them and counts):
 *   fixup_cfg      [0] -> PAT address
 *   fixup_gre_in   (server, translated Call ID) -> (client, original Call ID, lease end)
 *   fixup_gre_out  (client, server, server Call ID) -> (lease end)
 *   fixup_in_cnt / fixup_out_cnt  the same keys -> per-CPU packets and bytes
 *   fixup_stats    per-CPU counters of what was redirected and why packets went up the stack
 * Addresses and Call IDs are kept in network byte order, as they are in the packet.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif

#define MAX_CALLS 262144
#define GRE_PROTO_PPP 0x880B
#define GRE_FLAGS_MASK 0xEF7F  /* every flag bit but S (0x1000) and A (0x0080) */
#define GRE_FLAGS_PPTP 0x2001  /* K set, version 1 */
#define IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define IP_TTL_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, ttl))
#define IP_SRC_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))
#define GRE_CALL_ID_OFF (ETH_HLEN + sizeof(struct iphdr) + 6)

enum stat {
	STAT_REDIRECT_IN, STAT_REDIRECT_OUT, STAT_NO_CALL, STAT_EXPIRED, STAT_IP_OPTIONS, STAT_FRAGMENT,
	STAT_NOT_PPTP, STAT_SHORT, STAT_TTL, STAT_FIB, STAT_MTU, STAT_ERROR, STAT_MAX,
};

struct pptp_gre {
	__be16 flags;
	__be16 protocol;
	__be16 payload_length;
	__be16 call_id;
};

struct in_key {
	__be32 server;
	__be16 call_id;  /* translated */
	__u16 pad;
};

struct in_value {
	__be32 client;
	__be16 call_id;  /* the client's own */
	__u16 pad;
	__u64 lease_end;  /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
};

struct out_key {
	__be32 client;
	__be32 server;
	__be16 call_id;  /* the server's */
	__u16 pad;
};

struct out_value {
	__u64 lease_end;
};

struct counts {
	__u64 packets;
	__u64 bytes;
};

struct cfg {
	__be32 pat;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fixup_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CALLS);
	__type(key, struct in_key);
	__type(value, struct in_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fixup_gre_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CALLS);
	__type(key, struct out_key);
	__type(value, struct out_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fixup_gre_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_CALLS);
	__type(key, struct in_key);
	__type(value, struct counts);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fixup_in_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_CALLS);
	__type(key, struct out_key);
	__type(value, struct counts);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fixup_out_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fixup_stats SEC(".maps");

static __always_inline void tally(enum stat what)
{
	__u32 key = what;
	__u64 *n = bpf_map_lookup_elem(&fixup_stats, &key);

	if (n)
		*n += 1;
}

static __always_inline int up_the_stack(enum stat why)
{
	tally(why);
	return TC_ACT_OK;
}

static __always_inline void count(void *map, const void *key, __u64 bytes)
{
	struct counts *c = bpf_map_lookup_elem(map, key);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	} else {
		struct counts first = { .packets = 1, .bytes = bytes };

		bpf_map_update_elem(map, key, &first, BPF_NOEXIST);
	}
}

/* Route, then rewrite (the address, the TTL, the checksum) and redirect.  Nothing is written to
 * the packet before the FIB has said where it goes: a packet that goes up the stack is unchanged. */
static __always_inline int forward(struct __sk_buff *skb, struct iphdr *ip, __u32 addr_off, __be32 old_addr,
				   __be32 new_addr, __be32 route_src, __be32 route_dst, enum stat done)
{
	struct bpf_fib_lookup fib = {};
	__be16 old_ttl_word, new_ttl_word;
	__u16 tot_len = bpf_ntohs(ip->tot_len);
	int rc;

	if (ip->ttl <= 1)
		return up_the_stack(STAT_TTL);
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = IPPROTO_GRE;
	fib.tot_len = tot_len;
	fib.ipv4_src = route_src;
	fib.ipv4_dst = route_dst;
	fib.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return up_the_stack(STAT_MTU);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return up_the_stack(STAT_FIB);
	old_ttl_word = *(__be16 *)&ip->ttl;  /* TTL and protocol: one 16-bit word of the checksum */
	ip->ttl -= 1;
	new_ttl_word = *(__be16 *)&ip->ttl;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ttl_word, new_ttl_word, sizeof(__u16)) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, sizeof(__u32)) ||
	    bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0))
		return up_the_stack(STAT_ERROR);
	tally(done);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
		return TC_ACT_SHOT;  /* half rewritten: never let it go on */
	return bpf_redirect(fib.ifindex, 0);
}

SEC("tc")
int fixup_gre(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct pptp_gre *gre = (void *)(ip + 1);
	__u64 now, bytes;
	__u32 zero = 0;
	struct cfg *cfg;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_GRE)
		return TC_ACT_OK;  /* not GRE: leave at once, uncounted */
	if (ip->ihl != 5)
		return up_the_stack(STAT_IP_OPTIONS);
	if (ip->frag_off & bpf_htons(0x3FFF))
		return up_the_stack(STAT_FRAGMENT);
	if ((void *)(gre + 1) > data_end)
		return up_the_stack(STAT_SHORT);
	if ((gre->flags & bpf_htons(GRE_FLAGS_MASK)) != bpf_htons(GRE_FLAGS_PPTP) ||
	    gre->protocol != bpf_htons(GRE_PROTO_PPP))
		return up_the_stack(STAT_NOT_PPTP);
	cfg = bpf_map_lookup_elem(&fixup_cfg, &zero);
	if (!cfg || !cfg->pat)
		return up_the_stack(STAT_NO_CALL);
	now = bpf_ktime_get_ns();
	bytes = bpf_ntohs(ip->tot_len);
	if (ip->daddr == cfg->pat) {
		struct in_key key = { .server = ip->saddr, .call_id = gre->call_id };
		struct in_value *call = bpf_map_lookup_elem(&fixup_gre_in, &key);
		__be32 client;
		__be16 original;
		int verdict;

		if (!call)
			return up_the_stack(STAT_NO_CALL);
		if (call->lease_end < now)
			return up_the_stack(STAT_EXPIRED);
		client = call->client;
		original = call->call_id;
		verdict = forward(skb, ip, IP_DST_OFF, ip->daddr, client, ip->saddr, client, STAT_REDIRECT_IN);
		if (verdict == TC_ACT_OK)
			return verdict;  /* went up the stack unchanged */
		/* GRE carries no checksum in PPTP (the C bit is clear): the Call ID is written as is */
		if (verdict != TC_ACT_SHOT && bpf_skb_store_bytes(skb, GRE_CALL_ID_OFF, &original, sizeof(original), 0))
			return TC_ACT_SHOT;
		count(&fixup_in_cnt, &key, bytes);
		return verdict;
	} else {
		struct out_key key = { .client = ip->saddr, .server = ip->daddr, .call_id = gre->call_id };
		struct out_value *call = bpf_map_lookup_elem(&fixup_gre_out, &key);
		int verdict;

		if (!call)
			return up_the_stack(STAT_NO_CALL);
		if (call->lease_end < now)
			return up_the_stack(STAT_EXPIRED);
		verdict = forward(skb, ip, IP_SRC_OFF, ip->saddr, cfg->pat, cfg->pat, ip->daddr, STAT_REDIRECT_OUT);
		if (verdict != TC_ACT_OK)
			count(&fixup_out_cnt, &key, bytes);
		return verdict;
	}
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
