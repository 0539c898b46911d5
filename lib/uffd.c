// SPDX-License-Identifier: MIT
/*
 * uffd.c - every userfaultfd ioctl the library makes, and the kernel's race rules, in one place
 * (DESIGN §3, invariant 4): EEXIST (someone installed the page: wake it and go on), EAGAIN (an
 * mm event is queued: read it, then retry), ENOENT/ESRCH (the mapping or the process is gone).
 * Nothing here knows about page state; engine.c decides what to install and when.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "uapi.h"

int pi_uffd_open(int flags)
{
	int fd, dev, ret;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		ret = -errno;
		close(dev);
		if (fd >= 0)
			return fd;
		if (ret != -EPERM && ret != -EACCES && ret != -EINVAL)
			return ret;
	}
	fd = (int)syscall(SYS_userfaultfd, flags);
	if (fd < 0)
		return -errno;
	return fd;
}

int pi_uffd_api(int fd, uint64_t want, uint64_t *offered)
{
	struct uffdio_api api = { .api = UFFD_API, .features = want };

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	/* the kernel writes back every feature it knows, not the ones this fd enabled */
	*offered = api.features;
	return 0;
}

int pi_uffd_register(int fd, uintptr_t start, uint64_t len, bool minor)
{
	struct uffdio_register reg = { .range = { .start = start, .len = len } };
	uint64_t need = minor ? 1ull << _UFFDIO_CONTINUE : 1ull << _UFFDIO_COPY;

	reg.mode = UFFDIO_REGISTER_MODE_MISSING | (minor ? UFFDIO_REGISTER_MODE_MINOR : 0);
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	if ((reg.ioctls & need) != need)
		return -ENOSYS;
	return 0;
}

int pi_uffd_unregister(int fd, uintptr_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(fd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

void pi_uffd_wake(int fd, uintptr_t start, uint64_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	ioctl(fd, UFFDIO_WAKE, &r);
}

/* One ioctl; *done gets the bytes it did (all of them on success). */
static int do_ioctl(int fd, enum pi_uffd_op op, uintptr_t dst, const void *src, uint64_t len,
		    int64_t *done)
{
	int ret;

	switch (op) {
	case PI_UFFD_COPY: {
		struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)src, .len = len };

		ret = ioctl(fd, UFFDIO_COPY, &c);
		*done = c.copy;
		break;
	}
	case PI_UFFD_ZERO: {
		struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };

		ret = ioctl(fd, UFFDIO_ZEROPAGE, &z);
		*done = z.zeropage;
		break;
	}
	case PI_UFFD_CONTINUE: {
		struct uffdio_continue c = { .range = { .start = dst, .len = len } };

		ret = ioctl(fd, UFFDIO_CONTINUE, &c);
		*done = c.mapped;
		break;
	}
	default: {
		struct uffdio_poison p = { .range = { .start = dst, .len = len } };

		ret = ioctl(fd, UFFDIO_POISON, &p);
		*done = p.updated;
		break;
	}
	}
	if (ret == 0) {
		*done = (int64_t)len;
		return 0;
	}
	return -errno;
}

/*
 * An ioctl met EAGAIN: an mm event (REMOVE, UNMAP) is queued on fd and the kernel refuses
 * installs until it is read. A reader thread of fd is the one that must read it (it may be the
 * only one): it reads the queued messages now, handles the events and keeps the faults for
 * later. Any other thread yields to the readers. Returns -ETIMEDOUT past the deadline.
 */
static int eagain_wait(struct pagein_space *s, int fd, uint64_t deadline)
{
	pi_stat_add(s, PI_STAT(eagain), 1);
	if (pi_now_ns() > deadline)
		return -ETIMEDOUT;
	if (!pi_reader_read_events(s, fd))
		sched_yield();
	return 0;
}

int pi_uffd_install(struct pagein_space *s, int fd, enum pi_uffd_op op, uintptr_t dst,
		    const void *src, uint64_t len, uint64_t page_size, uint64_t deadline,
		    uint64_t *existed)
{
	const uint8_t *from = src;
	uint64_t off = 0;
	int64_t done;
	int ret;

	while (off < len) {
		ret = do_ioctl(fd, op, dst + off, from ? from + off : NULL, len - off, &done);
		if (ret == 0)
			return 0;
		if (done > 0) {
			/* partial progress: go on from where the kernel stopped */
			off += (uint64_t)done;
			continue;
		}
		switch (ret) {
		case -EEXIST:
			/* mapped already (by someone else, or a stale fault message). A COPY that
			 * fails so wakes nobody: wake the page explicitly, then skip it */
			pi_stat_add(s, PI_STAT(eexist), 1);
			pi_uffd_wake(fd, dst + off, page_size);
			if (existed)
				(*existed)++;
			off += page_size;
			break;
		case -EAGAIN:
			ret = eagain_wait(s, fd, deadline);
			if (ret < 0)
				return ret;
			break;
		case -ESRCH:
		case -ENOENT:
			return -ENOENT; /* the mapping (or the whole process) is gone */
		default:
			return ret;
		}
	}
	return 0;
}
