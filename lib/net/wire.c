// SPDX-License-Identifier: MIT
/*
 * wire.c - what both ends of the protocol share (wire.h): frame headers, message validation,
 * region lookup and checks, and the exact-length receive and send loops with their time limits. Every loop here
 * waits in poll() with a bound, so no caller can block for ever on a silent or stuck peer.
 * The I/O loops and lookups are async-signal-safe (a fault's fetch sends its request through
 * pi_wire_send); the log and the PAGES check, which format text, are not.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "net/wire.h"

_Static_assert(sizeof(struct pn_hdr) == 16, "pn_hdr travels as 16 bytes");
_Static_assert(sizeof(struct pn_hello) == 40, "pn_hello travels as 40 bytes");
_Static_assert(sizeof(struct pn_welcome) == 32, "pn_welcome travels as 32 bytes");
_Static_assert(sizeof(struct pn_region) == 24, "pn_region travels as 24 bytes");
_Static_assert(sizeof(struct pn_req) == 16 && sizeof(struct pn_pages) == 16, "16-byte bodies");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian");

void pi_wire_log(void (*log)(void *arg, int level, const char *msg), void *arg, int level,
		 const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log(arg, level, msg);
}

int pi_wire_cfg_copy(void *dst, size_t dst_size, const void *src)
{
	const uint8_t *s = src;
	uint32_t size, mine = (uint32_t)dst_size;
	size_t i;

	memcpy(&size, src, sizeof(size));
	if (size < sizeof(size))
		return -EINVAL;
	for (i = dst_size; i < size; i++)
		if (s[i])
			return -EINVAL;
	memcpy(dst, src, size < dst_size ? size : dst_size);
	memcpy(dst, &mine, sizeof(mine));
	return 0;
}

void pi_wire_hdr(struct pn_hdr *h, uint32_t len, uint16_t type, uint64_t id)
{
	h->len = htole32(len);
	h->type = htole16(type);
	h->flags = 0;
	h->id = htole64(id);
}

int pi_wire_region_find(const struct pn_region *regs, unsigned n, uint64_t gpa, uint64_t len)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (pi_wire_in_region(regs[i].gpa, regs[i].size, gpa, len))
			return (int)i;
	return -1;
}

int pi_wire_region_check(const struct pn_region *regs, unsigned n, uint64_t gpa, uint64_t size,
			 unsigned *other)
{
	unsigned i;

	if (!size || size % PN_PAGE || gpa % PN_PAGE || gpa + size < gpa)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (gpa < regs[i].gpa + regs[i].size && regs[i].gpa < gpa + size) {
			*other = i;
			return -EEXIST;
		}
	return 0;
}

int pi_wire_ms_left(uint64_t deadline_ns)
{
	uint64_t now;

	if (!deadline_ns)
		return -1;
	now = pi_now_ns();
	if (now >= deadline_ns)
		return 0;
	return (deadline_ns - now) / 1000000 >= INT_MAX ? INT_MAX
						       : (int)((deadline_ns - now + 999999) / 1000000);
}

/*
 * Wait until fd is ready for events, within idle_ms and the deadline, unless stop_fd fires.
 * 0 ready (or hung up: the next call says how), -ETIMEDOUT, -ESHUTDOWN, -errno.
 */
static int wait_fd(int fd, short events, int idle_ms, uint64_t deadline_ns, int stop_fd)
{
	struct pollfd pfd[2] = { { .fd = fd, .events = events }, { .fd = stop_fd, .events = POLLIN } };
	int ms, left, n;

	for (;;) {
		ms = idle_ms;
		left = pi_wire_ms_left(deadline_ns);
		if (left >= 0 && (ms < 0 || left < ms))
			ms = left;
		n = poll(pfd, stop_fd >= 0 ? 2 : 1, ms);
		if (n < 0 && errno == EINTR)
			continue; /* a signal: the limits still hold (deadline), idle restarts */
		if (n < 0)
			return -errno;
		if (stop_fd >= 0 && pfd[1].revents)
			return -ESHUTDOWN;
		return n ? 0 : -ETIMEDOUT;
	}
}

ssize_t pi_wire_recv_some(int fd, void *buf, size_t max, int idle_ms, int stop_fd)
{
	ssize_t r;
	int ret;

	for (;;) {
		r = recv(fd, buf, max, MSG_DONTWAIT);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return errno == EPIPE ? -ECONNRESET : -errno;
		ret = wait_fd(fd, POLLIN, idle_ms, 0, stop_fd);
		if (ret < 0)
			return ret;
	}
}

int pi_wire_recv(int fd, void *buf, size_t len, size_t *got, int idle_ms, uint64_t deadline_ns,
		 int stop_fd)
{
	ssize_t r;
	int ret;

	*got = 0;
	while (*got < len) {
		r = recv(fd, (uint8_t *)buf + *got, len - *got, MSG_DONTWAIT);
		if (r > 0) {
			*got += (size_t)r;
			continue;
		}
		if (r == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return errno == EPIPE ? -ECONNRESET : -errno;
		ret = wait_fd(fd, POLLIN, idle_ms, deadline_ns, stop_fd);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pi_wire_send(int fd, struct iovec *iov, int n, size_t *sent, int idle_ms,
		 uint64_t deadline_ns, int stop_fd)
{
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
	ssize_t w;
	int ret;

	*sent = 0;
	while (mh.msg_iovlen) {
		w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ret = wait_fd(fd, POLLOUT, idle_ms, deadline_ns, stop_fd);
			if (ret < 0)
				return ret;
			continue;
		}
		if (w < 0)
			return -errno;
		*sent += (size_t)w;
		while (mh.msg_iovlen && (size_t)w >= mh.msg_iov->iov_len) {
			w -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + w;
			mh.msg_iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Validate a PAGES body: header, range inside a region, descriptors adding up exactly. Formats
 * its reason with snprintf: receiver threads only. */
int pi_wire_parse_pages(const uint8_t *body, uint32_t len, const struct pn_region *regs,
			unsigned nregs, bool lz4, struct pi_wire_pages *pg, char *why, size_t whylen)
{
	struct pn_pages h;
	uint64_t need, i;
	uint32_t d;

	if (len < sizeof(h)) {
		snprintf(why, whylen, "PAGES body of %u bytes is shorter than its header", len);
		return -EPROTO;
	}
	memcpy(&h, body, sizeof(h));
	pg->gpa = le64toh(h.gpa);
	pg->npages = le32toh(h.npages);
	if (!pg->npages || pg->npages > PN_MAX_PAGES || h.reserved) {
		snprintf(why, whylen, "PAGES with %u pages (1..%u) or reserved %#x", pg->npages,
			 PN_MAX_PAGES, le32toh(h.reserved));
		return -EPROTO;
	}
	if (pg->gpa % PN_PAGE ||
	    pi_wire_region_find(regs, nregs, pg->gpa, (uint64_t)pg->npages * PN_PAGE) < 0) {
		snprintf(why, whylen, "PAGES [%#llx, +%u pages) is not inside one region",
			 (unsigned long long)pg->gpa, pg->npages);
		return -EPROTO;
	}
	if (len < sizeof(h) + 4ull * pg->npages) {
		snprintf(why, whylen, "PAGES of %u pages is too short for its descriptors",
			 pg->npages);
		return -EPROTO;
	}
	pg->desc = body + sizeof(h);
	pg->data = pg->desc + 4ull * pg->npages;
	need = 0;
	for (i = 0; i < pg->npages; i++) {
		memcpy(&d, pg->desc + 4 * i, 4);
		d = le32toh(d);
		switch (PN_PG_KIND(d)) {
		case PN_PG_RAW:
			if (PN_PG_CSIZE(d))
				goto bad_desc;
			need += PN_PAGE;
			break;
		case PN_PG_ZERO:
			if (PN_PG_CSIZE(d))
				goto bad_desc;
			break;
		case PN_PG_LZ4:
			if (!lz4 || !PN_PG_CSIZE(d) ||
			    PN_PG_CSIZE(d) >= PN_PAGE)
				goto bad_desc;
			need += PN_PG_CSIZE(d);
			break;
		default:
			goto bad_desc;
		}
	}
	if (need != len - sizeof(h) - 4ull * pg->npages) {
		snprintf(why, whylen,
			 "PAGES at %#llx: descriptors add up to %llu payload bytes, the frame has %llu",
			 (unsigned long long)pg->gpa, (unsigned long long)need,
			 (unsigned long long)(len - sizeof(h) - 4ull * pg->npages));
		return -EPROTO;
	}
	return 0;
bad_desc:
	snprintf(why, whylen, "PAGES at %#llx: page %llu has a bad descriptor %#x%s",
		 (unsigned long long)pg->gpa, (unsigned long long)i, d,
		 PN_PG_KIND(d) == PN_PG_LZ4 && !lz4 ? " (LZ4 not granted)"
									       : "");
	return -EPROTO;
}
