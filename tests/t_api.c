// SPDX-License-Identifier: MIT
/*
 * t_api.c - the API can grow without breaking libpagein.so.0: pagein_version() names the
 * library's version (matching the header's major.minor); pagein_config carries its size (set by
 * pagein_config_init), a config whose size was never set is refused, and a larger one from a
 * newer header is accepted only when the fields this library does not know are zero. The
 * structs without a size field keep room in reserved words.
 */
#include <unistd.h>

#include "helpers.h"

int main(void)
{
	struct {
		struct pagein_config c;
		uint64_t newer_field;
	} big;
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_stats st;
	struct pagein_source_ops ops;
	char want[32];
	const char *v = pagein_version();

	t_require_uffd();
	alarm(30);
	T_ASSERT(v && *v);
	snprintf(want, sizeof(want), "%d.%d.", PAGEIN_VERSION_MAJOR, PAGEIN_VERSION_MINOR);
	if (strncmp(v, want, strlen(want))) {
		printf("FAIL: pagein_version() is \"%s\", the header says %s*\n", v, want);
		return 1;
	}
	printf("  pagein_version() = %s\n", v);

	pagein_config_init(&cfg);
	T_EQ(cfg.size, sizeof(cfg));
	T_EQ(pagein_space_new(&cfg, &s), 0);
	pagein_space_free(s);
	cfg.size = 0;
	T_EQ(pagein_space_new(&cfg, &s), -EINVAL);

	memset(&big, 0, sizeof(big));
	pagein_config_init(&big.c);
	big.c.size = sizeof(big);
	T_EQ(pagein_space_new(&big.c, &s), 0);
	pagein_space_free(s);
	big.newer_field = 1;
	T_EQ(pagein_space_new(&big.c, &s), -EINVAL);

	/* reserved room: fixed sizes that new fields fill without moving the old ones */
	T_ASSERT(sizeof(st.reserved) >= 8 * sizeof(uint64_t));
	T_ASSERT(sizeof(ops.reserved) + sizeof(ops.hold) >= 4 * sizeof(void *));
	t_pass("API: version and sized structs");
}
