// SPDX-License-Identifier: MIT
/*
 * source.c - the pagein_source interface and the in-memory source (a caller-owned buffer
 * holding the guest image; the engine installs straight from it, without a bounce copy).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int pagein_source_new(const struct pagein_source_ops *ops, void *ctx, struct pagein_source **out)
{
	struct pagein_source *src;

	if (!ops || !ops->fetch)
		return -EINVAL;
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->ops = *ops;
	src->ctx = ctx;
	*out = src;
	return 0;
}

void pagein_source_free(struct pagein_source *src)
{
	if (!src)
		return;
	if (src->ops.destroy)
		src->ops.destroy(src->ctx);
	free(src);
}

/* The in-memory source's context. */
struct mem_src {
	const uint8_t *buf; /* image of [base, base+len) */
	uint64_t base;      /* guest address of buf[0] */
	uint64_t len;       /* bytes */
};

static const void *mem_direct(void *ctx, uint64_t gpa, uint64_t len)
{
	struct mem_src *m = ctx;

	if (gpa < m->base || gpa - m->base > m->len || len > m->len - (gpa - m->base))
		return NULL;
	return m->buf + (gpa - m->base);
}

static int mem_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		     uint64_t *zero_mask, uint64_t deadline_ns)
{
	const void *p = mem_direct(ctx, gpa, len);

	if (!p)
		return -EINVAL;
	memcpy(dst, p, len);
	return 0;
}

static bool mem_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	return mem_direct(ctx, gpa, len) != NULL;
}

static void mem_destroy(void *ctx)
{
	free(ctx);
}

int pagein_source_mem_new(const void *buf, uint64_t base, uint64_t len, struct pagein_source **out)
{
	static const struct pagein_source_ops ops = {
		.fetch = mem_fetch,
		.direct = mem_direct,
		.destroy = mem_destroy,
		.covers = mem_covers,
	};
	struct mem_src *m;
	int ret;

	if (!buf || !len || base + len < base)
		return -EINVAL;
	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->buf = buf;
	m->base = base;
	m->len = len;
	ret = pagein_source_new(&ops, m, out);
	if (ret < 0)
		free(m);
	return ret;
}
