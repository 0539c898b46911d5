/* SPDX-License-Identifier: MIT */
/*
 * vmm.h - the pieces that meet VMMs where they are (DESIGN.md §7), internal to lib/: the
 * Firecracker UFFD hand-off (the JSON region list and the Unix socket that carries it with the
 * userfaultfd), the raw image source (a flat memory file plus a layout) and the working-set file
 * (docs/working-set.md). Errors come back as -errno plus a message in a caller's buffer.
 */
#ifndef PAGEIN_VMM_H
#define PAGEIN_VMM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pagein.h"
#include "pagein-vmm.h"

#define PI_ERRLEN 256           /* size of the error buffers these functions fill */
#define PI_FC_MAX_REGIONS 64    /* regions one hand-off may describe */
#define PI_FC_MAX_JSON 65536    /* longest region list accepted */

/* ---- fcmap.c: Firecracker's JSON array of GuestRegionUffdMapping ---- */

/* One element of the array, as received (docs/firecracker.md). */
struct pi_fc_region {
	uint64_t base;      /* base_host_virt_addr: the region's address in the VMM process */
	uint64_t size;      /* size: bytes */
	uint64_t offset;    /* offset: where the region's bytes start in the memory file */
	uint64_t page_size; /* page_size (or the older page_size_kib, in bytes too); 4096 if absent */
	bool page_size_given; /* false: neither field was sent (Firecracker before v1.7) */
};

/*
 * Parse json[0..len) as Firecracker's region array into out[0..max). Strict JSON (RFC 8259)
 * with: numbers that are non-negative integers fitting 64 bits; the three required fields
 * present once each; page_size and page_size_kib equal when both are sent (both are bytes);
 * page sizes of 4 KiB or 2 MiB; every address, size and offset a multiple of the page size;
 * no two regions overlapping in the VMM's address space or in the file. Unknown fields are
 * skipped (their values must still be valid JSON). Returns the region count, or -EINVAL with
 * what and where (byte offset) in err, or -E2BIG (more than max regions).
 */
int pi_fc_parse(const char *json, size_t len, struct pi_fc_region *out, unsigned max, char *err,
		size_t errlen);

/*
 * Whether buf[0..len) starts with one complete JSON value (after blanks): returns its length
 * in bytes (> 0), 0 when more bytes are needed, -EINVAL when it cannot become an array (its
 * first byte is not '['). Strings and escapes are followed, nothing else is checked: the
 * receiver uses it to know when a stream has brought the whole message.
 */
long pi_fc_json_end(const char *buf, size_t len);

/* ---- fcsock.c: the hand-off socket ---- */

/* Bind and listen on a Unix SOCK_STREAM socket at path (an existing socket file is replaced,
 * anything else there is an error). Returns the fd or -errno (message in err). */
int pi_fc_listen(const char *path, char *err, size_t errlen);

/* What a VMM sent: the userfaultfd, optionally the memfds backing its regions, the JSON. */
struct pi_fc_handoff {
	int conn;            /* the accepted connection (kept open: the VMM's exit closes it) */
	int uffd;            /* the userfaultfd, checked to be one */
	int extra_fds[PI_FC_MAX_REGIONS]; /* further fds sent after the uffd (memfds), in order */
	unsigned nextra;
	pid_t pid;           /* the peer's pid (SO_PEERCRED), 0 if unknown */
	int pidfd;           /* pidfd_open(pid), -1 if the kernel has none */
	char json[PI_FC_MAX_JSON + 1]; /* the JSON text, NUL-terminated */
	size_t json_len;
};

/*
 * Accept one connection on listen_fd within timeout_ms (< 0: forever) and receive the JSON and
 * the fds (SCM_RIGHTS, possibly spread over several messages; the first fd is the userfaultfd).
 * Returns 0 with *h filled (caller owns every fd: pi_fc_handoff_close), or -ETIMEDOUT (nobody
 * came, or the VMM stopped half way), -ECONNRESET (the VMM closed before sending it all),
 * -ENOMSG (a message without a userfaultfd), -EBADF (the fd is not a userfaultfd), -EMSGSIZE.
 */
int pi_fc_accept(int listen_fd, int timeout_ms, struct pi_fc_handoff *h, char *err,
		 size_t errlen);

/* Close every fd of h that is still open (idempotent). */
void pi_fc_handoff_close(struct pi_fc_handoff *h);

/* Whether fd is a userfaultfd (an anon inode named "[userfaultfd]"). 0, -EBADF, or -errno. */
int pi_uffd_check(int fd);

/*
 * Whether the VMM has gone: its process exited (pidfd), or, where the kernel has no pidfds, its
 * connection hung up. Waits up to timeout_ms (0: just look). Returns 1 gone, 0 still there,
 * -errno.
 */
int pi_fc_peer_gone(const struct pi_fc_handoff *h, int timeout_ms);

/* What the VMM's own mappings say about one region (from /proc/PID/smaps). */
struct pi_fc_peer_map {
	enum pagein_backing backing; /* ANON (private), SHMEM (shared: memfd/shmem), HUGETLB */
	bool shared;                 /* MAP_SHARED (a memfd: its fd can be sent along) */
};

/*
 * Check regions r[0..n) against the mappings of process pid: each must be covered, without a
 * gap, by mappings registered with a userfaultfd for missing faults ("um" in VmFlags) whose
 * kernel page size equals the region's, all of one kind. Fills out[i]. Returns 0, -EINVAL (err
 * names the region and what does not match), or -errno reading /proc/PID/smaps (-EACCES when
 * the VMM runs as another user: the caller may go on unchecked).
 */
int pi_fc_check_regions(pid_t pid, const struct pi_fc_region *r, unsigned n,
			struct pi_fc_peer_map *out, char *err, size_t errlen);

/* ---- fcserve.c: serving the VMM's userfaultfd ---- */

struct pi_ws;

/* How pi_fc_serve serves. */
struct pi_fc_serve_opts {
	struct pagein_source *src; /* the memory file: addressed by file offset (gpa = offset) */
	uint64_t image_id;         /* the source's identity (pagein_source_raw_image_id) */
	unsigned timeout_ms;       /* deadline of one fetch (0: none) */
	bool record;               /* keep the first-touch order (stats.rec) */
	struct pi_ws *ws;          /* prefetch this working set (NULL: none); not with record */
	_Atomic bool *stop;        /* set from another thread to end serving (NULL: none) */
	void (*log)(void *arg, int level, const char *msg); /* NULL = silent */
	void *log_arg;
};

/* What pi_fc_serve did. */
struct pi_fc_serve_stats {
	uint64_t faults;           /* fault messages served */
	uint64_t pages_demand;     /* pages installed for faults */
	uint64_t pages_prefetch;   /* pages installed by the prefetch */
	uint64_t prefetch_skipped; /* working-set pages outside this VMM's layout */
	uint64_t pages_zero;       /* of all installs, zero pages */
	uint64_t rezero;           /* faults on pages discarded after install: zeros installed */
	uint64_t eexist, eagain;   /* kernel races met */
	uint64_t raced_remove;     /* installs whose page a REMOVE discarded meanwhile: zeros */
	uint64_t fault_errors;     /* faults that could not be served: poisoned (VMM gets SIGBUS) */
	uint64_t events_remove, events_unmap, events_other;
	uint64_t wakes;            /* UFFDIO_WAKEs of prefetch batches */
	uint64_t bytes_read;       /* from the memory file and the working set */
	uint64_t fault_ns;         /* time spent serving faults */
	uint64_t prefetch_read_ns; /* the working set's one read */
	uint64_t elapsed_ns;       /* from start to the VMM's exit */
	uint64_t lat_hist[PAGEIN_HIST_BUCKETS]; /* fault service latency, log2 ns buckets */
	bool peer_exited;          /* the loop ended because the VMM went away */
	bool ws_refused;           /* the working set was not used: another image's, or damaged */
	uint64_t *rec;             /* record: first touches (file offsets), malloc'd, caller frees */
	uint64_t nrec;
};

/*
 * Serve the VMM's uffd (h) for regions r[0..n) of kinds maps[0..n) until the VMM exits (its
 * pidfd fires, or without one its connection hangs up, or its memory disappears under an
 * install) or *o->stop.
 * A fault that cannot be served (the file cannot be read) is poisoned, so the VMM's access gets
 * SIGBUS instead of hanging, and serving goes on. Returns 0, or -errno when serving itself
 * cannot go on (out of memory, the uffd fails).
 */
int pi_fc_serve(struct pi_fc_handoff *h, const struct pi_fc_region *r, unsigned n,
		const struct pi_fc_peer_map *maps, const struct pi_fc_serve_opts *o,
		struct pi_fc_serve_stats *st);

/* Send json and fds (fds[0] the uffd) as one message, what Firecracker does. For tests and
 * tools that play the VMM. Returns 0 or -errno. */
int pi_fc_send(int sock, const char *json, size_t len, const int *fds, unsigned nfds);

/* ---- rawsrc.c: raw memory images ---- */

/* The raw image source and the remapping source are public: include/pagein-vmm.h. */

/* ---- wsfile.c: working-set files (docs/working-set.md) ---- */

#define PI_WS_ZERO 1u /* run flag: the pages are all zero, no bytes stored */

/* One run of a working set: npages pages from gpa, first touched in this order. */
struct pi_ws_run {
	uint64_t gpa;
	uint32_t npages;
	uint32_t flags;  /* PI_WS_ZERO */
};

/* A working set read back (pi_ws_open). */
struct pi_ws {
	int fd;
	uint64_t page_size;  /* bytes per page of the runs */
	uint64_t image_id;   /* identity of the image it was recorded from */
	uint32_t nruns;
	struct pi_ws_run *runs;
	uint64_t npages;     /* pages in all runs */
	uint64_t data_off;   /* file offset of the page bytes */
	uint64_t data_len;   /* bytes of page data (non-zero runs, in touch order) */
	uint64_t data_digest; /* XXH3-64 of those bytes */
};

/*
 * Write a working set: the pages at gpas[0..n) (page-aligned, first-touch order, duplicates
 * dropped) of page_size bytes, their bytes fetched from src, to path. Adjacent pages in order
 * become one run; all-zero pages are runs without bytes. Returns 0 or -errno (err says why).
 */
int pi_ws_write(const char *path, const uint64_t *gpas, uint64_t n, uint64_t page_size,
		uint64_t image_id, struct pagein_source *src, char *err, size_t errlen);

/* Open and check a working set's header and run table. Returns 0 and *ws (pi_ws_close), or
 * -EINVAL (not a working-set file, corrupt: err says what), -ENODATA (truncated), -errno. */
int pi_ws_open(const char *path, struct pi_ws *ws, char *err, size_t errlen);

/* Read every page byte in one sequential read into buf (ws->data_len bytes) and check the
 * digest. Returns 0, -EIO (digest mismatch or short read), -errno. */
int pi_ws_read_data(struct pi_ws *ws, void *buf, char *err, size_t errlen);

void pi_ws_close(struct pi_ws *ws);

#endif /* PAGEIN_VMM_H */
