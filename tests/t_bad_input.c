// SPDX-License-Identifier: MIT
/*
 * t_bad_input.c - every documented rejection: bad regions, configs, accessor ranges, freeze/thaw,
 * pins, memory sources and corrupt or truncated snapshot files each return their -errno and log
 * the reason, and nothing is lost: the same space (or a fresh one, for constructors) still adds a
 * valid region, takes a source, starts and reads back the right bytes with pagein_read.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define SEED 0xbad1
#define ZERO_EVERY 5
#define KB(x) ((uint64_t)(x) << 10)
#define MB(x) ((uint64_t)(x) << 20)
#define IMG MB(8)         /* the pattern image covers guest addresses [0, IMG) */
#define SPARE_GPA MB(6)   /* where "nothing lost" adds its valid region */
#define SPARE_SIZE KB(64)

/* The snapshot header as lib/snapshot.c writes it (little-endian): magic[8], version u32,
 * nregions u32, file_size u64, hdr_digest u64, then 64 region entries of 40 bytes; the digest is
 * XXH3-64 of those bytes with hdr_digest zero. */
#define SNAP_OFF_VERSION 8
#define SNAP_OFF_DIGEST 24
#define SNAP_OFF_TABLE 32
#define SNAP_ENTRY 40
#define SNAP_HDR_BYTES (SNAP_OFF_TABLE + 64 * SNAP_ENTRY)

static uint8_t *image;
static const char *what; /* the case running, for failure messages */

/* One space under test and the valid regions it holds. */
struct sp {
	struct pagein_space *s;
	struct pagein_source *src;
	uint64_t gpa[PAGEIN_MAX_REGIONS], size[PAGEIN_MAX_REGIONS];
	unsigned n;
};

static void begin(const char *name)
{
	what = name;
	t_last_log[0] = 0;
	printf("  %s\n", name);
	fflush(stdout);
}

static void expect_log(const char *want)
{
	if (!strstr(t_last_log, want)) {
		fprintf(stderr, "FAIL [%s]: log \"%s\" does not mention \"%s\"\n", what, t_last_log,
			want);
		exit(1);
	}
}

/* The log names the guest address gpa (as %#llx). */
static void expect_log_gpa(uint64_t gpa)
{
	char hex[32];

	snprintf(hex, sizeof(hex), "%#llx", (unsigned long long)gpa);
	expect_log(hex);
}

static struct pagein_config config(void)
{
	struct pagein_config cfg;

	pagein_config_init(&cfg);
	cfg.log = t_log;
	return cfg;
}

static void sp_new(struct sp *p)
{
	struct pagein_config cfg = config();

	memset(p, 0, sizeof(*p));
	T_EQ(pagein_space_new(&cfg, &p->s), 0);
}

static void sp_add(struct sp *p, uint64_t gpa, uint64_t size, enum pagein_backing b)
{
	void *host = NULL;

	T_EQ(pagein_region_add(p->s, gpa, size, b, &host), 0);
	T_ASSERT(host != NULL && pagein_host_addr(p->s, gpa) == host);
	p->gpa[p->n] = gpa;
	p->size[p->n++] = size;
}

static uint64_t sp_pages(struct sp *p)
{
	uint64_t total = 0;
	unsigned i;

	for (i = 0; i < p->n; i++)
		total += p->size[i] / 4096;
	return total;
}

/* Every valid region reads back the pattern through the accessors. */
static void sp_verify(struct sp *p)
{
	uint64_t bad, total;
	unsigned i;
	uint8_t *buf;

	pagein_residency(p->s, NULL, &total);
	T_EQ(total, sp_pages(p));
	for (i = 0; i < p->n; i++) {
		buf = malloc(p->size[i]);
		T_ASSERT(buf);
		memset(buf, 0xa5, p->size[i]);
		T_EQ(pagein_read(p->s, p->gpa[i], buf, p->size[i]), 0);
		bad = t_check(buf, p->gpa[i], p->size[i], SEED, ZERO_EVERY);
		if (bad != UINT64_MAX) {
			fprintf(stderr, "FAIL [%s]: wrong bytes at gpa %#llx after the rejection\n",
				what, (unsigned long long)bad);
			exit(1);
		}
		free(buf);
	}
}

/* Nothing lost, for a space not started yet: a valid region, a memory source, start, read. */
static void sp_finish(struct sp *p)
{
	sp_add(p, SPARE_GPA, SPARE_SIZE, PAGEIN_BACKING_ANON);
	T_EQ(pagein_source_mem_new(image, 0, IMG, &p->src), 0);
	T_EQ(pagein_space_set_source(p->s, p->src), 0);
	T_EQ(pagein_space_start(p->s), 0);
	sp_verify(p);
}

static void sp_free(struct sp *p)
{
	pagein_space_free(p->s);
	pagein_source_free(p->src);
}

/* A region_add that must fail with want and a log mentioning log; pre_size > 0 adds a valid
 * region [pre_gpa, +pre_size) first. Then nothing is lost. */
static void bad_region(const char *name, uint64_t pre_gpa, uint64_t pre_size, uint64_t gpa,
		       uint64_t size, enum pagein_backing b, int want, const char *log)
{
	struct sp p;
	void *host = (void *)&p;
	uint64_t total;

	sp_new(&p);
	if (pre_size)
		sp_add(&p, pre_gpa, pre_size, PAGEIN_BACKING_ANON);
	begin(name);
	T_EQ(pagein_region_add(p.s, gpa, size, b, &host), want);
	expect_log(log);
	T_ASSERT(host == (void *)&p); /* *host untouched */
	pagein_residency(p.s, NULL, &total);
	T_EQ(total, sp_pages(&p));
	/* the rejected range left no region behind (where it does not overlap a valid one) */
	if (!pre_size || gpa + size <= pre_gpa || gpa >= pre_gpa + pre_size)
		T_ASSERT(size == 0 || gpa + size < gpa || pagein_host_addr(p.s, gpa) == NULL);
	sp_finish(&p);
	sp_free(&p);
}

static void test_regions(void)
{
	const enum pagein_backing A = PAGEIN_BACKING_ANON, S = PAGEIN_BACKING_SHMEM,
				  H = PAGEIN_BACKING_HUGETLB;
	const uint64_t pg = MB(1), ps = KB(256); /* the pre-existing region [1 MiB, +256 KiB) */
	struct sp p;
	unsigned i;
	int ret;

	bad_region("region_add: zero size", 0, 0, MB(1), 0, A, -EINVAL, "zero size");
	bad_region("region_add: zero size, hugetlb", 0, 0, 0, 0, H, -EINVAL, "zero size");
	bad_region("region_add: gpa misaligned", 0, 0, MB(1) + 0x800, KB(64), A, -EINVAL, "aligned");
	bad_region("region_add: size misaligned", 0, 0, MB(1), KB(64) + 0x800, A, -EINVAL,
		   "aligned");
	bad_region("region_add: shmem size misaligned", 0, 0, MB(1), KB(64) + 512, S, -EINVAL,
		   "aligned");
	bad_region("region_add: hugetlb gpa not 2 MiB aligned", 0, 0, KB(4), MB(2), H, -EINVAL,
		   "aligned");
	bad_region("region_add: hugetlb size not 2 MiB aligned", 0, 0, MB(2), MB(2) + KB(4), H,
		   -EINVAL, "aligned");
	bad_region("region_add: hugetlb size 4 KiB", 0, 0, 0, KB(4), H, -EINVAL, "aligned");
	bad_region("region_add: overlap, exact", pg, ps, pg, ps, A, -EINVAL, "overlap");
	bad_region("region_add: overlap, partial below", pg, ps, pg - KB(64), KB(128), A, -EINVAL,
		   "overlap");
	bad_region("region_add: overlap, partial above", pg, ps, pg + ps - KB(4), KB(64), A,
		   -EINVAL, "overlap");
	bad_region("region_add: overlap, containing", pg, ps, pg - KB(512), MB(2), A, -EINVAL,
		   "overlap");
	bad_region("region_add: overlap, contained", pg, ps, pg + KB(64), KB(64), A, -EINVAL,
		   "overlap");
	bad_region("region_add: overlap, shmem over anon", pg, ps, pg, KB(4), S, -EINVAL,
		   "overlap");
	bad_region("region_add: gpa+size wraps", 0, 0, UINT64_MAX - KB(64) + 1, KB(128), A, -EINVAL,
		   "wraps");
	bad_region("region_add: gpa+size wraps to 0", 0, 0, 0ull - MB(1), MB(2), A, -EINVAL,
		   "wraps");
	bad_region("region_add: unknown backing 7", 0, 0, MB(1), KB(64), (enum pagein_backing)7,
		   -EINVAL, "unknown backing");
	bad_region("region_add: unknown backing -1", 0, 0, MB(1), KB(64), (enum pagein_backing)-1,
		   -EINVAL, "unknown backing");

	/* after start: -EBUSY, and the running space keeps serving */
	sp_new(&p);
	sp_add(&p, pg, ps, A);
	T_EQ(pagein_source_mem_new(image, 0, IMG, &p.src), 0);
	T_EQ(pagein_space_set_source(p.s, p.src), 0);
	T_EQ(pagein_space_start(p.s), 0);
	begin("region_add: after start");
	T_EQ(pagein_region_add(p.s, SPARE_GPA, SPARE_SIZE, A, NULL), -EBUSY);
	expect_log("before pagein_space_start");
	T_ASSERT(pagein_host_addr(p.s, SPARE_GPA) == NULL);
	begin("set_source: after start");
	T_EQ(pagein_space_set_source(p.s, p.src), -EBUSY);
	sp_verify(&p);
	sp_free(&p);

	/* a space holds a fixed number of regions; one more is refused, the others still work */
	sp_new(&p);
	begin("region_add: one region too many");
	for (i = 0;; i++) {
		ret = pagein_region_add(p.s, i * KB(64), KB(4), A, NULL);
		if (ret < 0)
			break;
		p.gpa[p.n] = i * KB(64);
		p.size[p.n++] = KB(4);
		T_ASSERT(i < PAGEIN_MAX_REGIONS);
	}
	T_EQ(ret, -ENOSPC);
	expect_log("at most");
	T_EQ(pagein_source_mem_new(image, 0, IMG, &p.src), 0);
	T_EQ(pagein_space_set_source(p.s, p.src), 0);
	T_EQ(pagein_space_start(p.s), 0);
	sp_verify(&p);
	sp_free(&p);

	/* start needs a region and a source */
	sp_new(&p);
	begin("start: no region, no source");
	T_EQ(pagein_space_start(p.s), -EINVAL);
	expect_log("region");
	sp_add(&p, pg, ps, A);
	begin("start: no source");
	T_EQ(pagein_space_start(p.s), -EINVAL);
	expect_log("source");
	begin("set_source: NULL");
	T_EQ(pagein_space_set_source(p.s, NULL), -EINVAL);
	begin("fill_start: before start");
	T_EQ(pagein_fill_start(p.s), -EINVAL);
	sp_finish(&p);
	sp_free(&p);
}

/*
 * A started space for the accessor cases: A [1 MiB, +64 KiB) and B right after it (adjacent), C
 * [4 MiB, +64 KiB) with nothing around it. Pages are still missing when the bad call comes.
 */
#define RA MB(1)
#define RB (MB(1) + KB(64))
#define RC MB(4)
#define RSZ KB(64)

static void started(struct sp *p)
{
	sp_new(p);
	sp_add(p, RA, RSZ, PAGEIN_BACKING_ANON);
	sp_add(p, RB, RSZ, PAGEIN_BACKING_ANON);
	sp_add(p, RC, RSZ, PAGEIN_BACKING_ANON);
	T_EQ(pagein_source_mem_new(image, 0, IMG, &p->src), 0);
	T_EQ(pagein_space_set_source(p->s, p->src), 0);
	T_EQ(pagein_space_start(p->s), 0);
}

enum acc { READ, WRITE, RESOLVE, PIN, FREEZE, THAW };
static const char *const acc_name[] = { "read", "write", "resolve", "pin", "freeze", "thaw" };

static int call(struct sp *p, enum acc a, uint64_t gpa, uint64_t len)
{
	static uint8_t buf[KB(16)];
	void *host = NULL;
	uint64_t bad = 0;
	int ret;

	/* a write stores the pattern's own bytes: a rejected write must not matter either way */
	if (a == WRITE && gpa < IMG && len <= sizeof(buf) && len <= IMG - gpa)
		memcpy(buf, image + gpa, len);
	switch (a) {
	case READ: return pagein_read(p->s, gpa, buf, (size_t)len);
	case WRITE: return pagein_write(p->s, gpa, buf, (size_t)len);
	case RESOLVE: return pagein_resolve(p->s, gpa, len, &bad);
	case PIN:
		ret = pagein_pin(p->s, gpa, len, &host);
		if (ret == 0)
			pagein_unpin(p->s, gpa, len);
		return ret;
	case FREEZE: return pagein_freeze(p->s, gpa, len);
	case THAW: return pagein_thaw(p->s, gpa, len);
	}
	return -ENOSYS;
}

/* One bad accessor call on a fresh started space; then no pin is left behind (freeze of each
 * region works), no page is frozen (reads work), and every byte reads back right. */
static void bad_access(const char *name, enum acc a, uint64_t gpa, uint64_t len, const char *log,
		       uint64_t log_gpa)
{
	char title[160];
	struct sp p;
	unsigned i;

	started(&p);
	snprintf(title, sizeof(title), "%s: %s", acc_name[a], name);
	begin(title);
	T_EQ(call(&p, a, gpa, len), -EINVAL);
	if (log)
		expect_log(log);
	if (log_gpa != UINT64_MAX)
		expect_log_gpa(log_gpa);
	sp_verify(&p);
	for (i = 0; i < p.n; i++) {
		T_EQ(pagein_freeze(p.s, p.gpa[i], p.size[i]), 0);
		T_EQ(pagein_thaw(p.s, p.gpa[i], p.size[i]), 0);
	}
	sp_verify(&p);
	sp_free(&p);
}

static void test_access(void)
{
	const uint64_t hole = MB(3);
	const uint64_t wrap = UINT64_MAX; /* any gpa in a region + this wraps */
	enum acc a;
	struct sp p;
	void *host;

	for (a = READ; a <= PIN; a++) {
		const char *log = a == PIN ? "inside one region" : "outside every region";

		bad_access("outside every region", a, hole, KB(4), log, hole);
		bad_access("below the first region", a, 0, 64, log, 0);
		bad_access("far above every region", a, 0xfff0000000000000ull, KB(4), log,
			   0xfff0000000000000ull);
		bad_access("runs past the end of a region into nothing", a, RC + RSZ - KB(4), KB(8),
			   log, a == PIN ? RC + RSZ - KB(4) : RC + RSZ);
		bad_access("len wraps", a, RC + KB(4), wrap, a == PIN ? log : "wraps", RC + KB(4));
	}
	bad_access("spans two regions", PIN, RB - KB(4), KB(8), "inside one region", RB - KB(4));
	bad_access("zero length", PIN, RA, 0, "inside one region", RA);
	for (a = FREEZE; a <= THAW; a++) {
		const char *log = "whole pages inside one region";

		bad_access("gpa misaligned", a, RA + 0x800, KB(4), log, RA + 0x800);
		bad_access("len misaligned", a, RA, KB(4) + 8, log, RA);
		bad_access("zero length", a, RA, 0, log, RA);
		bad_access("outside every region", a, hole, KB(4), log, hole);
		bad_access("runs past the end of a region into nothing", a, RC + RSZ - KB(4), KB(8),
			   log, RC + RSZ - KB(4));
		bad_access("spans two regions", a, RA, 2 * RSZ, log, RA);
		bad_access("len wraps", a, RC + KB(4), 0ull - KB(4), log, RC + KB(4));
	}

	/* the lookups answer "not here" without harm */
	started(&p);
	begin("host_addr / gpa_of outside every region");
	T_ASSERT(pagein_host_addr(p.s, MB(3)) == NULL);
	T_ASSERT(pagein_host_addr(p.s, RC + RSZ) == NULL);
	host = pagein_host_addr(p.s, RC);
	T_ASSERT(host != NULL);
	{
		uint64_t g = 0;

		T_EQ(pagein_gpa_of(p.s, image, &g), -EINVAL);
		T_EQ(pagein_gpa_of(p.s, (uint8_t *)host + KB(8), &g), 0);
		T_EQ(g, RC + KB(8));
	}
	begin("fill_start: twice");
	/* a frozen page keeps the fill from finishing, so the second start surely meets it */
	T_EQ(pagein_freeze(p.s, RC, KB(4)), 0);
	T_EQ(pagein_fill_start(p.s), 0);
	T_EQ(pagein_fill_start(p.s), -EALREADY);
	T_EQ(pagein_thaw(p.s, RC, KB(4)), 0);
	T_EQ(pagein_wait_complete(p.s, 10000), 0);
	sp_verify(&p);
	sp_free(&p);
}

static void test_config(void)
{
	struct pagein_space *s;
	struct pagein_config cfg;
	struct sp p;
	struct {
		const char *name, *log;
		unsigned readers, uffds, around;
		enum pagein_frontend fe;
	} cases[] = {
		{ "config: readers 0", "readers", 0, 1, PAGEIN_AROUND_AUTO, PAGEIN_FRONTEND_SELF },
		{ "config: readers 0, handler", "readers", 0, 1, 0, PAGEIN_FRONTEND_HANDLER },
		{ "config: uffds 0", "uffds", 1, 0, PAGEIN_AROUND_AUTO, PAGEIN_FRONTEND_HANDLER },
		{ "config: uffds 0, self", "uffds", 1, 0, PAGEIN_AROUND_AUTO, PAGEIN_FRONTEND_SELF },
		{ "config: fault_around over the maximum", "fault_around", 1, 1,
		  PAGEIN_AROUND_MAX + 1, PAGEIN_FRONTEND_SELF },
		{ "config: fault_around huge", "fault_around", 1, 1, PAGEIN_AROUND_AUTO - 1,
		  PAGEIN_FRONTEND_HANDLER },
		{ "config: unknown front-end", "front-end", 1, 1, 0, (enum pagein_frontend)9 },
	};
	unsigned i;
	int ret;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cfg = config();
		cfg.readers = cases[i].readers;
		cfg.uffds = cases[i].uffds;
		cfg.fault_around = cases[i].around;
		cfg.frontend = cases[i].fe;
		s = (struct pagein_space *)&cfg;
		begin(cases[i].name);
		T_EQ(pagein_space_new(&cfg, &s), -EINVAL);
		T_ASSERT(s == (struct pagein_space *)&cfg); /* *out untouched */
		expect_log(cases[i].log);
		/* nothing lost: the boundary values are fine, and a space works */
		cfg = config();
		cfg.frontend = cases[i].fe == PAGEIN_FRONTEND_HANDLER ? PAGEIN_FRONTEND_HANDLER
								       : PAGEIN_FRONTEND_SELF;
		cfg.readers = 1;
		cfg.uffds = 1;
		cfg.fault_around = PAGEIN_AROUND_MAX;
		memset(&p, 0, sizeof(p));
		ret = pagein_space_new(&cfg, &p.s);
		if (ret == -EPERM && cfg.frontend == PAGEIN_FRONTEND_HANDLER) {
			/* unprivileged: handler userfaultfds are not permitted, self ones are */
			cfg.frontend = PAGEIN_FRONTEND_SELF;
			ret = pagein_space_new(&cfg, &p.s);
		}
		T_EQ(ret, 0);
		sp_add(&p, RA, RSZ, PAGEIN_BACKING_ANON);
		sp_finish(&p);
		sp_free(&p);
	}
}

static void test_mem_source(void)
{
	struct pagein_source *src = (struct pagein_source *)&src;
	struct sp p;

	begin("source_mem_new: NULL buffer");
	T_EQ(pagein_source_mem_new(NULL, 0, IMG, &src), -EINVAL);
	begin("source_mem_new: zero length");
	T_EQ(pagein_source_mem_new(image, 0, 0, &src), -EINVAL);
	begin("source_mem_new: base+len wraps");
	T_EQ(pagein_source_mem_new(image, UINT64_MAX - KB(4) + 1, KB(8), &src), -EINVAL);
	T_ASSERT(src == (struct pagein_source *)&src); /* *out untouched */
	sp_new(&p);
	sp_add(&p, RA, RSZ, PAGEIN_BACKING_ANON);
	sp_finish(&p);
	sp_free(&p);
}

/* ---- snapshot files ---- */

static char dir[] = "/tmp/pagein-bad-XXXXXX";
static char good[128], small[128], bad[128];

static void copy_file(const char *from, const char *to)
{
	static uint8_t buf[KB(64)];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	T_ASSERT(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		T_ASSERT(write(out, buf, (size_t)n) == n);
	T_ASSERT(n == 0);
	close(in);
	close(out);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	T_ASSERT(stat(path, &st) == 0);
	return (uint64_t)st.st_size;
}

/* Rewrite bytes of the bad copy at off. */
static void patch(uint64_t off, const void *bytes, size_t n)
{
	int fd = open(bad, O_RDWR);

	T_ASSERT(fd >= 0);
	T_ASSERT(pwrite(fd, bytes, n, (off_t)off) == (ssize_t)n);
	close(fd);
}

static void flip(uint64_t off)
{
	uint8_t b;
	int fd = open(bad, O_RDWR);

	T_ASSERT(fd >= 0);
	T_ASSERT(pread(fd, &b, 1, (off_t)off) == 1);
	b ^= 0x10;
	T_ASSERT(pwrite(fd, &b, 1, (off_t)off) == 1);
	close(fd);
}

/* The header digest stored in path, or (rewrite) the one recomputed from the header and written
 * back, so that only the field a case changed is wrong. */
static uint64_t header_digest(const char *path, bool rewrite)
{
	uint8_t h[SNAP_HDR_BYTES];
	uint64_t stored, d;
	int fd = open(path, rewrite ? O_RDWR : O_RDONLY);

	T_ASSERT(fd >= 0);
	T_ASSERT(pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h));
	memcpy(&stored, h + SNAP_OFF_DIGEST, 8);
	memset(h + SNAP_OFF_DIGEST, 0, 8);
	d = pagein_digest(h, sizeof(h));
	if (rewrite)
		T_ASSERT(pwrite(fd, &d, 8, SNAP_OFF_DIGEST) == 8);
	close(fd);
	return rewrite ? d : stored;
}

/* The snapshot's two regions, as a space's regions. */
static const struct pagein_region_desc snap_regs[2] = {
	{ .gpa = 0, .size = KB(64), .backing = PAGEIN_BACKING_ANON },
	{ .gpa = MB(1), .size = KB(64), .backing = PAGEIN_BACKING_ANON },
};

/* Nothing lost: the good snapshot still restores into a space, every byte right. */
static void good_restores(void)
{
	struct pagein_region_desc regs[2];
	struct sp p;
	unsigned i;

	T_EQ(pagein_snapshot_regions(good, regs, 2), 2);
	sp_new(&p);
	for (i = 0; i < 2; i++) {
		T_EQ(regs[i].gpa, snap_regs[i].gpa);
		T_EQ(regs[i].size, snap_regs[i].size);
		sp_add(&p, regs[i].gpa, regs[i].size, PAGEIN_BACKING_ANON);
	}
	T_EQ(pagein_source_file_new(good, &p.src), 0);
	T_EQ(pagein_space_set_source(p.s, p.src), 0);
	T_EQ(pagein_space_start(p.s), 0);
	sp_verify(&p);
	for (i = 0; i < 2; i++)
		T_ASSERT(pagein_digest(pagein_host_addr(p.s, regs[i].gpa), regs[i].size) ==
			 regs[i].digest);
	sp_free(&p);
}

/* Both readers of the bad copy refuse it with want; the good file still restores. */
static void bad_file(const char *name, const char *path, int want)
{
	struct pagein_source *src = NULL;
	struct pagein_region_desc regs[2];

	begin(name);
	T_EQ(pagein_source_file_new(path, &src), want);
	T_ASSERT(src == NULL);
	T_EQ(pagein_snapshot_regions(path, regs, 2), want);
	good_restores();
}

static void test_snapshots(void)
{
	struct pagein_region_desc regs[2], sregs[2];
	const void *data[2] = { image + snap_regs[0].gpa, image + snap_regs[1].gpa };
	uint64_t size, d;
	uint32_t v;
	struct sp p;
	struct pagein_source *src;
	unsigned i;

	T_ASSERT(mkdtemp(dir));
	snprintf(good, sizeof(good), "%s/good", dir);
	snprintf(small, sizeof(small), "%s/small", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	memcpy(regs, snap_regs, sizeof(regs));
	T_EQ(pagein_snapshot_save(good, regs, data, 2), 0);
	size = file_size(good);
	T_ASSERT(size > 3 * 4096);
	/* the layout the corruptions below rely on: recomputing the digest gives the stored one */
	d = header_digest(good, false);
	copy_file(good, bad);
	T_ASSERT(header_digest(bad, true) == d);
	good_restores();

	copy_file(good, bad);
	T_ASSERT(truncate(bad, (off_t)(size - 4096)) == 0);
	bad_file("snapshot: truncated by 4 KiB", bad, -ENODATA);
	copy_file(good, bad);
	T_ASSERT(truncate(bad, (off_t)(size / 2)) == 0);
	bad_file("snapshot: truncated to half", bad, -ENODATA);
	copy_file(good, bad);
	T_ASSERT(truncate(bad, 4096) == 0);
	bad_file("snapshot: header only", bad, -ENODATA);

	copy_file(good, bad);
	patch(0, "PAGEINSX", 8);
	bad_file("snapshot: wrong magic", bad, -EINVAL);
	copy_file(good, bad);
	v = 2;
	patch(SNAP_OFF_VERSION, &v, 4);
	bad_file("snapshot: wrong version", bad, -EINVAL);
	header_digest(bad, true);
	bad_file("snapshot: wrong version, header digest recomputed", bad, -EINVAL);
	copy_file(good, bad);
	flip(SNAP_OFF_TABLE + SNAP_ENTRY + 8 + 2); /* region 1's size */
	bad_file("snapshot: flipped byte in the region table", bad, -EINVAL);
	copy_file(good, bad);
	flip(SNAP_OFF_TABLE + 1); /* region 0's gpa */
	bad_file("snapshot: flipped byte in region 0's gpa", bad, -EINVAL);
	copy_file(good, bad);
	flip(SNAP_OFF_DIGEST);
	bad_file("snapshot: flipped byte in the header digest", bad, -EINVAL);

	for (i = 0; i < 3; i++) {
		static const off_t lens[] = { 0, 8, 2048 };
		char name[64];

		copy_file(good, bad);
		T_ASSERT(truncate(bad, lens[i]) == 0);
		snprintf(name, sizeof(name), "snapshot: %lld bytes, shorter than the header",
			 (long long)lens[i]);
		bad_file(name, bad, -EINVAL);
	}
	bad_file("snapshot: nonexistent path", "/nonexistent/pagein-snapshot", -ENOENT);
	snprintf(bad, sizeof(bad), "%s/missing", dir);
	bad_file("snapshot: nonexistent file", bad, -ENOENT);
	snprintf(bad, sizeof(bad), "%s/bad", dir);

	/* a valid snapshot whose regions are smaller than the space's */
	for (i = 0; i < 2; i++)
		sregs[i] = (struct pagein_region_desc){ .gpa = snap_regs[i].gpa,
							.size = snap_regs[i].size / 2 };
	T_EQ(pagein_snapshot_save(small, sregs, data, 2), 0);
	begin("set_source: snapshot smaller than the regions");
	sp_new(&p);
	for (i = 0; i < 2; i++)
		sp_add(&p, snap_regs[i].gpa, snap_regs[i].size, PAGEIN_BACKING_ANON);
	T_EQ(pagein_source_file_new(small, &src), 0);
	T_EQ(pagein_space_set_source(p.s, src), -EINVAL);
	expect_log("truncated");
	pagein_source_free(src);
	begin("start: after the refused source");
	T_EQ(pagein_space_start(p.s), -EINVAL); /* the small source was not kept */
	T_EQ(pagein_source_file_new(good, &p.src), 0);
	T_EQ(pagein_space_set_source(p.s, p.src), 0);
	T_EQ(pagein_space_start(p.s), 0);
	sp_verify(&p);
	sp_free(&p);

	unlink(good);
	unlink(small);
	unlink(bad);
	rmdir(dir);
}

int main(void)
{
	t_require_uffd();
	image = malloc(IMG);
	T_ASSERT(image);
	t_fill(image, 0, IMG, SEED, ZERO_EVERY);
	alarm(120);
	test_regions();
	test_access();
	test_config();
	test_mem_source();
	test_snapshots();
	t_pass("bad input: every rejection returns its -errno, logs why, and loses nothing");
}
