// SPDX-License-Identifier: MIT
/*
 * snapshot.c - the snapshot file format (docs/snapshot.md): a 4 KiB header with the region table
 * and per-region XXH3 digests, then each region's bytes, all-zero pages left as holes. Writing
 * snapshots, reading their table (rejecting truncated or foreign files), and the file source
 * (pread; holes and zero pages become zero pages without a copy).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define SNAP_MAGIC "PAGEINSN"
#define SNAP_VERSION 1
#define SNAP_HDR 4096ull
#define SNAP_MAX_REGIONS 64

/* On-disk region entry, little-endian. */
struct snap_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t offset; /* file offset of the region's first byte */
	uint32_t backing;
	uint32_t flags;
	uint64_t digest; /* XXH3-64 of the region's bytes */
};

/* On-disk header, little-endian; padded to SNAP_HDR. */
struct snap_hdr {
	char magic[8];
	uint32_t version;
	uint32_t nregions;
	uint64_t file_size; /* every byte the file must hold */
	uint64_t hdr_digest; /* XXH3-64 of the header with this field zero */
	struct snap_region r[SNAP_MAX_REGIONS];
};

_Static_assert(sizeof(struct snap_hdr) <= SNAP_HDR, "snapshot header must fit in 4 KiB");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the format is little-endian");

uint64_t pagein_digest(const void *buf, uint64_t len)
{
	return XXH3_64bits(buf, len);
}

static uint64_t hdr_digest(struct snap_hdr *h)
{
	uint64_t saved = h->hdr_digest, d;

	h->hdr_digest = 0;
	d = XXH3_64bits(h, sizeof(*h));
	h->hdr_digest = saved;
	return d;
}

static int write_all(int fd, const void *buf, uint64_t len, off_t off)
{
	const uint8_t *p = buf;
	ssize_t w;

	while (len) {
		w = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : len, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		off += w;
		len -= (uint64_t)w;
	}
	return 0;
}

int pagein_snapshot_save(const char *path, struct pagein_region_desc *regs,
			 const void *const *data, unsigned n)
{
	struct snap_hdr *h;
	uint64_t off = SNAP_HDR, i, j, k;
	int fd, ret = 0;

	if (!n || n > SNAP_MAX_REGIONS)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!regs[i].size || regs[i].size % 4096 || regs[i].gpa % 4096)
			return -EINVAL;
	h = calloc(1, SNAP_HDR);
	if (!h)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		goto out_free;
	}
	memcpy(h->magic, SNAP_MAGIC, 8);
	h->version = SNAP_VERSION;
	h->nregions = n;
	for (i = 0; i < n; i++) {
		const uint8_t *p = data[i];

		regs[i].digest = XXH3_64bits(p, regs[i].size);
		h->r[i] = (struct snap_region){ regs[i].gpa, regs[i].size, off, regs[i].backing,
						regs[i].flags, regs[i].digest };
		/* runs of non-zero pages are written; zero pages stay holes */
		for (j = 0; j < regs[i].size; j = k) {
			while (j < regs[i].size && pi_is_zero(p + j, 4096))
				j += 4096;
			for (k = j; k < regs[i].size && !pi_is_zero(p + k, 4096); k += 4096)
				;
			if (k > j) {
				ret = write_all(fd, p + j, k - j, (off_t)(off + j));
				if (ret < 0)
					goto out_close;
			}
		}
		off += (regs[i].size + 4095) / 4096 * 4096;
	}
	h->file_size = off;
	h->hdr_digest = hdr_digest(h);
	ret = write_all(fd, h, SNAP_HDR, 0);
	if (ret == 0 && ftruncate(fd, (off_t)off) < 0)
		ret = -errno;
out_close:
	if (close(fd) < 0 && !ret)
		ret = -errno;
out_free:
	free(h);
	return ret;
}

/* Read and check the header of an open snapshot. */
static int read_hdr(int fd, struct snap_hdr *h)
{
	struct stat st;
	ssize_t got;
	uint32_t i;

	got = pread(fd, h, sizeof(*h), 0);
	if (got < 0)
		return -errno;
	if ((size_t)got < sizeof(*h) || memcmp(h->magic, SNAP_MAGIC, 8))
		return -EINVAL;
	if (h->version != SNAP_VERSION || !h->nregions || h->nregions > SNAP_MAX_REGIONS ||
	    h->hdr_digest != hdr_digest(h))
		return -EINVAL;
	for (i = 0; i < h->nregions; i++) {
		const struct snap_region *r = &h->r[i];

		if (!r->size || r->size % 4096 || r->offset < SNAP_HDR ||
		    r->offset + r->size > h->file_size || r->offset + r->size < r->offset)
			return -EINVAL;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < h->file_size)
		return -ENODATA; /* truncated */
	return 0;
}

int pagein_snapshot_regions(const char *path, struct pagein_region_desc *regs, unsigned max)
{
	struct snap_hdr *h = malloc(sizeof(*h));
	uint32_t i;
	int fd, ret;

	if (!h)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = read_hdr(fd, h);
	close(fd);
	if (ret < 0)
		goto out;
	for (i = 0; i < h->nregions && i < max; i++)
		regs[i] = (struct pagein_region_desc){ h->r[i].gpa, h->r[i].size, h->r[i].backing,
						       h->r[i].flags, h->r[i].digest };
	ret = (int)h->nregions;
out:
	free(h);
	return ret;
}

/* The file source's context. */
struct file_src {
	int fd;
	uint32_t n;
	struct snap_region r[SNAP_MAX_REGIONS];
};

static int file_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		      uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct file_src *f = ctx;
	uint64_t off, done = 0;
	uint8_t *p = dst;
	off_t data;
	ssize_t got;
	uint32_t i;

	for (i = 0; i < f->n; i++)
		if (gpa >= f->r[i].gpa && gpa - f->r[i].gpa < f->r[i].size)
			break;
	if (i == f->n || len > f->r[i].size - (gpa - f->r[i].gpa))
		return -EINVAL;
	off = f->r[i].offset + (gpa - f->r[i].gpa);
	/* a hole covering the whole range: zero pages, nothing read */
	data = lseek(f->fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno == ENXIO) {
		/* no data from here to the end of the file: trailing holes, unless the file was cut
		 * short after it was opened (then it is an error, not zeros) */
		struct stat st;

		if (fstat(f->fd, &st) < 0)
			return -errno;
		if ((uint64_t)st.st_size < off + len)
			return -EIO;
	}
	if ((data < 0 && errno == ENXIO) || (data >= 0 && (uint64_t)data >= off + len)) {
		*zero_mask = len / page_size >= 64 ? ~0ull : (1ull << (len / page_size)) - 1;
		return 0;
	}
	while (done < len) {
		got = pread(f->fd, p + done, len - done, (off_t)(off + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -EIO; /* the file shrank under us */
		done += (uint64_t)got;
	}
	return 0;
}

/* A space region must lie inside one snapshot region. */
static bool file_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	struct file_src *f = ctx;
	uint32_t i;

	for (i = 0; i < f->n; i++)
		if (gpa >= f->r[i].gpa && gpa - f->r[i].gpa <= f->r[i].size &&
		    len <= f->r[i].size - (gpa - f->r[i].gpa))
			return true;
	return false;
}

static void file_destroy(void *ctx)
{
	struct file_src *f = ctx;

	close(f->fd);
	free(f);
}

int pagein_source_file_new(const char *path, struct pagein_source **out)
{
	static const struct pagein_source_ops ops = {
		.fetch = file_fetch,
		.destroy = file_destroy,
		.covers = file_covers,
	};
	struct snap_hdr *h;
	struct file_src *f;
	int ret;

	h = malloc(sizeof(*h));
	f = calloc(1, sizeof(*f));
	if (!h || !f) {
		ret = -ENOMEM;
		goto err;
	}
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		ret = -errno;
		goto err;
	}
	ret = read_hdr(f->fd, h);
	if (ret < 0)
		goto err_close;
	f->n = h->nregions;
	memcpy(f->r, h->r, sizeof(f->r[0]) * f->n);
	ret = pagein_source_new(&ops, f, out);
	if (ret < 0)
		goto err_close;
	free(h);
	return 0;

err_close:
	close(f->fd);
err:
	free(h);
	free(f);
	return ret;
}
