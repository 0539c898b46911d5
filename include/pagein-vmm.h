/* SPDX-License-Identifier: MIT */
/*
 * pagein-vmm.h - pagein where VMMs already are: raw memory images (a flat file plus a layout),
 * and the external page-fault handler of a Firecracker-style VMM (its userfaultfd and region list
 * received over a Unix socket; docs/firecracker.md), with working-set record and prefetch
 * (docs/working-set.md). Every function returns 0 (or a count) or -errno.
 */
#ifndef PAGEIN_VMM_H_PUBLIC
#define PAGEIN_VMM_H_PUBLIC

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pagein.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Raw memory images
 */

#define PAGEIN_RAW_MAX_REGIONS 64 /* regions one layout may have */

/* One region of a raw image: guest (or space) addresses [gpa, gpa+size) are the file's bytes
 * [offset, offset+size). */
struct pagein_raw_region {
	uint64_t gpa;    /* first address of the region */
	uint64_t size;   /* bytes, a multiple of 4096 */
	uint64_t offset; /* file offset of its first byte, a multiple of 4096 */
	uint64_t flags;  /* reserved, 0 */
};

/*
 * Parse a layout "GPA+SIZE[@OFFSET][,...]" into out[0..max): numbers decimal or 0x hex, sizes
 * and offsets with an optional K, M, G or T suffix (powers of 1024). A region without @OFFSET
 * starts in the file right after the previous one (the first at 0), which is how Firecracker
 * lays out its memory file. Returns the region count, -EINVAL (err, if not NULL, says where),
 * -E2BIG (more than max). Any thread.
 */
int pagein_raw_layout_parse(const char *spec, struct pagein_raw_region *out, unsigned max,
			    char *err, size_t errlen);

/*
 * A source over the flat memory file at path laid out as layout[0..n). Checks up front that
 * every gpa, size and offset is 4 KiB-aligned, that no two regions overlap, and that the file
 * holds every byte of the layout (-ENODATA naming the region when it is shorter). Holes and
 * all-zero pages are installed as zero pages. err (if not NULL) gets the reason of a failure.
 * Returns 0 and *out (free with pagein_source_free), -EINVAL, -ENODATA, -E2BIG, or open's errno.
 */
int pagein_source_raw_new(const char *path, const struct pagein_raw_region *layout, unsigned n,
			  char *err, size_t errlen, struct pagein_source **out);

/* The identity of a raw source's image (its file's device, inode, size and mtime, and the
 * layout), as recorded in working sets; 0 for other sources. */
uint64_t pagein_source_raw_image_id(struct pagein_source *src);

/*
 * A source whose addresses are another source's, moved: [map[i].offset, +map[i].size) of the
 * new source is [map[i].gpa, +size) of inner. For serving a VMM that knows its regions by
 * memory-file offset (Firecracker) from a snapshot or a page server. inner is not owned and
 * must outlive the new source. Returns 0 and *out, -EINVAL (inner does not hold a region),
 * -ENOMEM.
 */
int pagein_source_remap_new(struct pagein_source *inner, const struct pagein_raw_region *map,
			    unsigned n, struct pagein_source **out);

/* ---------------------------------------------------------------------------------------------
 * Working sets (file format: docs/working-set.md)
 */

/*
 * Write a working set: the pages at addrs[0..n) (page_size-aligned, in first-touch order;
 * repeats are dropped) with their bytes read from src, and image_id, the identity of the image
 * (pagein_source_raw_image_id, or any stable 64-bit name). Written to a temporary file, then
 * renamed over path. Returns 0 or -errno (err, if not NULL, says why). Any thread.
 */
int pagein_ws_write(const char *path, const uint64_t *addrs, uint64_t n, uint64_t page_size,
		    uint64_t image_id, struct pagein_source *src, char *err, size_t errlen);

/*
 * Record the working set of space: from now on every page made present for a touch (a fault,
 * with its fault-around neighbours, or an accessor; not the background fill) is noted in order,
 * up to max_pages (0: the space's page count). Cheap enough to leave on: one atomic add per
 * install, allowed on the SIGBUS path. Returns 0, -EALREADY, -ENOMEM. Any thread.
 */
int pagein_ws_record_start(struct pagein_space *space, uint64_t max_pages);

/* Stop recording: what was noted so far is kept for pagein_ws_record_save, later touches are
 * not (e.g. a verification pass at the end of a restore). Idempotent; any thread. */
void pagein_ws_record_stop(struct pagein_space *space);

/*
 * Write what space has recorded so far as a working set at path (bytes read from the space's
 * source; image_id as for pagein_ws_write). Recording goes on. Every region must have the same
 * page size. Returns 0, -ENOENT (not recording), -EINVAL, or the -errno of the write (err says
 * why).
 */
int pagein_ws_record_save(struct pagein_space *space, const char *path, uint64_t image_id,
			  char *err, size_t errlen);

struct pagein_ws_stats {
	uint32_t size;        /* set by the caller to sizeof(struct pagein_ws_stats) */
	uint32_t flags;       /* reserved, 0 */
	uint64_t pages;       /* pages in the working set */
	uint64_t installed;   /* of those, installed by the prefetch */
	uint64_t skipped;     /* present already, in flight (a fault brings them) or frozen */
	uint64_t bytes_read;  /* the one read of the set's page data */
	uint64_t read_ns;     /* its time */
	uint64_t install_ns;  /* the installs' time */
};

/*
 * Prefetch the working set at path into space (started): read its page data in one sequential
 * read, check it (digests, and that it was recorded from image_id: -ESTALE otherwise), then
 * install it in touch order with pagein_supply, which leaves alone every page present, being
 * fetched by a fault, or frozen (faults keep priority). Blocks: run it on a thread of its own
 * beside the workload. st (may be NULL; st->size set) gets the counters. Returns 0, -ESTALE,
 * -EINVAL / -ENODATA / -EIO (a damaged file: err says what; nothing was installed), -ESHUTDOWN,
 * or the -errno of an install.
 */
int pagein_ws_prefetch(struct pagein_space *space, const char *path, uint64_t image_id,
		       struct pagein_ws_stats *st, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * The external page-fault handler of a Firecracker-style VMM
 */

struct pagein_handler; /* one listening socket, one VMM served through its own userfaultfd */

struct pagein_handler_config {
	uint32_t size;            /* sizeof(struct pagein_handler_config): set by config_init */
	uint32_t flags;           /* reserved, 0 */
	const char *socket;       /* Unix socket path to listen on (required); a stale socket is
	                           * replaced, any other file there is an error */
	unsigned timeout_ms;      /* longest one source read may take (default 10000) */
	bool check_regions;       /* check the region list against the VMM's own mappings
	                           * (/proc/PID/smaps; default true) */
	const char *record_ws;    /* write the pages the VMM touched, in first-touch order, to
	                           * this working-set file when it exits (NULL: no) */
	const char *prefetch_ws;  /* install this working set ahead of the VMM's faults (NULL:
	                           * no; not together with record_ws) */
	void (*log)(void *arg, int level, const char *msg); /* NULL = silent */
	void *log_arg;
};

/* Fill cfg with the defaults above. */
void pagein_handler_config_init(struct pagein_handler_config *cfg);

/* Create a handler and listen on cfg->socket. Returns 0 and *out, -EINVAL (no socket, or both
 * working-set options), or the -errno of socket/bind/listen (logged with the path). */
int pagein_handler_new(const struct pagein_handler_config *cfg, struct pagein_handler **out);

/*
 * Wait up to timeout_ms (< 0: forever) for a VMM to connect and hand over its userfaultfd and
 * region list; check both (docs/firecracker.md §3). Returns the number of regions, or
 * -ETIMEDOUT, -ECONNRESET (the VMM closed early), -ENOMSG (no fd), -EBADF (not a userfaultfd),
 * -EINVAL (the region list is malformed or does not match the VMM's registrations); the reason
 * is logged and kept for pagein_handler_error(). Once per handler.
 */
int pagein_handler_accept(struct pagein_handler *h, int timeout_ms);

/* One region as the VMM described it (after accept). */
struct pagein_vmm_region {
	uint64_t base;      /* base_host_virt_addr: its address in the VMM */
	uint64_t size;      /* bytes */
	uint64_t offset;    /* where its bytes start in the memory file */
	uint64_t page_size; /* 4096 or 2 MiB */
	uint32_t backing;   /* enum pagein_backing of the VMM's mapping (ANON when unchecked) */
	uint32_t flags;     /* reserved, 0 */
};

/* The VMM's regions: up to max into out; returns the region count, or -ENOTCONN before accept. */
int pagein_handler_regions(struct pagein_handler *h, struct pagein_vmm_region *out, unsigned max);

/* The VMM's pid (from SO_PEERCRED), or -ENOTCONN. */
int pagein_handler_pid(struct pagein_handler *h);

/*
 * Serve the VMM's faults from src, addressed by memory-file offset, until the VMM exits or
 * pagein_handler_stop(); image_id is the image's identity for working sets
 * (pagein_source_raw_image_id, or any stable 64-bit name of the image). Blocks the calling
 * thread. A fault that cannot be served is poisoned (the VMM gets SIGBUS there) and serving goes
 * on. Writes cfg->record_ws at the end. Returns 0, -ENOTCONN (not accepted), -EALREADY, or the
 * -errno of what stopped serving (logged).
 */
int pagein_handler_serve(struct pagein_handler *h, struct pagein_source *src, uint64_t image_id);

/* End pagein_handler_serve soon (within 100 ms). Async-signal-safe; any thread. */
void pagein_handler_stop(struct pagein_handler *h);

#define PAGEIN_HANDLER_VMM_EXITED 1u /* stats.flags: serving ended because the VMM exited */
#define PAGEIN_HANDLER_WS_REFUSED 2u /* stats.flags: the working set was not used */

struct pagein_handler_stats {
	uint32_t size;             /* set by the caller to sizeof(struct pagein_handler_stats) */
	uint32_t flags;            /* PAGEIN_HANDLER_* */
	uint64_t faults;           /* fault messages served (duplicates included) */
	uint64_t pages_demand;     /* pages installed for faults */
	uint64_t pages_prefetch;   /* pages installed by the working-set prefetch */
	uint64_t pages_zero;       /* of all installs, zero pages */
	uint64_t rezero;           /* faults on discarded (balloon) pages, answered with zeros */
	uint64_t fault_errors;     /* faults that could not be served: poisoned */
	uint64_t events_remove;    /* REMOVE events (balloon discards) */
	uint64_t eexist, eagain;   /* kernel races met */
	uint64_t wakes;            /* UFFDIO_WAKEs of prefetch batches */
	uint64_t bytes_read;       /* from the source and the working set */
	uint64_t ws_pages;         /* pages written to record_ws */
	uint64_t elapsed_ns;       /* serving time */
	uint64_t lat_hist[PAGEIN_HIST_BUCKETS]; /* fault service time, log2 ns buckets */
};

/* Copy the counters of the last pagein_handler_serve into *st (up to st->size bytes). */
void pagein_handler_stats_get(struct pagein_handler *h, struct pagein_handler_stats *st);

/* The reason of the latest failure, or "" (valid until the next call on h). */
const char *pagein_handler_error(struct pagein_handler *h);

/* Close the connection, the VMM's fds and the socket (its file is removed), and free h. */
void pagein_handler_free(struct pagein_handler *h);

#ifdef __cplusplus
}
#endif

#endif /* PAGEIN_VMM_H_PUBLIC */
