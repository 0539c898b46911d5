// SPDX-License-Identifier: MIT
/*
 * wsfile.c - working-set files (docs/working-set.md): the pages a restore touched first, in touch
 * order, as runs of adjacent pages, followed by those pages' bytes laid out in the same order
 * (REAP's layout), so a later restore prefetches the whole set with one sequential read. All-zero
 * pages are runs without bytes. A header digest, a data digest and the image's identity keep a
 * stale or damaged file from installing wrong bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"
#include "vmm.h"

#define WS_MAGIC "PAGEINWS"
#define WS_VERSION 1
#define WS_ALIGN 4096ull         /* page data starts on this boundary (O_DIRECT-friendly) */
#define WS_MAX_RUNS (1u << 26)   /* sanity bound on the run table (1 GiB of entries) */
#define WS_CHUNK 64              /* pages fetched from the source at once */
#define WS_WBUF (1u << 20)       /* write buffer */

/* On-disk header, little-endian. */
struct ws_hdr {
	char magic[8];
	uint32_t version;
	uint32_t page_size;   /* bytes per page: 4096 or 2 MiB */
	uint64_t image_id;    /* identity of the image the set was recorded from */
	uint32_t nruns;
	uint32_t flags;       /* reserved, 0 */
	uint64_t npages;      /* pages in all runs */
	uint64_t data_off;    /* file offset of the page bytes, WS_ALIGN-aligned */
	uint64_t data_len;    /* bytes of page data */
	uint64_t data_digest; /* XXH3-64 of the page data */
	uint64_t hdr_digest;  /* XXH3-64 of this header (this field 0) and the run table */
	uint64_t reserved;
};

/* On-disk run, little-endian. */
struct ws_run_disk {
	uint64_t gpa;
	uint32_t npages;
	uint32_t flags; /* PI_WS_ZERO */
};

_Static_assert(sizeof(struct ws_hdr) == 80, "working-set header is 80 bytes");
_Static_assert(sizeof(struct ws_run_disk) == 16, "working-set run is 16 bytes");
_Static_assert(sizeof(struct ws_run_disk) == sizeof(struct pi_ws_run), "same layout in memory");

static uint64_t hdr_digest(const struct ws_hdr *h, const void *runs, uint32_t nruns)
{
	struct ws_hdr c = *h;

	c.hdr_digest = 0;
	return XXH3_64bits_withSeed(runs, (size_t)nruns * sizeof(struct ws_run_disk),
				    XXH3_64bits(&c, sizeof(c)));
}

static int pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;
	ssize_t w;

	while (len) {
		w = pwrite(fd, p, len, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static bool is_zero(const uint8_t *p, uint64_t len)
{
	uint64_t i;

	for (i = 0; i < len; i += 8)
		if (*(const uint64_t *)(p + i))
			return false;
	return true;
}

/* Drop repeated pages, keeping each page's first place. Returns the new count. */
static uint64_t dedup(uint64_t *g, uint64_t n)
{
	uint64_t cap = 16, i, k = 0, *set;

	while (cap < n * 2)
		cap *= 2;
	set = calloc(cap, sizeof(*set));
	if (!set)
		return UINT64_MAX;
	for (i = 0; i < n; i++) {
		uint64_t key = g[i] + 1, h = (g[i] * 0x9e3779b97f4a7c15ull) >> 20 & (cap - 1);

		while (set[h] && set[h] != key)
			h = (h + 1) & (cap - 1);
		if (set[h])
			continue;
		set[h] = key;
		g[k++] = g[i];
	}
	free(set);
	return k;
}

/* The writer's state. */
struct wsw {
	int fd;
	uint64_t page_size;
	struct ws_run_disk *runs;
	uint32_t nruns, cap;
	uint8_t *buf;          /* page data not yet written */
	uint64_t buf_len;
	uint64_t data_off, data_len;
	XXH3_state_t *xx;
};

static int add_page(struct wsw *w, uint64_t gpa, const uint8_t *bytes, bool zero)
{
	struct ws_run_disk *last = w->nruns ? &w->runs[w->nruns - 1] : NULL;
	uint32_t flags = zero ? PI_WS_ZERO : 0;
	int ret;

	if (last && last->flags == flags && last->npages < UINT32_MAX &&
	    last->gpa + last->npages * w->page_size == gpa) {
		last->npages++;
	} else {
		if (w->nruns == w->cap) {
			struct ws_run_disk *r;

			if (w->cap >= WS_MAX_RUNS)
				return -E2BIG;
			r = realloc(w->runs, sizeof(*r) * w->cap * 2);
			if (!r)
				return -ENOMEM;
			w->runs = r;
			w->cap *= 2;
		}
		w->runs[w->nruns++] = (struct ws_run_disk){ gpa, 1, flags };
	}
	if (zero)
		return 0;
	if (w->buf_len + w->page_size > WS_WBUF) {
		ret = pwrite_all(w->fd, w->buf, w->buf_len, w->data_off + w->data_len - w->buf_len);
		if (ret < 0)
			return ret;
		w->buf_len = 0;
	}
	memcpy(w->buf + w->buf_len, bytes, w->page_size);
	XXH3_64bits_update(w->xx, bytes, w->page_size);
	w->buf_len += w->page_size;
	w->data_len += w->page_size;
	return 0;
}

/* Fetch n adjacent pages from gpa (falling back to one page at a time when the range crosses
 * source regions) and add them. */
static int add_chunk(struct wsw *w, struct pagein_source *src, uint64_t gpa, uint64_t n,
		     uint8_t *tmp)
{
	uint64_t zm = 0, i;
	int ret;

	ret = src->ops.fetch(src->ctx, gpa, tmp, n * w->page_size, w->page_size, &zm, 0);
	if (ret == -EINVAL && n > 1) {
		for (i = 0; i < n; i++) {
			ret = add_chunk(w, src, gpa + i * w->page_size, 1, tmp);
			if (ret < 0)
				return ret;
		}
		return 0;
	}
	if (ret < 0)
		return ret;
	for (i = 0; i < n; i++) {
		const uint8_t *p = tmp + i * w->page_size;
		bool zero = (zm >> i & 1) || is_zero(p, w->page_size);

		ret = add_page(w, gpa + i * w->page_size, p, zero);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pi_ws_write(const char *path, const uint64_t *gpas, uint64_t n, uint64_t page_size,
		uint64_t image_id, struct pagein_source *src, char *err, size_t errlen)
{
	struct wsw w = { .fd = -1, .page_size = page_size, .cap = 64 };
	char tmp_path[4096];
	struct ws_hdr h;
	uint64_t *g = NULL, i, j;
	uint8_t *tmp = NULL;
	int ret;

	if (page_size != 4096 && page_size != 2ull << 20)
		return pi_say(err, errlen, -EINVAL, "working set: page size %llu is not 4096 or 2 MiB",
			   (unsigned long long)page_size);
	if (snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", path) >= (int)sizeof(tmp_path))
		return pi_say(err, errlen, -ENAMETOOLONG, "working set: path too long");
	g = malloc((n ? n : 1) * sizeof(*g));
	w.runs = malloc(sizeof(*w.runs) * w.cap);
	w.buf = malloc(WS_WBUF > page_size ? WS_WBUF : page_size);
	tmp = malloc(WS_CHUNK * page_size);
	w.xx = XXH3_createState();
	if (!g || !w.runs || !w.buf || !tmp || !w.xx) {
		ret = pi_say(err, errlen, -ENOMEM, "working set: out of memory");
		goto out;
	}
	XXH3_64bits_reset(w.xx);
	for (i = 0; i < n; i++) {
		if (gpas[i] % page_size) {
			ret = pi_say(err, errlen, -EINVAL, "working set: page 0x%llx is not aligned to "
				  "%llu", (unsigned long long)gpas[i], (unsigned long long)page_size);
			goto out;
		}
		g[i] = gpas[i];
	}
	n = dedup(g, n);
	if (n == UINT64_MAX) {
		ret = pi_say(err, errlen, -ENOMEM, "working set: out of memory");
		goto out;
	}
	w.fd = open(tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w.fd < 0) {
		ret = pi_say(err, errlen, -errno, "cannot create %s: %s", tmp_path, strerror(errno));
		goto out;
	}
	/* the run table's size is known only at the end (zero pages split runs), so the data is
	 * staged right after a one-block table and moved up in the rare case the table is larger */
	w.data_off = WS_ALIGN;
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && j - i < WS_CHUNK && g[j] == g[j - 1] + page_size; j++)
			;
		ret = add_chunk(&w, src, g[i], j - i, tmp);
		if (ret < 0) {
			pi_say(err, errlen, ret, "working set: cannot read page 0x%llx from the image: "
			    "%s", (unsigned long long)g[i], strerror(-ret));
			goto out_unlink;
		}
	}
	if (w.buf_len) {
		ret = pwrite_all(w.fd, w.buf, w.buf_len, w.data_off + w.data_len - w.buf_len);
		if (ret < 0)
			goto out_write;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, WS_MAGIC, 8);
	h.version = WS_VERSION;
	h.page_size = (uint32_t)page_size;
	h.image_id = image_id;
	h.nruns = w.nruns;
	h.npages = n;
	h.data_len = w.data_len;
	h.data_digest = XXH3_64bits_digest(w.xx);
	h.data_off = (sizeof(h) + (uint64_t)w.nruns * sizeof(*w.runs) + WS_ALIGN - 1) / WS_ALIGN *
		     WS_ALIGN;
	if (h.data_off != w.data_off && w.data_len) {
		/* the table outgrew the first 4 KiB: move the data up (rare: > 250 runs) */
		uint64_t k, step = WS_WBUF;

		for (k = w.data_len; k > 0;) {
			uint64_t len = k < step ? k : step;
			ssize_t got;

			k -= len;
			got = pread(w.fd, w.buf, len, (off_t)(w.data_off + k));
			if (got != (ssize_t)len) {
				ret = got < 0 ? -errno : -EIO;
				goto out_write;
			}
			ret = pwrite_all(w.fd, w.buf, len, h.data_off + k);
			if (ret < 0)
				goto out_write;
		}
	}
	h.hdr_digest = hdr_digest(&h, w.runs, w.nruns);
	ret = pwrite_all(w.fd, &h, sizeof(h), 0);
	if (!ret)
		ret = pwrite_all(w.fd, w.runs, (uint64_t)w.nruns * sizeof(*w.runs), sizeof(h));
	if (!ret && ftruncate(w.fd, (off_t)(h.data_off + h.data_len)) < 0)
		ret = -errno;
	if (!ret && fsync(w.fd) < 0)
		ret = -errno;
	if (ret < 0)
		goto out_write;
	ret = close(w.fd) < 0 ? -errno : 0;
	w.fd = -1;
	if (ret < 0)
		goto out_write;
	if (rename(tmp_path, path) < 0) {
		ret = pi_say(err, errlen, -errno, "cannot rename %s to %s: %s", tmp_path, path,
			  strerror(errno));
		goto out_unlink;
	}
	ret = 0;
	goto out;

out_write:
	pi_say(err, errlen, ret, "cannot write %s: %s", tmp_path, strerror(-ret));
out_unlink:
	unlink(tmp_path);
out:
	if (w.fd >= 0)
		close(w.fd);
	XXH3_freeState(w.xx);
	free(tmp);
	free(w.buf);
	free(w.runs);
	free(g);
	return ret;
}

int pi_ws_open(const char *path, struct pi_ws *ws, char *err, size_t errlen)
{
	struct ws_hdr h;
	struct stat st;
	uint64_t pages = 0, data_pages = 0;
	ssize_t got;
	uint32_t i;
	int ret;

	memset(ws, 0, sizeof(*ws));
	ws->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (ws->fd < 0)
		return pi_say(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
	got = pread(ws->fd, &h, sizeof(h), 0);
	if (got < 0) {
		ret = pi_say(err, errlen, -errno, "cannot read %s: %s", path, strerror(errno));
		goto err;
	}
	if ((size_t)got < sizeof(h) || memcmp(h.magic, WS_MAGIC, 8)) {
		ret = pi_say(err, errlen, -EINVAL, "%s is not a pagein working-set file", path);
		goto err;
	}
	if (h.version != WS_VERSION || (h.page_size != 4096 && h.page_size != 2u << 20) ||
	    h.nruns > WS_MAX_RUNS || h.data_off % WS_ALIGN ||
	    h.data_off < sizeof(h) + (uint64_t)h.nruns * sizeof(struct ws_run_disk) ||
	    h.data_off + h.data_len < h.data_off) {
		ret = pi_say(err, errlen, -EINVAL, "%s: unsupported version %u or corrupt header", path,
			  h.version);
		goto err;
	}
	ws->runs = malloc(((size_t)h.nruns ? h.nruns : 1) * sizeof(*ws->runs));
	if (!ws->runs) {
		ret = pi_say(err, errlen, -ENOMEM, "out of memory");
		goto err;
	}
	got = pread(ws->fd, ws->runs, (size_t)h.nruns * sizeof(*ws->runs), sizeof(h));
	if (got != (ssize_t)((size_t)h.nruns * sizeof(*ws->runs))) {
		ret = pi_say(err, errlen, -ENODATA, "%s is truncated inside its run table", path);
		goto err;
	}
	if (hdr_digest(&h, ws->runs, h.nruns) != h.hdr_digest) {
		ret = pi_say(err, errlen, -EINVAL, "%s: header or run table damaged (digest mismatch)",
			  path);
		goto err;
	}
	for (i = 0; i < h.nruns; i++) {
		const struct pi_ws_run *r = &ws->runs[i];

		if (!r->npages || r->gpa % h.page_size || (r->flags & ~PI_WS_ZERO) ||
		    r->gpa + (uint64_t)r->npages * h.page_size < r->gpa) {
			ret = pi_say(err, errlen, -EINVAL, "%s: run %u is malformed", path, i);
			goto err;
		}
		pages += r->npages;
		if (!(r->flags & PI_WS_ZERO))
			data_pages += r->npages;
	}
	if (pages != h.npages || data_pages * h.page_size != h.data_len) {
		ret = pi_say(err, errlen, -EINVAL, "%s: run table and header disagree", path);
		goto err;
	}
	if (fstat(ws->fd, &st) < 0) {
		ret = pi_say(err, errlen, -errno, "cannot stat %s: %s", path, strerror(errno));
		goto err;
	}
	if ((uint64_t)st.st_size < h.data_off + h.data_len) {
		ret = pi_say(err, errlen, -ENODATA, "%s is truncated: %llu bytes, its header says %llu",
			  path, (unsigned long long)st.st_size,
			  (unsigned long long)(h.data_off + h.data_len));
		goto err;
	}
	ws->page_size = h.page_size;
	ws->image_id = h.image_id;
	ws->nruns = h.nruns;
	ws->npages = h.npages;
	ws->data_off = h.data_off;
	ws->data_len = h.data_len;
	ws->data_digest = h.data_digest;
	return 0;

err:
	pi_ws_close(ws);
	return ret;
}

int pi_ws_read_data(struct pi_ws *ws, void *buf, char *err, size_t errlen)
{
	uint64_t done = 0;
	uint8_t *p = buf;
	ssize_t got;

	/* one sequential read of the whole set: the point of laying pages out in touch order */
	while (done < ws->data_len) {
		got = pread(ws->fd, p + done, ws->data_len - done, (off_t)(ws->data_off + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return pi_say(err, errlen, -errno, "working set read: %s", strerror(errno));
		if (got == 0)
			return pi_say(err, errlen, -EIO, "working set shrank while being read");
		done += (uint64_t)got;
	}
	if (XXH3_64bits(buf, ws->data_len) != ws->data_digest)
		return pi_say(err, errlen, -EIO, "working set page data damaged (digest mismatch)");
	return 0;
}

void pi_ws_close(struct pi_ws *ws)
{
	if (ws->fd >= 0)
		close(ws->fd);
	free(ws->runs);
	ws->runs = NULL;
	ws->fd = -1;
}

int pagein_ws_write(const char *path, const uint64_t *addrs, uint64_t n, uint64_t page_size,
		    uint64_t image_id, struct pagein_source *src, char *err, size_t errlen)
{
	if (!path || (!addrs && n) || !src)
		return -EINVAL;
	return pi_ws_write(path, addrs, n, page_size, image_id, src, err, errlen);
}

static uint64_t ns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Supply n pages from gpa (zero or from data), split where the range crosses regions (a run
 * recorded over two adjacent regions). Returns pages installed or -errno. */
static int supply(struct pagein_space *space, uint64_t gpa, const uint8_t *data, uint64_t n,
		  uint64_t ps, bool zero)
{
	uint64_t zm = zero ? ~0ull : 0, k;
	int ret, sum = 0;

	while (n) {
		struct pi_region *r = pi_region_find(space, gpa);

		if (!r)
			return -EINVAL; /* outside the space: not this image's layout */
		k = (r->gpa + r->size - gpa) / ps;
		k = k < n ? k : n;
		ret = pagein_supply(space, gpa, data, k * ps, zero ? &zm : NULL);
		if (ret < 0)
			return ret;
		sum += ret;
		gpa += k * ps;
		data += zero ? 0 : k * ps;
		n -= k;
	}
	return sum;
}

int pagein_ws_prefetch(struct pagein_space *space, const char *path, uint64_t image_id,
		       struct pagein_ws_stats *st, char *err, size_t errlen)
{
	struct pagein_ws_stats s = { .size = sizeof(s) };
	struct pi_ws ws;
	uint8_t *data = NULL;
	uint64_t t, off = 0, k;
	uint32_t r;
	int ret;

	if (!space || !path)
		return -EINVAL;
	ret = pi_ws_open(path, &ws, err, errlen);
	if (ret < 0)
		return ret;
	s.pages = ws.npages;
	if (ws.image_id != image_id) {
		ret = pi_say(err, errlen, -ESTALE, "%s was recorded from another image: not used",
			  path);
		goto out;
	}
	/* at least one page, so zero runs have a valid pointer to pass */
	data = malloc(ws.data_len ? ws.data_len : ws.page_size);
	if (!data) {
		ret = pi_say(err, errlen, -ENOMEM, "out of memory for %llu bytes of working set",
			  (unsigned long long)ws.data_len);
		goto out;
	}
	t = ns_now();
	ret = pi_ws_read_data(&ws, data, err, errlen);
	if (ret < 0)
		goto out;
	s.bytes_read = ws.data_len;
	s.read_ns = ns_now() - t;
	t = ns_now();
	for (r = 0; r < ws.nruns; r++) {
		const struct pi_ws_run *run = &ws.runs[r];
		bool zero = run->flags & PI_WS_ZERO;

		/* batches of 64 pages: a fault that comes meanwhile waits for one batch at most */
		for (k = 0; k < run->npages; k += 64) {
			uint64_t n = run->npages - k < 64 ? run->npages - k : 64;

			ret = supply(space, run->gpa + k * ws.page_size,
				     zero ? data : data + off + k * ws.page_size, n, ws.page_size,
				     zero);
			if (ret < 0) {
				pi_say(err, errlen, ret, "installing the working set at 0x%llx: %s",
				    (unsigned long long)(run->gpa + k * ws.page_size),
				    strerror(-ret));
				goto out;
			}
			s.installed += (uint64_t)ret;
		}
		if (!zero)
			off += run->npages * ws.page_size;
	}
	s.install_ns = ns_now() - t;
	s.skipped = s.pages - s.installed;
	ret = 0;
out:
	if (st) {
		uint32_t want = st->size;

		memcpy(st, &s, want < sizeof(s) ? want : sizeof(s));
		st->size = want;
	}
	free(data);
	pi_ws_close(&ws);
	return ret;
}

int pagein_ws_record_start(struct pagein_space *space, uint64_t max_pages)
{
	struct pi_ws_rec *rec, *none = NULL;
	uint64_t k;

	if (!max_pages)
		max_pages = space->total_pages;
	if (!max_pages || max_pages > (1ull << 40))
		return -EINVAL;
	if (atomic_load(&space->ws_rec))
		return -EALREADY;
	rec = malloc(sizeof(*rec) + max_pages * sizeof(rec->gpa[0]));
	if (!rec)
		return -ENOMEM;
	atomic_init(&rec->n, 0);
	atomic_init(&rec->cap, max_pages);
	for (k = 0; k < max_pages; k++)
		atomic_init(&rec->gpa[k], UINT64_MAX);
	/* published with release order: an appender that sees it sees it initialised */
	if (!atomic_compare_exchange_strong(&space->ws_rec, &none, rec)) {
		free(rec);
		return -EALREADY;
	}
	return 0;
}

void pagein_ws_record_stop(struct pagein_space *space)
{
	struct pi_ws_rec *rec = atomic_load(&space->ws_rec);
	uint64_t n, cap;

	if (!rec)
		return;
	/* keep what was appended so far, drop what comes later */
	n = atomic_load(&rec->n);
	cap = atomic_load(&rec->cap);
	while (n < cap && !atomic_compare_exchange_weak(&rec->cap, &cap, n))
		;
}

int pagein_ws_record_save(struct pagein_space *space, const char *path, uint64_t image_id,
			  char *err, size_t errlen)
{
	struct pi_ws_rec *rec = atomic_load(&space->ws_rec);
	unsigned nr = atomic_load(&space->nregions), i;
	uint64_t n, k, m = 0, ps, *gpas;
	int ret;

	if (!rec)
		return pi_say(err, errlen, -ENOENT, "this space is not recording a working set");
	if (!nr || !space->src)
		return pi_say(err, errlen, -EINVAL, "the space has no region or no source");
	ps = space->regions[0].page_size;
	for (i = 1; i < nr; i++)
		if (space->regions[i].page_size != ps)
			return pi_say(err, errlen, -EINVAL, "a working set has one page size; this "
				   "space mixes %llu and %llu", (unsigned long long)ps,
				   (unsigned long long)space->regions[i].page_size);
	n = atomic_load(&rec->n);
	k = atomic_load(&rec->cap);
	n = n < k ? n : k;
	gpas = malloc((n ? n : 1) * sizeof(*gpas));
	if (!gpas)
		return pi_say(err, errlen, -ENOMEM, "out of memory");
	for (k = 0; k < n; k++) {
		uint64_t g = atomic_load_explicit(&rec->gpa[k], memory_order_relaxed);

		if (g != UINT64_MAX) /* an append still being written: it was counted first */
			gpas[m++] = g;
	}
	ret = pi_ws_write(path, gpas, m, ps, image_id, space->src, err, errlen);
	free(gpas);
	return ret;
}
