/* SPDX-License-Identifier: MIT */
/*
 * uapi.h - userfaultfd definitions newer than the build machine's kernel headers (Debian 12 ships
 * 6.1 headers; UFFDIO_POISON and its feature bit arrived in 6.6). Written from the kernel's
 * documented ABI values; the running kernel is probed with UFFDIO_API at run time.
 */
#ifndef PAGEIN_UAPI_H
#define PAGEIN_UAPI_H

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1 /* userfaultfd(2) flag: only user-mode faults are caught */
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00) /* /dev/userfaultfd: make a new userfaultfd */
#endif

#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14) /* UFFDIO_POISON is available */
#endif

#ifndef UFFDIO_POISON
#define PAGEIN_UFFDIO_POISON_NR 0x08
/* install a poison marker: a later access gets SIGBUS (BUS_MCEERR_AR) */
struct uffdio_poison {
	struct uffdio_range range; /* the pages to poison */
	__u64 mode;                /* UFFDIO_POISON_MODE_DONTWAKE or 0 */
	__s64 updated;             /* out: bytes poisoned, or -errno */
};
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_POISON _IOWR(UFFDIO, PAGEIN_UFFDIO_POISON_NR, struct uffdio_poison)
#endif

#endif /* PAGEIN_UAPI_H */
