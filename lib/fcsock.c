// SPDX-License-Identifier: MIT
/*
 * fcsock.c - the UFFD hand-off socket (docs/firecracker.md): listen on a Unix socket, take one
 * VMM's connection, receive the region JSON and the userfaultfd (plus any memfds) by SCM_RIGHTS,
 * check that the fd really is a userfaultfd, and tell when the VMM has gone (its connection hangs
 * up, or its pidfd says it exited). Also the sending side, for the test VMM.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vmm.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define MAX_FDS (1 + PI_FC_MAX_REGIONS) /* the uffd and one memfd per region */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* poll() timeout left until deadline (UINT64_MAX: forever). */
static int left_ms(uint64_t deadline)
{
	uint64_t now = now_ms();

	if (deadline == UINT64_MAX)
		return -1;
	return deadline > now ? (int)(deadline - now < 1u << 30 ? deadline - now : 1u << 30) : 0;
}

int pi_fc_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret;

	if (strlen(path) >= sizeof(a.sun_path))
		return pi_say(err, errlen, -ENAMETOOLONG, "socket path %s is longer than %zu bytes",
			   path, sizeof(a.sun_path) - 1);
	strcpy(a.sun_path, path);
	/* a stale socket from an earlier handler is replaced; any other file is left alone */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return pi_say(err, errlen, -EEXIST, "%s exists and is not a socket", path);
		if (unlink(path) < 0)
			return pi_say(err, errlen, -errno, "cannot replace %s: %s", path,
				   strerror(errno));
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pi_say(err, errlen, -errno, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0) {
		ret = -errno;
		close(fd);
		return pi_say(err, errlen, ret, "cannot listen on %s: %s", path, strerror(-ret));
	}
	return fd;
}

int pi_uffd_check(int fd)
{
	char link[64], target[64];
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_mode & S_IFMT)
		return -EBADF; /* anon inodes have no file type; files, sockets, pipes do */
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -errno; /* no /proc: we cannot tell, so we do not guess */
	target[n] = 0;
	return strcmp(target, "anon_inode:[userfaultfd]") ? -EBADF : 0;
}

/* Take the fds of every SCM_RIGHTS message in msg; close what does not fit. */
static void take_fds(struct msghdr *msg, int *fds, unsigned *n)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t k, cnt;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < cnt; k++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
			if (*n < MAX_FDS)
				fds[(*n)++] = fd;
			else
				close(fd);
		}
	}
}

void pi_fc_handoff_close(struct pi_fc_handoff *h)
{
	unsigned i;

	if (h->uffd >= 0)
		close(h->uffd);
	if (h->conn >= 0)
		close(h->conn);
	if (h->pidfd >= 0)
		close(h->pidfd);
	for (i = 0; i < h->nextra; i++)
		if (h->extra_fds[i] >= 0)
			close(h->extra_fds[i]);
	h->uffd = h->conn = h->pidfd = -1;
	h->nextra = 0;
}

/* Receive until the JSON is complete. fds collects every fd that came with it. */
static int receive(struct pi_fc_handoff *h, uint64_t deadline, int *fds, unsigned *nfds,
		   char *err, size_t errlen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct pollfd pfd = { .fd = h->conn, .events = POLLIN };
	long end;
	ssize_t got;
	int ret;

	for (;;) {
		struct iovec iov = { h->json + h->json_len, PI_FC_MAX_JSON - h->json_len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
				      .msg_controllen = sizeof(cm.buf) };

		if (h->json_len == PI_FC_MAX_JSON)
			return pi_say(err, errlen, -EMSGSIZE, "the region list is longer than %d bytes",
				   PI_FC_MAX_JSON);
		ret = poll(&pfd, 1, left_ms(deadline));
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0)
			return pi_say(err, errlen, -errno, "poll: %s", strerror(errno));
		if (ret == 0)
			return pi_say(err, errlen, -ETIMEDOUT, "the VMM connected but sent %s within the "
				   "time limit", h->json_len ? "only part of its region list" :
				   "nothing");
		got = recvmsg(h->conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0)
			return pi_say(err, errlen, -errno, "recvmsg: %s", strerror(errno));
		take_fds(&msg, fds, nfds);
		if (msg.msg_flags & MSG_CTRUNC)
			return pi_say(err, errlen, -EMSGSIZE, "the VMM sent more than %d fds", MAX_FDS);
		if (got == 0)
			return pi_say(err, errlen, -ECONNRESET, "the VMM closed the connection after %zu "
				   "bytes, before a complete region list", h->json_len);
		h->json_len += (size_t)got;
		h->json[h->json_len] = 0;
		end = pi_fc_json_end(h->json, h->json_len);
		if (end < 0)
			return pi_say(err, errlen, -EINVAL, "the VMM's message is not a JSON array "
				   "(starts with '%.16s')", h->json);
		if (end > 0)
			return 0;
	}
}

int pi_fc_accept(int listen_fd, int timeout_ms, struct pi_fc_handoff *h, char *err,
		 size_t errlen)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	int fds[MAX_FDS];
	unsigned nfds = 0, i;
	int ret;

	memset(h, 0, offsetof(struct pi_fc_handoff, json));
	h->conn = h->uffd = h->pidfd = -1;
	h->json_len = 0;
	h->json[0] = 0;
	for (;;) {
		ret = poll(&pfd, 1, left_ms(deadline));
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0)
			return pi_say(err, errlen, -errno, "poll: %s", strerror(errno));
		if (ret == 0)
			return pi_say(err, errlen, -ETIMEDOUT, "no VMM connected within the time limit");
		h->conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (h->conn >= 0)
			break;
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			return pi_say(err, errlen, -errno, "accept: %s", strerror(errno));
	}
	if (getsockopt(h->conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.pid > 0) {
		h->pid = cred.pid;
		/* a pidfd tells the VMM's exit even if it passed the socket on to another process */
		h->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	}
	ret = receive(h, deadline, fds, &nfds, err, errlen);
	if (ret == 0 && !nfds)
		ret = pi_say(err, errlen, -ENOMSG, "the VMM sent its region list without a "
			  "userfaultfd (SCM_RIGHTS)");
	if (ret == 0) {
		ret = pi_uffd_check(fds[0]);
		if (ret == -EBADF) {
			char link[64], what[128] = "?";
			ssize_t k;

			snprintf(link, sizeof(link), "/proc/self/fd/%d", fds[0]);
			k = readlink(link, what, sizeof(what) - 1);
			what[k > 0 ? k : 1] = 0;
			pi_say(err, errlen, ret, "the fd the VMM sent is not a userfaultfd (it is %s)",
			    what);
		}
		else if (ret < 0)
			pi_say(err, errlen, ret, "cannot tell whether the fd the VMM sent is a "
			    "userfaultfd (is /proc mounted?): %s", strerror(-ret));
	}
	if (ret < 0) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		pi_fc_handoff_close(h);
		return ret;
	}
	h->uffd = fds[0];
	for (i = 1; i < nfds; i++)
		h->extra_fds[h->nextra++] = fds[i];
	return 0;
}

int pi_fc_peer_gone(const struct pi_fc_handoff *h, int timeout_ms)
{
	/* the process's exit when a pidfd tells it (a VMM may close the socket and go on);
	 * else the connection's hang-up: POLLRDHUP only, so data the VMM may send later does
	 * not make this return at once */
	struct pollfd pfd = { .fd = h->pidfd >= 0 ? h->pidfd : h->conn,
			      .events = h->pidfd >= 0 ? POLLIN : POLLRDHUP };
	int ret;

	ret = poll(&pfd, 1, timeout_ms);
	if (ret < 0)
		return errno == EINTR ? 0 : -errno;
	return ret > 0 && pfd.revents;
}

int pi_fc_send(int sock, const char *json, size_t len, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { (void *)json, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	ssize_t sent;

	if (nfds > MAX_FDS)
		return -EINVAL;
	if (nfds) {
		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do
		sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	if (sent < 0)
		return -errno;
	if ((size_t)sent < len) {
		/* the rest goes without fds (they went with the first part) */
		const char *p = json + sent;
		size_t left = len - (size_t)sent;

		while (left) {
			sent = send(sock, p, left, MSG_NOSIGNAL);
			if (sent < 0 && errno == EINTR)
				continue;
			if (sent < 0)
				return -errno;
			p += sent;
			left -= (size_t)sent;
		}
	}
	return 0;
}

/* One mapping of the peer, as far as the region check needs it. */
struct vma {
	uint64_t start, end;
	uint64_t kpage;   /* KernelPageSize in bytes */
	bool um, ht, sh;  /* VmFlags: uffd missing, hugetlb, shared */
};

static int check_one(unsigned idx, const struct pi_fc_region *r, const struct vma *v,
		     unsigned nv, struct pi_fc_peer_map *out, char *err, size_t errlen)
{
	uint64_t at = r->base, end = r->base + r->size;
	const struct vma *first = NULL;
	unsigned i;

	for (i = 0; i < nv && at < end; i++) {
		if (v[i].end <= at)
			continue;
		if (v[i].start > at)
			break; /* a gap */
		if (!v[i].um)
			return pi_say(err, errlen, -EINVAL, "region %u: the VMM's memory at 0x%llx is "
				   "not registered with a userfaultfd for missing pages", idx,
				   (unsigned long long)at);
		if (v[i].kpage != r->page_size)
			return pi_say(err, errlen, -EINVAL, "region %u says page size %llu but the VMM "
				   "maps 0x%llx with %llu-byte pages", idx,
				   (unsigned long long)r->page_size, (unsigned long long)at,
				   (unsigned long long)v[i].kpage);
		if (first && (first->ht != v[i].ht || first->sh != v[i].sh))
			return pi_say(err, errlen, -EINVAL, "region %u mixes kinds of memory", idx);
		first = first ? first : &v[i];
		at = v[i].end;
	}
	if (at < end)
		return pi_say(err, errlen, -EINVAL, "region %u (0x%llx, %llu bytes): the VMM has no "
			   "mapping at 0x%llx", idx, (unsigned long long)r->base,
			   (unsigned long long)r->size, (unsigned long long)at);
	out->shared = first->sh;
	out->backing = first->ht ? PAGEIN_BACKING_HUGETLB :
		       first->sh ? PAGEIN_BACKING_SHMEM : PAGEIN_BACKING_ANON;
	return 0;
}

int pi_fc_check_regions(pid_t pid, const struct pi_fc_region *r, unsigned n,
			struct pi_fc_peer_map *out, char *err, size_t errlen)
{
	char path[64], line[512];
	struct vma *v = NULL, *nvp;
	unsigned nv = 0, cap = 0, i;
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return pi_say(err, errlen, -errno, "cannot read %s to check the VMM's registrations: "
			   "%s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b, kb;

		if (sscanf(line, "%llx-%llx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			if (nv == cap) {
				cap = cap ? cap * 2 : 64;
				nvp = realloc(v, sizeof(*v) * cap);
				if (!nvp) {
					ret = pi_say(err, errlen, -ENOMEM, "out of memory");
					goto out;
				}
				v = nvp;
			}
			v[nv++] = (struct vma){ .start = a, .end = b, .kpage = 4096 };
		} else if (nv && sscanf(line, "KernelPageSize: %llu kB", &kb) == 1) {
			v[nv - 1].kpage = kb * 1024;
		} else if (nv && !strncmp(line, "VmFlags:", 8)) {
			v[nv - 1].um = strstr(line, " um") != NULL;
			v[nv - 1].ht = strstr(line, " ht") != NULL;
			v[nv - 1].sh = strstr(line, " sh") != NULL;
		}
	}
	if (ferror(f)) {
		ret = pi_say(err, errlen, -EIO, "error reading %s", path);
		goto out;
	}
	/* smaps lists mappings in address order, which check_one relies on */
	for (i = 0; i < n && !ret; i++)
		ret = check_one(i, &r[i], v, nv, &out[i], err, errlen);
out:
	fclose(f);
	free(v);
	return ret;
}
