// SPDX-License-Identifier: MIT
/*
 * fuzz_client_frames.c - libFuzzer target for what a destination parses from a page server
 * (lib/net/client.c, urgent.c, stream.c, wire.c): frame headers, PAGES with their descriptors and
 * LZ4 payloads (replies and bulk), END and ERROR, driven through the receiver's own recv_frame
 * over the input as if it had arrived on the socket. client.c is compiled into this target so
 * that its static recv_frame is reached exactly as the receiver thread reaches it.
 *
 * Input: byte 0 flags (1: LZ4 granted, 2: the connection carries replies, 4: a request waits,
 * 8: the connection carries the stream); bytes 1..12 the waiting request (gpa u64, npages u32);
 * the rest is the byte stream from the server.
 */
#include "../lib/net/client.c"

#include <sys/socket.h>

static struct netsrc *ns;
static struct ns_conn *c;
static uint8_t *dst;

static void setup(void)
{
	int sv[2];

	ns = calloc(1, sizeof(*ns));
	c = calloc(1, sizeof(*c));
	dst = malloc((size_t)PN_MAX_PAGES * PN_PAGE);
	if (!ns || !c || !dst || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		abort();
	close(sv[1]); /* past the input, the "socket" is at EOF */
	pthread_mutex_init(&ns->lock, NULL);
	snprintf(ns->addr, sizeof(ns->addr), "fuzz");
	ns->nregions = 2;
	ns->regions[0] = (struct pn_region){ .gpa = 0, .size = 1u << 20 };
	ns->regions[1] = (struct pn_region){ .gpa = 4u << 20, .size = 2u << 20 };
	c->ns = ns;
	c->fd = sv[0];
	pi_conn_plain(&c->tc, sv[0]); /* the transport the receiver reads through */
	c->rbuf = malloc(NS_RBUF);
	c->body = malloc(PN_MAX_BODY);
	c->stage = malloc((size_t)PN_MAX_PAGES * PN_PAGE);
	c->huge = malloc(NS_HUGE);
	if (!c->rbuf || !c->body || !c->stage || !c->huge)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[400];
	unsigned i;
	int ret;

	if (!ns)
		setup();
	if (size < 13 || size - 13 > NS_RBUF)
		return 0;
	c->features = data[0] & 1 ? PN_FEAT_LZ4 : 0;
	c->replies = data[0] & 2;
	c->stream = data[0] & 8;
	c->ended = false;
	c->huge_gpa = UINT64_MAX;
	ns->main = c->replies ? c : NULL;
	atomic_store(&ns->streaming, false);
	atomic_store(&ns->streams, 1);
	atomic_store(&ns->ends, 0);
	if (data[0] & 4) {
		struct ns_slot *sl = &ns->slots[0];

		memcpy(&sl->gpa, data + 1, 8);
		memcpy(&sl->npages, data + 9, 4);
		sl->npages = sl->npages % PN_MAX_PAGES + 1;
		sl->gpa &= ~(uint64_t)(PN_PAGE - 1);
		sl->page_size = PN_PAGE;
		sl->dst = dst;
		sl->id = 1ull << NS_SLOT_BITS | 1;
		atomic_store(&sl->state, data[0] & 16 ? SLOT_ABANDONED : SLOT_WAITING);
	}
	memcpy(c->rbuf, data + 13, size - 13);
	c->rpos = 0;
	c->rlen = size - 13;
	for (i = 0; i < 4096; i++) {
		why[0] = '\0';
		ret = recv_frame(c, why, sizeof(why));
		if (ret)
			break;
	}
	/* a refusal always says why (EOF and a truncated frame are said by the caller) */
	if (ret < 0 && ret != -EPIPE && !why[0])
		abort();
	for (i = 0; i < NS_SLOTS; i++)
		atomic_store(&ns->slots[i].state, SLOT_FREE);
	return 0;
}
