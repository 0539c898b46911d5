// SPDX-License-Identifier: MIT
/*
 * fuzz_fcsock.c - libFuzzer target for the Firecracker hand-off (lib/fcsock.c, then lib/fcmap.c):
 * what a VMM sends on the UFFD socket, received by pi_fc_accept exactly as the handler receives
 * it (a real Unix socket, SCM_RIGHTS), then parsed by pi_fc_parse as pagein_handler_accept does.
 *
 * Input: byte 0 the fds to attach to the first message (bits 0-1: 0 none, 1 a userfaultfd,
 * 2 eventfds (not a userfaultfd), 3 a userfaultfd then memfds; bits 2-4: how many for kinds 2
 * and 3, from {1, 2, 3, 8, 64, 65, 66, 70}: around what the receiver keeps (1 + 64) and what
 * its control buffer holds in one message); byte 1: bits 0-5 the number of messages the rest is
 * cut into, less one (1..64), bit 7: the second message carries the same fds again; the rest:
 * the bytes the VMM sends. Then the VMM half-closes its end. (Fds are what make an input slow:
 * each is installed and closed in the kernel, so their count is bounded by this choice.)
 * Checked besides ASan/UBSan: a success has a userfaultfd, a complete JSON and no error text;
 * a failure has a reason; no fd is left open either way (the lowest free fd stays the same).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm.h"

#define MAX_MSGS 64

static int lfd = -1, uffd = -1, efd = -1, mfd = -1, low_fd = -1;
static struct sockaddr_un addr = { .sun_family = AF_UNIX };
static struct pi_fc_handoff *h;

/* The lowest free fd number: grows if an input leaves an fd open. */
static int lowest_free(void)
{
	int fd = dup(2);

	close(fd);
	return fd;
}

static void remove_socket(void)
{
	unlink(addr.sun_path);
}

static void setup(void)
{
	char err[PI_ERRLEN];

	snprintf(addr.sun_path, sizeof(addr.sun_path), "/tmp/fuzz_fcsock.%d", (int)getpid());
	lfd = pi_fc_listen(addr.sun_path, err, sizeof(err));
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	efd = eventfd(0, EFD_CLOEXEC);
	mfd = memfd_create("fuzz_fcsock", MFD_CLOEXEC);
	h = malloc(sizeof(*h));
	if (lfd < 0 || efd < 0 || mfd < 0 || !h) {
		fprintf(stderr, "fuzz_fcsock: setup: %s\n", lfd < 0 ? err : strerror(errno));
		abort();
	}
	if (uffd < 0) /* no userfaultfd here (unprivileged): the success path is not reached */
		fprintf(stderr, "fuzz_fcsock: no userfaultfd (%s): sending an eventfd instead\n",
			strerror(errno));
	low_fd = lowest_free();
	atexit(remove_socket);
}

/* Send len bytes with nfds fds (kind as in byte 0). 0, or -1 when the socket would block. */
static int send_part(int s, const uint8_t *p, size_t len, unsigned kind, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 70)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { (void *)p, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[70];
	unsigned i;

	if (kind && nfds) {
		for (i = 0; i < nfds; i++)
			fds[i] = kind == 2 ? efd : i == 0 && uffd >= 0 ? uffd : i == 0 ? efd : mfd;
		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		CMSG_FIRSTHDR(&msg)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&msg)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&msg)->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&msg)), fds, sizeof(int) * nfds);
	}
	while (len || msg.msg_control) {
		ssize_t w = sendmsg(s, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0)
			return -1;
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
		iov.iov_base = (uint8_t *)iov.iov_base + w;
		iov.iov_len -= (size_t)w;
		len -= (size_t)w;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned counts[8] = { 1, 2, 3, 8, 64, 65, 66, 70 };
	struct pi_fc_region r[PI_FC_MAX_REGIONS];
	unsigned kind, nfds, nmsg, i;
	size_t off = 0, part;
	char err[PI_ERRLEN];
	int s, ret, big = 1 << 20;
	bool again;

	if (lfd < 0)
		setup();
	if (size < 2 || size - 2 > PI_FC_MAX_JSON + 64)
		return 0;
	kind = data[0] & 3;
	nfds = kind == 1 ? 1 : kind ? counts[data[0] >> 2 & 7] : 0;
	nmsg = (data[1] & 63) + 1;
	again = data[1] & 128;
	data += 2;
	size -= 2;
	part = (size + nmsg - 1) / nmsg;

	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)))
		abort();
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	for (i = 0; i < nmsg && (off < size || i == 0); i++) {
		size_t n = size - off < part ? size - off : part;

		if (send_part(s, data + off, n, kind, i == 0 || (i == 1 && again) ? nfds : 0) < 0)
			break; /* the socket is full: the VMM's rest is lost, as if it stopped */
		off += n;
	}
	shutdown(s, SHUT_WR);

	memset(err, 0, sizeof(err));
	ret = pi_fc_accept(lfd, 5000, h, err, sizeof(err));
	close(s);
	if (ret == 0) {
		if (err[0] || h->uffd < 0 || pi_uffd_check(h->uffd) ||
		    pi_fc_json_end(h->json, h->json_len) <= 0 || h->json[h->json_len])
			abort();
		memset(err, 'x', sizeof(err));
		ret = pi_fc_parse(h->json, h->json_len, r, PI_FC_MAX_REGIONS, err, sizeof(err));
		if (!memchr(err, 0, sizeof(err)) || (ret < 0 && !err[0]) || !ret)
			abort();
		pi_fc_handoff_close(h);
	} else if (!err[0] || ret == -ETIMEDOUT) {
		abort(); /* no reason, or a wait: everything was sent and the end closed */
	}
	if (lowest_free() != low_fd)
		abort(); /* an fd the VMM sent (or the connection) was left open */
	return 0;
}
