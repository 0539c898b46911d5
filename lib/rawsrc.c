// SPDX-License-Identifier: MIT
/*
 * rawsrc.c - the raw image source: a file holding guest memory laid out flat (Firecracker's
 * memory snapshot file, a QEMU memory-backend file) plus a layout of regions (gpa, size, file
 * offset). The layout is checked against the file up front; holes (SEEK_DATA) and all-zero
 * pages are handed to the engine as zero pages, so they cost neither a copy nor a page of RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"
#include "vmm.h"

/* A number with an optional binary suffix; *end gets the first byte after it. */
static int parse_num(const char *s, const char **end, uint64_t *v)
{
	unsigned base = 10, shift = 0, d;
	const char *p = s;

	*v = 0;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (s = p;; p++) {
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			break;
		if (*v > (UINT64_MAX - d) / base)
			return -ERANGE;
		*v = *v * base + d;
	}
	if (p == s)
		return -EINVAL;
	switch (*p) {
	case 'K': case 'k': shift = 10; break;
	case 'M': case 'm': shift = 20; break;
	case 'G': case 'g': shift = 30; break;
	case 'T': case 't': shift = 40; break;
	}
	if (shift) {
		if (*v > UINT64_MAX >> shift)
			return -ERANGE;
		*v <<= shift;
		p++;
	}
	*end = p;
	return 0;
}

int pagein_raw_layout_parse(const char *spec, struct pagein_raw_region *out, unsigned max, char *err,
			size_t errlen)
{
	const char *p = spec, *q;
	uint64_t next_off = 0;
	unsigned n = 0;

	if (!*p)
		return pi_say(err, errlen, -EINVAL, "empty layout: expected GPA+SIZE[@OFFSET],...");
	for (;;) {
		struct pagein_raw_region r = { 0, 0, 0, 0 };

		if (n == max)
			return pi_say(err, errlen, -E2BIG, "layout: more than %u regions", max);
		if (parse_num(p, &q, &r.gpa) || *q != '+')
			return pi_say(err, errlen, -EINVAL, "layout, at \"%s\": expected GPA+SIZE", p);
		p = q + 1;
		if (parse_num(p, &q, &r.size))
			return pi_say(err, errlen, -EINVAL, "layout, at \"%s\": expected a size", p);
		p = q;
		r.offset = next_off;
		if (*p == '@') {
			p++;
			if (parse_num(p, &q, &r.offset))
				return pi_say(err, errlen, -EINVAL, "layout, at \"%s\": expected a file "
					   "offset after '@'", p);
			p = q;
		}
		if (r.offset + r.size < r.offset || r.gpa + r.size < r.gpa)
			return pi_say(err, errlen, -EINVAL, "layout region %u wraps around", n);
		next_off = r.offset + r.size;
		out[n++] = r;
		if (!*p)
			return (int)n;
		if (*p != ',')
			return pi_say(err, errlen, -EINVAL, "layout, at \"%s\": expected ',' or the end",
				   p);
		p++;
	}
}

/* The raw source's context. */
struct raw_src {
	int fd;
	unsigned n;
	struct pagein_raw_region r[PAGEIN_RAW_MAX_REGIONS];
	uint64_t image_id;
};

static bool page_zero(const uint8_t *p, uint64_t len)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t i, acc = 0;

	for (i = 0; i < len / 8; i += 8) {
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3];
		acc |= w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return false;
	}
	return true;
}

static const struct pagein_raw_region *raw_find(struct raw_src *s, uint64_t gpa, uint64_t len)
{
	unsigned i;

	for (i = 0; i < s->n; i++)
		if (gpa >= s->r[i].gpa && gpa - s->r[i].gpa < s->r[i].size &&
		    len <= s->r[i].size - (gpa - s->r[i].gpa))
			return &s->r[i];
	return NULL;
}

/* Async-signal-safe: lseek, pread, fstat and arithmetic only. */
static int raw_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		     uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct raw_src *s = ctx;
	const struct pagein_raw_region *r = raw_find(s, gpa, len);
	uint64_t off, skip, done, i, npages = len / page_size;
	uint8_t *p = dst;
	off_t data;
	ssize_t got;

	if (!r || !page_size || len % page_size || npages > 64)
		return -EINVAL;
	off = r->offset + (gpa - r->gpa);
	/* leading holes: zero pages without a read (SEEK_DATA moves no shared state we use) */
	data = lseek(s->fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno != ENXIO)
		data = (off_t)off; /* the file system cannot tell: read everything */
	if (data < 0) {
		struct stat st;

		/* no data up to the end of the file: holes, unless the file was cut short after
		 * it was checked (then it is an error, never zeros) */
		if (fstat(s->fd, &st) < 0)
			return -errno;
		if ((uint64_t)st.st_size < off + len)
			return -EIO;
		data = (off_t)(off + len);
	}
	skip = (uint64_t)data >= off + len ? npages : ((uint64_t)data - off) / page_size;
	for (i = 0; i < skip; i++)
		*zero_mask |= 1ull << i;
	for (done = skip * page_size; done < len; done += (uint64_t)got) {
		got = pread(s->fd, p + done, len - done, (off_t)(off + done));
		if (got < 0 && errno == EINTR) {
			got = 0;
			continue;
		}
		if (got < 0)
			return -errno;
		if (got == 0)
			return -EIO; /* the file shrank under us */
	}
	for (i = skip; i < npages; i++)
		if (page_zero(p + i * page_size, page_size))
			*zero_mask |= 1ull << i;
	return 0;
}

static bool raw_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	return raw_find(ctx, gpa, len) != NULL;
}

static void raw_destroy(void *ctx)
{
	struct raw_src *s = ctx;

	close(s->fd);
	free(s);
}

static const struct pagein_source_ops raw_ops = {
	.fetch = raw_fetch,
	.destroy = raw_destroy,
	.covers = raw_covers,
};

int pagein_source_raw_new(const char *path, const struct pagein_raw_region *l, unsigned n, char *err,
		      size_t errlen, struct pagein_source **out)
{
	struct raw_src *s;
	struct stat st;
	uint64_t id[5]; /* what makes the file this image: device, inode, size, mtime */
	unsigned i, j;
	int ret;

	if (!n)
		return pi_say(err, errlen, -EINVAL, "the layout has no region");
	if (n > PAGEIN_RAW_MAX_REGIONS)
		return pi_say(err, errlen, -E2BIG, "the layout has %u regions, at most %d are allowed",
			   n, PAGEIN_RAW_MAX_REGIONS);
	for (i = 0; i < n; i++) {
		if (!l[i].size || l[i].gpa % 4096 || l[i].size % 4096 || l[i].offset % 4096)
			return pi_say(err, errlen, -EINVAL, "layout region %u (gpa 0x%llx, size %llu, "
				   "offset %llu): size must be > 0 and all three multiples of 4096",
				   i, (unsigned long long)l[i].gpa, (unsigned long long)l[i].size,
				   (unsigned long long)l[i].offset);
		if (l[i].flags)
			return pi_say(err, errlen, -EINVAL, "layout region %u: flags must be 0", i);
		if (l[i].gpa + l[i].size < l[i].gpa || l[i].offset + l[i].size < l[i].offset)
			return pi_say(err, errlen, -EINVAL, "layout region %u wraps around", i);
		for (j = 0; j < i; j++)
			if (l[i].gpa < l[j].gpa + l[j].size && l[j].gpa < l[i].gpa + l[i].size)
				return pi_say(err, errlen, -EINVAL, "layout regions %u and %u overlap "
					   "in guest addresses", j, i);
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return pi_say(err, errlen, -ENOMEM, "out of memory");
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		ret = pi_say(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
		goto err_free;
	}
	if (fstat(s->fd, &st) < 0) {
		ret = pi_say(err, errlen, -errno, "cannot stat %s: %s", path, strerror(errno));
		goto err_close;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		ret = pi_say(err, errlen, -EINVAL, "%s is not a regular file", path);
		goto err_close;
	}
	for (i = 0; i < n; i++)
		if (l[i].offset + l[i].size > (uint64_t)st.st_size) {
			ret = pi_say(err, errlen, -ENODATA, "%s is %llu bytes, shorter than its layout: "
				  "region %u (gpa 0x%llx, size %llu) needs bytes up to offset %llu",
				  path, (unsigned long long)st.st_size, i,
				  (unsigned long long)l[i].gpa, (unsigned long long)l[i].size,
				  (unsigned long long)(l[i].offset + l[i].size));
			goto err_close;
		}
	s->n = n;
	memcpy(s->r, l, n * sizeof(*l));
	id[0] = st.st_dev;
	id[1] = st.st_ino;
	id[2] = (uint64_t)st.st_size;
	id[3] = (uint64_t)st.st_mtim.tv_sec;
	id[4] = (uint64_t)st.st_mtim.tv_nsec;
	s->image_id = XXH3_64bits_withSeed(s->r, n * sizeof(*l), XXH3_64bits(&id, sizeof(id)));
	ret = pagein_source_new(&raw_ops, s, out);
	if (ret < 0) {
		pi_say(err, errlen, ret, "out of memory");
		goto err_close;
	}
	return 0;

err_close:
	close(s->fd);
err_free:
	free(s);
	return ret;
}

uint64_t pagein_source_raw_image_id(struct pagein_source *src)
{
	/* the ctx is ours only when the ops are */
	if (!src || src->ops.fetch != raw_fetch)
		return 0;
	return ((struct raw_src *)src->ctx)->image_id;
}

/* The offset-to-gpa remapping source's context. */
struct remap_src {
	struct pagein_source *inner;
	unsigned n;
	struct pagein_raw_region m[PAGEIN_RAW_MAX_REGIONS];
};

static const struct pagein_raw_region *remap_find(struct remap_src *s, uint64_t off, uint64_t len)
{
	unsigned i;

	for (i = 0; i < s->n; i++)
		if (off - s->m[i].offset < s->m[i].size &&
		    len <= s->m[i].size - (off - s->m[i].offset))
			return &s->m[i];
	return NULL;
}

static int remap_fetch(void *ctx, uint64_t off, void *dst, uint64_t len, uint64_t page_size,
		       uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct remap_src *s = ctx;
	const struct pagein_raw_region *m = remap_find(s, off, len);

	if (!m)
		return -EINVAL;
	return s->inner->ops.fetch(s->inner->ctx, m->gpa + (off - m->offset), dst, len, page_size,
				   zero_mask, deadline_ns);
}

static bool remap_covers(void *ctx, uint64_t off, uint64_t len)
{
	return remap_find(ctx, off, len) != NULL;
}

int pagein_source_remap_new(struct pagein_source *inner, const struct pagein_raw_region *map,
			    unsigned n, struct pagein_source **out)
{
	static const struct pagein_source_ops ops = {
		.fetch = remap_fetch,
		.destroy = free,
		.covers = remap_covers,
	};
	struct remap_src *s;
	unsigned i;
	int ret;

	if (!inner || !n || n > PAGEIN_RAW_MAX_REGIONS)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (inner->ops.covers && !inner->ops.covers(inner->ctx, map[i].gpa, map[i].size))
			return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->inner = inner;
	s->n = n;
	memcpy(s->m, map, n * sizeof(*map));
	ret = pagein_source_new(&ops, s, out);
	if (ret < 0)
		free(s);
	return ret;
}
