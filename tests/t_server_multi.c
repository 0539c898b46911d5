// SPDX-License-Identifier: MIT
/*
 * t_server_multi.c - three destinations served at once by one page server (a region in memory,
 * one in a snapshot file), raw clients with an urgent and a bulk connection each: two receive
 * every page exactly once (stream plus replies, bytes checked, LZ4 decoded) then END, while the
 * third leaves mid-stream. A REQ under a saturating stream is answered, and the stream jumps as
 * docs/protocol.md says: past the request, then clear of it (to the middle of the unsent run
 * ahead).
 */
#include <arpa/inet.h>
#include <lz4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "net/wire.h"

#define SEED 0x3017
#define A_GPA 0ull
#define A_SIZE (32ull << 20)
#define B_GPA (4ull << 30)
#define B_SIZE (8ull << 20)
#define PAGES ((A_SIZE + B_SIZE) / PN_PAGE)
#define BATCH 64u
#define RCVBUF (256 << 10)      /* bulk socket receive buffer: keeps the stream close to us */
#define WAIT_MS 10000
#define MAX_FRAMES (PAGES + 64)
/* requests far ahead of anything the stream can have sent (the socket buffers hold < 16 MiB) */
#define REQ2_PAGE 4096u         /* on the bulk connection, right after the handshake */
#define REQ2_N 8u
#define REQ1_PAGE 7168u         /* on the urgent connection, while the stream runs */
#define REQ1_N 4u
#define QUIT_FRAMES 20u         /* the quitter leaves after this many bulk frames */
#define REQ1_AT 16u             /* REQ1 goes out after this many bulk frames */
#define REQ1_LEAD 16u           /* bulk frames read at most before REQ1's reply: so however the
				 * threads are scheduled, the stream cannot reach REQ1's pages
				 * (REQ2_PAGE + (REQ1_AT + REQ1_LEAD) x BATCH + socket buffers) */

static uint8_t *mem_a, *mem_b;
static struct pagein_server *srv;
static int port;
static uint64_t wmem_max = 4 << 20;

struct client {
	const char *name;
	bool quitter;             /* disconnects mid-stream */
	int ufd, bfd;
	uint64_t session;
	_Atomic uint8_t seen[PAGES];      /* times each page arrived (bulk + replies) */
	uint64_t *frame_page;             /* first page of bulk frame i */
	uint64_t *frame_bytes;            /* bulk bytes received before frame i */
	_Atomic uint64_t frames;          /* bulk frames so far */
	_Atomic bool reply2;              /* the reply to REQ2 came (on the bulk connection) */
	uint64_t after_reply2;            /* first page of the first bulk frame after it */
	bool end;                         /* END came */
	double req1_us;                   /* REQ1 round trip while the stream runs */
	uint64_t frames_at_req1;          /* bulk frames received when REQ1 went out */
	uint64_t req1_t0;                 /* when it went out */
	_Atomic bool req1_sent, reply1;   /* REQ1 sent (by the bulk reader), its reply read */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Global page index of gpa, or UINT64_MAX. */
static uint64_t page_of(uint64_t gpa)
{
	if (gpa - A_GPA < A_SIZE) /* A_GPA is 0 */
		return (gpa - A_GPA) / PN_PAGE;
	if (gpa >= B_GPA && gpa - B_GPA < B_SIZE)
		return A_SIZE / PN_PAGE + (gpa - B_GPA) / PN_PAGE;
	return UINT64_MAX;
}

static uint64_t gpa_of(uint64_t p)
{
	return p < A_SIZE / PN_PAGE ? A_GPA + p * PN_PAGE : B_GPA + (p - A_SIZE / PN_PAGE) * PN_PAGE;
}

static const uint8_t *bytes_of(uint64_t p)
{
	return p < A_SIZE / PN_PAGE ? mem_a + p * PN_PAGE : mem_b + (p - A_SIZE / PN_PAGE) * PN_PAGE;
}

static void cl_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t w;

	while (len) {
		w = send(fd, p, len, MSG_NOSIGNAL);
		T_ASSERT(w > 0);
		p += w;
		len -= (size_t)w;
	}
}

static void cl_frame(int fd, uint16_t type, uint64_t id, const void *body, uint32_t len)
{
	struct pn_hdr h = { .len = len, .type = type, .id = id };
	uint8_t buf[sizeof(h) + 64];

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), body, len);
	cl_send(fd, buf, sizeof(h) + len);
}

/* Read exactly len bytes within WAIT_MS; 1 done, 0 EOF. Fails on a time-out. */
static int cl_read(int fd, void *buf, size_t len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;
	ssize_t r;

	while (got < len) {
		if (poll(&pfd, 1, WAIT_MS) <= 0) {
			fprintf(stderr, "FAIL: nothing from the server for %d ms\n", WAIT_MS);
			exit(1);
		}
		r = recv(fd, (uint8_t *)buf + got, len - got, 0);
		if (r <= 0)
			return 0;
		got += (size_t)r;
	}
	return 1;
}

static void send_hello(int fd, uint32_t role, uint64_t session)
{
	struct pn_hello h = { .magic = PN_MAGIC, .version = PN_VERSION, .page_size = PN_PAGE,
			      .role = role, .features = PN_FEAT_LZ4, .session = session,
			      .batch_pages = role == PN_ROLE_BULK ? BATCH : 0 };

	cl_frame(fd, PN_HELLO, 0, &h, sizeof(h));
}

static uint64_t read_welcome(int fd)
{
	struct {
		struct pn_welcome w;
		struct pn_region r[2];
	} __attribute__((packed)) m;
	struct pn_hdr h;

	T_ASSERT(cl_read(fd, &h, sizeof(h)) == 1);
	T_EQ(h.type, PN_WELCOME);
	T_EQ(h.len, sizeof(m));
	T_ASSERT(cl_read(fd, &m, sizeof(m)) == 1);
	T_ASSERT(!memcmp(m.w.magic, PN_MAGIC, 8));
	T_EQ(m.w.nregions, 2);
	T_EQ(m.w.features, PN_FEAT_LZ4);
	T_EQ(m.r[0].gpa, A_GPA);
	T_EQ(m.r[0].size, A_SIZE);
	T_EQ(m.r[0].digest, pagein_digest(mem_a, A_SIZE));
	T_EQ(m.r[1].gpa, B_GPA);
	T_EQ(m.r[1].size, B_SIZE);
	T_EQ(m.r[1].digest, pagein_digest(mem_b, B_SIZE));
	return m.w.session;
}

/* Read one frame into body (PN_MAX_BODY bytes); 0 on EOF. */
static int read_frame(int fd, struct pn_hdr *h, uint8_t *body)
{
	if (!cl_read(fd, h, sizeof(*h)))
		return 0;
	T_ASSERT(h->len <= PN_MAX_BODY);
	T_ASSERT(h->flags == 0);
	return cl_read(fd, body, h->len);
}

/* Check a PAGES body against the image and count its pages; returns its first page. */
static uint64_t check_pages(struct client *c, const struct pn_hdr *h, const uint8_t *body,
			    bool reply)
{
	const struct pn_pages *pg = (const void *)body;
	const uint32_t *desc = (const void *)(pg + 1);
	const uint8_t *pay, *end = body + h->len;
	uint8_t tmp[PN_PAGE];
	uint64_t p0, i;

	T_ASSERT(h->len >= sizeof(*pg));
	T_ASSERT(pg->npages >= 1 && pg->npages <= (reply ? PN_MAX_PAGES : BATCH));
	T_ASSERT(pg->gpa % PN_PAGE == 0 && pg->reserved == 0);
	p0 = page_of(pg->gpa);
	T_ASSERT(p0 != UINT64_MAX && page_of(pg->gpa + (pg->npages - 1ull) * PN_PAGE) ==
		 p0 + pg->npages - 1);
	if (!reply) /* inside one batch-aligned window */
		T_ASSERT(pg->gpa / PN_PAGE % BATCH + pg->npages <= BATCH);
	T_ASSERT(h->len >= sizeof(*pg) + 4ull * pg->npages);
	pay = (const uint8_t *)(desc + pg->npages);
	for (i = 0; i < pg->npages; i++) {
		const uint8_t *want = bytes_of(p0 + i);
		uint32_t cs;

		switch (PN_PG_KIND(desc[i])) {
		case PN_PG_ZERO:
			T_ASSERT(desc[i] == PN_PG_ZERO);
			for (unsigned b = 0; b < PN_PAGE; b++)
				T_ASSERT(want[b] == 0);
			break;
		case PN_PG_RAW:
			T_ASSERT(desc[i] == PN_PG_RAW);
			T_ASSERT(pay + PN_PAGE <= end);
			T_ASSERT(!memcmp(pay, want, PN_PAGE));
			pay += PN_PAGE;
			break;
		case PN_PG_LZ4:
			T_ASSERT(!reply); /* replies are never compressed */
			cs = PN_PG_CSIZE(desc[i]);
			T_ASSERT(cs >= 1 && cs < PN_PAGE * 3 / 4 && pay + cs <= end);
			T_EQ(LZ4_decompress_safe((const char *)pay, (char *)tmp, (int)cs, PN_PAGE),
			     PN_PAGE);
			T_ASSERT(!memcmp(tmp, want, PN_PAGE));
			pay += cs;
			break;
		default:
			T_ASSERT(!"unknown page kind");
		}
		atomic_fetch_add(&c->seen[p0 + i], 1);
	}
	T_ASSERT(pay == end);
	return p0;
}

/* The bulk connection's reader: every frame until END (or QUIT_FRAMES for the quitter). */
static void *bulk_main(void *arg)
{
	struct client *c = arg;
	uint8_t *body = malloc(PN_MAX_BODY);
	uint64_t bytes = 0, n;
	bool want_after2 = false;
	struct pn_hdr h;

	T_ASSERT(body);
	for (;;) {
		T_ASSERT(read_frame(c->bfd, &h, body) == 1);
		bytes += sizeof(h) + h.len;
		if (h.type == PN_END) {
			T_EQ(h.len, 0);
			c->end = true;
			break;
		}
		T_EQ(h.type, PN_PAGES);
		if (h.id) {
			T_EQ(h.id, 2);
			T_ASSERT(check_pages(c, &h, body, true) == REQ2_PAGE);
			want_after2 = true;
			atomic_store(&c->reply2, true);
			continue;
		}
		n = atomic_load(&c->frames);
		T_ASSERT(n < MAX_FRAMES);
		c->frame_bytes[n] = bytes;
		c->frame_page[n] = check_pages(c, &h, body, false);
		if (want_after2) {
			c->after_reply2 = c->frame_page[n];
			want_after2 = false;
		}
		atomic_store(&c->frames, n + 1);
		if (c->quitter && n + 1 == QUIT_FRAMES)
			break;
		if (!c->quitter && n + 1 == REQ1_AT) {
			/* REQ1 on the urgent connection while this stream runs flat out; the client
			 * thread reads the reply */
			struct pn_req q = { .gpa = gpa_of(REQ1_PAGE), .npages = REQ1_N };

			c->frames_at_req1 = n + 1;
			c->req1_t0 = now_ns();
			cl_frame(c->ufd, PN_REQ, 1, &q, sizeof(q));
			atomic_store(&c->req1_sent, true);
		}
		for (unsigned k = 0; !c->quitter && n + 1 >= REQ1_AT + REQ1_LEAD &&
		     !atomic_load(&c->reply1) && k < WAIT_MS * 10; k++)
			usleep(100);
	}
	free(body);
	return NULL;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	uint8_t *body = malloc(PN_MAX_BODY);
	struct pn_req q;
	struct pn_hdr h;
	pthread_t bt;
	uint64_t i;

	T_ASSERT(body);
	c->frame_page = calloc(MAX_FRAMES, sizeof(uint64_t));
	c->frame_bytes = calloc(MAX_FRAMES, sizeof(uint64_t));
	T_ASSERT(c->frame_page && c->frame_bytes);
	c->ufd = t_connect_loopback(port, 0);
	send_hello(c->ufd, PN_ROLE_URGENT, 0);
	c->session = read_welcome(c->ufd);
	c->bfd = t_connect_loopback(port, RCVBUF);
	send_hello(c->bfd, PN_ROLE_BULK, c->session);
	T_EQ(read_welcome(c->bfd), c->session);
	/* REQ2 on the bulk connection itself: the next bulk frame after its reply must jump */
	q = (struct pn_req){ .gpa = gpa_of(REQ2_PAGE), .npages = REQ2_N };
	cl_frame(c->bfd, PN_REQ, 2, &q, sizeof(q));
	T_ASSERT(pthread_create(&bt, NULL, bulk_main, c) == 0);

	if (c->quitter) {
		pthread_join(bt, NULL);
		close(c->bfd); /* with unread frames: the server's send fails mid-stream */
		close(c->ufd);
		printf("  %s: left after %u bulk frames\n", c->name, QUIT_FRAMES);
		free(body);
		return NULL;
	}
	/* REQ1's reply (the bulk reader sent it, see bulk_main) */
	for (i = 0; i < WAIT_MS * 10 && !atomic_load(&c->req1_sent); i++)
		usleep(100);
	T_ASSERT(atomic_load(&c->req1_sent));
	T_ASSERT(read_frame(c->ufd, &h, body) == 1);
	c->req1_us = (double)(now_ns() - c->req1_t0) / 1000.0;
	atomic_store(&c->reply1, true);
	T_EQ(h.type, PN_PAGES);
	T_EQ(h.id, 1);
	T_EQ(check_pages(c, &h, body, true), REQ1_PAGE);

	pthread_join(bt, NULL);
	T_ASSERT(c->end);
	T_ASSERT(atomic_load(&c->reply2));
	/* the jump after REQ2 (same connection), the very next bulk frame: to the hint,
	 * PN_JUMP_LEAD past the request; that is within SEQ_GUARD of it, so while the request is
	 * recent (20 ms) the stream goes on to the middle of the unsent run from there (to the last
	 * page: the stream cannot have got that far), rounded down to whole batches. A loaded
	 * machine may take longer than that to pick the frame: then it is the hint itself */
	{
		uint64_t hp = REQ2_PAGE + REQ2_N + PN_JUMP_LEAD;
		uint64_t mid = hp + (PAGES - hp) / 2 / BATCH * BATCH;

		if (c->after_reply2 != mid && c->after_reply2 != hp) {
			fprintf(stderr, "FAIL %s: first bulk frame after REQ2's reply starts at page "
				"%llu, want %llu (or %llu)\n", c->name,
				(unsigned long long)c->after_reply2, (unsigned long long)mid,
				(unsigned long long)hp);
			exit(1);
		}
	}
	for (i = 0; i < PAGES; i++)
		if (atomic_load(&c->seen[i]) != 1) {
			fprintf(stderr, "FAIL %s: page %llu (gpa %#llx) arrived %u times\n", c->name,
				(unsigned long long)i, (unsigned long long)gpa_of(i),
				atomic_load(&c->seen[i]));
			exit(1);
		}
	/* after END the connections stay up: a request is still answered (the largest, read from
	 * the snapshot in several fetches), no more bulk */
	q = (struct pn_req){ .gpa = gpa_of(PAGES - PN_MAX_PAGES), .npages = PN_MAX_PAGES };
	cl_frame(c->ufd, PN_REQ, 3, &q, sizeof(q));
	T_ASSERT(read_frame(c->ufd, &h, body) == 1);
	T_EQ(h.id, 3);
	check_pages(c, &h, body, true);
	{
		struct pollfd pfd = { .fd = c->bfd, .events = POLLIN };

		T_EQ(poll(&pfd, 1, 100), 0);
	}
	close(c->bfd);
	close(c->ufd);
	printf("  %s: %llu pages exactly once in %llu bulk frames + 2 replies, END; REQ under full "
	       "bulk answered in %.0f us; the next frame after a same-connection reply at page %llu\n",
	       c->name, (unsigned long long)PAGES, (unsigned long long)atomic_load(&c->frames),
	       c->req1_us, (unsigned long long)c->after_reply2);
	free(body);
	return NULL;
}

/* The server logs from its threads: print, keep nothing shared. */
static void log_line(void *arg, int level, const char *msg)
{
	fprintf(stderr, "  [server %d] %s\n", level, msg);
}

/* Pattern with zero pages, and every 5th page compressible so LZ4 has something to do. */
static void fill(uint8_t *m, uint64_t gpa, uint64_t size)
{
	uint64_t i;

	t_fill(m, gpa, size, SEED, 8);
	for (i = 0; i < size / PN_PAGE; i++)
		if (i % 5 == 1)
			memset(m + i * PN_PAGE, (int)(i * 7 | 1), PN_PAGE / 2);
}

int main(void)
{
	static struct client cl[3] = { { .name = "destination 1" }, { .name = "destination 2" },
				       { .name = "destination 3 (quits)", .quitter = true } };
	struct pagein_server_config cfg;
	struct pagein_server_stats st;
	struct pagein_region_desc rd = { .gpa = B_GPA, .size = B_SIZE };
	char snap[] = "/tmp/t_server_multi-XXXXXX";
	const void *data;
	pthread_t th[3];
	int fd;
	FILE *f;
	unsigned i;

	f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
	if (f) {
		unsigned long long a, b, m;

		if (fscanf(f, "%llu %llu %llu", &a, &b, &m) == 3)
			wmem_max = m;
		fclose(f);
	}
	if (wmem_max + 2 * RCVBUF > (12ull << 20))
		t_skip("net.ipv4.tcp_wmem allows %llu-byte send buffers: this test needs < 12 MiB "
		       "so its requests stay ahead of the stream", (unsigned long long)wmem_max);
	mem_a = aligned_alloc(4096, A_SIZE);
	mem_b = aligned_alloc(4096, B_SIZE);
	T_ASSERT(mem_a && mem_b);
	fill(mem_a, A_GPA, A_SIZE);
	fill(mem_b, B_GPA, B_SIZE);

	pagein_server_config_init(&cfg);
	cfg.log = log_line;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, A_GPA, A_SIZE, mem_a), 0);
	/* region B from a snapshot: zero pages are holes there, read back as PN_PG_ZERO */
	fd = mkstemp(snap);
	T_ASSERT(fd >= 0);
	close(fd);
	data = mem_b;
	T_EQ(pagein_snapshot_save(snap, &rd, &data, 1), 0);
	T_EQ(pagein_server_add_snapshot(srv, snap), 0);
	unlink(snap); /* the server keeps it open */
	T_EQ(pagein_server_start(srv), 0);
	port = pagein_server_port(srv);
	T_ASSERT(port > 0);

	for (i = 0; i < 3; i++)
		T_ASSERT(pthread_create(&th[i], NULL, client_main, &cl[i]) == 0);
	for (i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	T_ASSERT(cl[0].session != cl[1].session && cl[1].session != cl[2].session);

	for (i = 0; i < 300; i++) {
		pagein_server_stats_get(srv, &st);
		if (!st.sessions_active)
			break;
		usleep(10000);
	}
	T_EQ(st.sessions_active, 0);
	T_EQ(st.sessions, 3);
	T_EQ(st.malformed, 0);
	T_ASSERT(st.pages_lz4 > 0);
	T_ASSERT(st.pages_bulk >= 2 * (PAGES - REQ1_N - REQ2_N));
	printf("  server: %llu sessions, %llu requests, %llu pages urgent, %llu bulk (%llu LZ4), "
	       "%llu MiB sent\n", (unsigned long long)st.sessions, (unsigned long long)st.requests,
	       (unsigned long long)st.pages_urgent, (unsigned long long)st.pages_bulk,
	       (unsigned long long)st.pages_lz4, (unsigned long long)(st.bytes_sent >> 20));
	pagein_server_stop(srv);
	pagein_server_free(srv);
	for (i = 0; i < 3; i++) {
		free(cl[i].frame_page);
		free(cl[i].frame_bytes);
	}
	free(mem_a);
	free(mem_b);
	t_pass("t_server_multi");
}
