// SPDX-License-Identifier: MIT
/*
 * t_kvm_bench.c - `pagein bench --kvm` at tiny sizes inside the tier's guest, so the KVM bench
 * cannot rot: runs the static pagein (env PAGEIN_BIN, else /bin/pagein) for anon, shmem striped
 * with an injected delay, and hugetlb, and checks every JSON line with tests/t_bench_tiny.c's
 * reader plus the kvm rows' own keys: per-vCPU pages/s and KVM fault counts, every page verified.
 */

/* One JSON reader in the project: t_bench_tiny.c's, included with its main renamed (it keeps
 * its checks of the thread rows; this file checks the kvm rows). */
#define main t_bench_tiny_main
#include "../t_bench_tiny.c"
#undef main

#define PAGE 4096.0 /* what the bench counts as a page */

/* An array member with n entries whose smallest is at least min (-1: any, numbers or not). */
static bool array_ok(const struct object *o, const char *key, unsigned n, double min)
{
	const struct member *m = get(o, key);

	return m && m->type == 'a' && m->alen == n && (min < 0 || m->amin >= min);
}

/* Check one invocation: a kvm-plain and a kvm-handler row for vcpus x per_vcpu of backing. */
static void check_kvm(const char *what, char *out, unsigned vcpus, double per_vcpu,
		      const char *backing, double around)
{
	static struct object o;
	const struct member *fe, *m;
	char *line, *save = NULL;
	unsigned lines = 0, seen = 0;
	double pages = vcpus * per_vcpu / PAGE, faults;
	bool handler, stats;

	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (!parse_line(line, &o)) {
			CHECK(0, "%s: line %u is not a JSON object: %s", what, lines, line);
			continue;
		}
		fe = get(&o, "frontend");
		if (!fe || fe->type != 's' ||
		    (strcmp(fe->str, "kvm-plain") && strcmp(fe->str, "kvm-handler"))) {
			CHECK(0, "%s: line %u: frontend is not kvm-plain or kvm-handler", what, lines);
			continue;
		}
		handler = !strcmp(fe->str, "kvm-handler");
		seen |= handler ? 2 : 1;
		m = get(&o, "mode");
		CHECK(m && m->type == 's' && !strcmp(m->str, "kvm"), "%s: %s: mode is not kvm", what,
		      fe->str);
		m = get(&o, "backing");
		CHECK(m && m->type == 's' && !strcmp(m->str, backing), "%s: %s: backing is not %s",
		      what, fe->str, backing);
		CHECK(num(&o, "vcpus") == vcpus, "%s: %s: vcpus %.0f, want %u", what, fe->str,
		      num(&o, "vcpus"), vcpus);
		CHECK(num(&o, "pages") == pages, "%s: %s: pages %.0f, want %.0f", what, fe->str,
		      num(&o, "pages"), pages);
		CHECK(num(&o, "verified_pages") == pages, "%s: %s: verified_pages %.0f of %.0f", what,
		      fe->str, num(&o, "verified_pages"), pages);
		CHECK(num(&o, "seconds") > 0 && num(&o, "pages_per_sec") > 0 &&
		      num(&o, "cpu_us_per_page") > 0, "%s: %s: timings missing or not > 0", what,
		      fe->str);
		CHECK(array_ok(&o, "per_vcpu_pages_per_sec", vcpus, 1e-9),
		      "%s: %s: per_vcpu_pages_per_sec is not one positive number per vCPU", what,
		      fe->str);
		CHECK(array_ok(&o, "per_vcpu_pages", vcpus, per_vcpu / PAGE),
		      "%s: %s: per_vcpu_pages is not %.0f per vCPU", what, fe->str, per_vcpu / PAGE);
		CHECK(array_ok(&o, "per_vcpu_kvm_runs", vcpus, 1),
		      "%s: %s: per_vcpu_kvm_runs is not one count >= 1 per vCPU", what, fe->str);
		/* KVM's binary statistics exist on 6.12 and 6.1: every vCPU took faults and exits */
		m = get(&o, "kvm_stats");
		stats = m && m->type == 'b' && strstr(line, "\"kvm_stats\":true");
		CHECK(stats, "%s: %s: KVM statistics unavailable", what, fe->str);
		CHECK(array_ok(&o, "per_vcpu_pf_taken", vcpus, stats ? 1 : 0) &&
		      array_ok(&o, "per_vcpu_pf_fixed", vcpus, 0) &&
		      array_ok(&o, "per_vcpu_exits", vcpus, stats ? 1 : 0),
		      "%s: %s: per-vCPU KVM fault counts missing or zero", what, fe->str);
		m = get(&o, "note");
		CHECK(m && m->type == 's', "%s: %s: the emulation note is missing", what, fe->str);
		faults = num(&o, "faults");
		if (!handler) {
			/* no pagein: the faults are KVM's, and there is no per-page latency */
			CHECK(faults == num(&o, "kvm_pf_taken") && faults > 0,
			      "%s: kvm-plain: faults %.0f, kvm_pf_taken %.0f", what, faults,
			      num(&o, "kvm_pf_taken"));
			m = get(&o, "lat_p50_us");
			CHECK(m && m->type == 'z', "%s: kvm-plain: lat_p50_us should be null", what);
			CHECK(num(&o, "vs_floor") == 1, "%s: kvm-plain: vs_floor %.3f, want 1", what,
			      num(&o, "vs_floor"));
			continue;
		}
		CHECK(num(&o, "lat_p50_us") > 0 && num(&o, "lat_p99_us") >= num(&o, "lat_p50_us"),
		      "%s: kvm-handler: fault latency missing", what);
		CHECK(num(&o, "vs_floor") > 0, "%s: kvm-handler: vs_floor missing", what);
		CHECK(get(&o, "races_lost") && get(&o, "lib_eexist") && get(&o, "lib_faults_kvm"),
		      "%s: kvm-handler: the library's counters are missing", what);
		CHECK(num(&o, "lib_faults_handler") == faults - num(&o, "lib_faults_kvm"),
		      "%s: kvm-handler: faults %.0f are not handler %.0f + kvm %.0f", what, faults,
		      num(&o, "lib_faults_handler"), num(&o, "lib_faults_kvm"));
		/* every page is missing until a vCPU touches it: one userfaultfd fault per page
		 * (per huge page for hugetlb) with fault-around off, never more than two */
		if (!strcmp(backing, "hugetlb"))
			CHECK(faults >= pages * PAGE / (2 << 20) && faults <= 2 * pages,
			      "%s: kvm-handler: %.0f faults for %.0f huge pages", what, faults,
			      pages * PAGE / (2 << 20));
		else if (around == 1)
			CHECK(faults >= pages && faults <= 2 * pages,
			      "%s: kvm-handler: %.0f faults for %.0f pages with fault-around off", what,
			      faults, pages);
		else
			CHECK(faults > 0 && faults <= 2 * pages, "%s: kvm-handler: %.0f faults", what,
			      faults);
	}
	CHECK(lines == 2, "%s: %u JSON lines, want 2 (kvm-plain, kvm-handler)", what, lines);
	CHECK(seen == 3, "%s: kvm-plain or kvm-handler row missing", what);
}

/* Huge pages the guest reserved (the tier's /init asks for 64). */
static long huge_pages(void)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	long n = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &n) != 1)
		n = 0;
	fclose(f);
	return n;
}

int main(void)
{
	const char *bin = getenv("PAGEIN_BIN");
	char *out;

	if (!bin || !*bin)
		bin = "/bin/pagein";
	if (access("/dev/kvm", F_OK)) {
		printf("t_kvm_bench: SKIP: no /dev/kvm\n");
		return 77;
	}
	if (access(bin, X_OK)) {
		printf("t_kvm_bench: FAIL: %s is not an executable (kvm/mkinitramfs.sh -p puts the "
		       "static pagein there; set PAGEIN_BIN otherwise)\n", bin);
		return 1;
	}
	out = malloc(OUT_MAX);
	if (!out)
		return 1;
	/* the tables go to stderr (the console), the JSON lines here */
	{
		char *const a[] = { (char *)bin, "bench", "--kvm", "-v", "2", "-b", "1M", "--json",
				    NULL };
		if (!run_bench(bin, a, out))
			check_kvm("anon", out, 2, 1 << 20, "anon", 1);
		else
			failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "--kvm", "-v", "2", "-b", "1M", "-s",
				    "shmem", "-r", "v", "-u", "v", "-d", "20", "--json", NULL };
		if (!run_bench(bin, a, out))
			check_kvm("shmem, reader and userfaultfd per vCPU, 20 us delay", out, 2,
				  1 << 20, "shmem", 1);
		else
			failures++;
	}
	if (huge_pages() >= 4) {
		char *const a[] = { (char *)bin, "bench", "--kvm", "-v", "2", "-b", "2M", "-s",
				    "hugetlb", "--around", "auto", "--json", NULL };
		if (!run_bench(bin, a, out))
			check_kvm("hugetlb, around auto", out, 2, 2 << 20, "hugetlb", 0);
		else
			failures++;
	} else {
		printf("t_kvm_bench: hugetlb run skipped: %ld huge pages reserved, want 4\n",
		       huge_pages());
	}
	free(out);
	if (failures) {
		printf("t_kvm_bench: FAIL: %d checks failed\n", failures);
		return 1;
	}
	printf("t_kvm_bench: PASS: pagein bench --kvm at tiny sizes: every JSON line parses, both "
	       "rows, per-vCPU counts, every page verified\n");
	return 0;
}
