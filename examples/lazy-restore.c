// SPDX-License-Identifier: MIT
/*
 * lazy-restore.c - the first program a user writes: memory that is usable at once and whose
 * pages arrive on first touch. The source is an image in memory, or with an argument the first
 * region of a snapshot file (`pagein mksnap FILE`). Touch every page, then check every byte.
 * Build: cc lazy-restore.c $(pkg-config --cflags --libs pagein)
 */
#include <errno.h>
#include <pagein.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct pagein_region_desc reg = { .gpa = 0, .size = 16 << 20 };
	struct pagein_source *src = NULL;
	struct pagein_space *space = NULL;
	unsigned char *image = NULL, *mem;
	void *host;
	uint64_t sum = 0, i;
	int ret, ok;

	if (argc > 1) { /* a snapshot: region 0, checked against the digest the file keeps */
		ret = pagein_snapshot_regions(argv[1], &reg, 1);
		ret = ret < 0 ? ret : pagein_source_file_new(argv[1], &src);
	} else {        /* an image in memory, checked byte for byte */
		image = malloc(reg.size);
		for (i = 0; image && i < reg.size; i++)
			image[i] = (unsigned char)(i * 7 + i / 4096);
		ret = image ? pagein_source_mem_new(image, 0, reg.size, &src) : -ENOMEM;
	}
	if (!ret)
		ret = pagein_space_new(NULL, &space); /* self-resolve: the faulting thread fetches */
	if (!ret)
		ret = pagein_region_add(space, reg.gpa, reg.size, PAGEIN_BACKING_ANON, &host);
	if (!ret)
		ret = pagein_space_set_source(space, src);
	if (!ret)
		ret = pagein_space_start(space);
	if (ret) {
		fprintf(stderr, "lazy-restore: %s\n", strerror(-ret));
		return 1;
	}
	mem = host;
	for (i = 0; i < reg.size; i += 4096)
		sum += mem[i]; /* each first touch fetches its page from the source */
	ok = image ? !memcmp(mem, image, reg.size) : pagein_digest(mem, reg.size) == reg.digest;
	printf("%s: %llu MiB restored lazily (byte sum %llu): %s\n", argc > 1 ? argv[1] : "memory",
	       (unsigned long long)(reg.size >> 20), (unsigned long long)sum, ok ? "verified" : "WRONG");
	pagein_space_free(space);
	pagein_source_free(src);
	free(image);
	return ok ? 0 : 1;
}
