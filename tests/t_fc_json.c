// SPDX-License-Identifier: MIT
/*
 * t_fc_json.c - the Firecracker region list parser (lib/fcmap.c): what each Firecracker version
 * sends is accepted with the right numbers (page_size and page_size_kib both in bytes, neither
 * in old versions), and every malformed or inconsistent list is refused with a message that says
 * what is wrong, never half-parsed.
 */
#include "helpers.h"
#include "vmm.h"

struct bad {
	const char *json;
	int ret;           /* expected -errno */
	const char *msg;   /* expected substring of the error */
};

static const struct bad bad[] = {
	{ "", -EINVAL, "empty message" },
	{ "   ", -EINVAL, "empty message" },
	{ "{}", -EINVAL, "expected a JSON array" },
	{ "[]", -EINVAL, "region list is empty" },
	{ "[1]", -EINVAL, "region 0 must be an object" },
	{ "[{}]", -EINVAL, "region 0 is empty" },
	{ "[{\"size\":4096,\"offset\":0}]", -EINVAL, "lacks \"base_host_virt_addr\"" },
	{ "[{\"base_host_virt_addr\":4096,\"offset\":0}]", -EINVAL, "lacks \"size\"" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096}]", -EINVAL, "lacks \"offset\"" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0", -EINVAL,
	  "expected ',' or '}'" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0}", -EINVAL,
	  "ends inside the region array" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0}]x", -EINVAL,
	  "unexpected text after" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0},]", -EINVAL,
	  "region 1 must be an object" },
	{ "[{\"base_host_virt_addr\":4096 \"size\":4096,\"offset\":0}]", -EINVAL,
	  "expected ',' or '}'" },
	{ "[{\"base_host_virt_addr\" 4096,\"size\":4096,\"offset\":0}]", -EINVAL,
	  "expected ':' after a key" },
	{ "[{base_host_virt_addr:4096,\"size\":4096,\"offset\":0}]", -EINVAL,
	  "expected '\"' to start a string" },
	{ "[{\"base_host_virt_addr\":-4096,\"size\":4096,\"offset\":0}]", -EINVAL, "is negative" },
	{ "[{\"base_host_virt_addr\":\"4096\",\"size\":4096,\"offset\":0}]", -EINVAL,
	  "must be a non-negative integer" },
	{ "[{\"base_host_virt_addr\":4096.0,\"size\":4096,\"offset\":0}]", -EINVAL,
	  "no fraction or exponent" },
	{ "[{\"base_host_virt_addr\":4e3,\"size\":4096,\"offset\":0}]", -EINVAL,
	  "no fraction or exponent" },
	{ "[{\"base_host_virt_addr\":04096,\"size\":4096,\"offset\":0}]", -EINVAL,
	  "leading zeros" },
	{ "[{\"base_host_virt_addr\":18446744073709551616,\"size\":4096,\"offset\":0}]", -EINVAL,
	  "does not fit in 64 bits" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"size\":8192,\"offset\":0}]", -EINVAL,
	  "has \"size\" twice" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":\"a\nb\"}]", -EINVAL,
	  "control character" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":\"\\q\"}]", -EINVAL,
	  "unknown escape" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":\"\\u12g4\"}]", -EINVAL,
	  "four hex digits" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":tru}]", -EINVAL,
	  "unexpected character" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":[1,]}]", -EINVAL,
	  "unexpected character" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":01}]", -EINVAL,
	  "expected ',' or '}'" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":1.}]", -EINVAL,
	  "digits must follow '.'" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"x\":"
	  "[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}]", -EINVAL, "nested deeper" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":0,\"offset\":0}]", -EINVAL, "has size 0" },
	{ "[{\"base_host_virt_addr\":4097,\"size\":4096,\"offset\":0}]", -EINVAL,
	  "multiples of its page size" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":100}]", -EINVAL,
	  "multiples of its page size" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4}]", -EINVAL,
	  "looks like KiB" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size_kib\":4}]",
	  -EINVAL, "looks like KiB" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":65536}]",
	  -EINVAL, "not 4096 or 2097152" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,"
	  "\"page_size_kib\":2097152}]", -EINVAL, "disagree" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":2097152}]",
	  -EINVAL, "multiples of its page size" },
	{ "[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0}]", -EINVAL,
	  "wraps around" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0},"
	  "{\"base_host_virt_addr\":8192,\"size\":4096,\"offset\":8192}]", -EINVAL,
	  "overlap in the VMM's memory" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0},"
	  "{\"base_host_virt_addr\":65536,\"size\":4096,\"offset\":4096}]", -EINVAL,
	  "overlap in the memory file" },
};

static void check_bad(const struct bad *b)
{
	struct pi_fc_region r[4];
	char err[PI_ERRLEN];
	int ret;

	ret = pi_fc_parse(b->json, strlen(b->json), r, 4, err, sizeof(err));
	if (ret != b->ret || !strstr(err, b->msg)) {
		fprintf(stderr, "FAIL input %s\n  got %d \"%s\", want %d \"...%s...\"\n", b->json, ret,
			err, b->ret, b->msg);
		exit(1);
	}
	printf("  refused: %-60.60s -> %s\n", b->json, err);
}

int main(void)
{
	struct pi_fc_region r[4];
	char err[PI_ERRLEN], big[4096];
	unsigned i;
	int n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_bad(&bad[i]);

	/* Firecracker >= 1.12: both fields, both bytes; regions back to back in the file */
	{
		const char *j = "[{\"base_host_virt_addr\":140737345323008,\"size\":134217728,"
				"\"offset\":0,\"page_size\":4096,\"page_size_kib\":4096},"
				"{\"base_host_virt_addr\":140737479540736,\"size\":2097152,"
				"\"offset\":134217728,\"page_size\":4096,\"page_size_kib\":4096}]";

		n = pi_fc_parse(j, strlen(j), r, 4, err, sizeof(err));
		T_EQ(n, 2);
		T_EQ(r[0].base, 140737345323008ull);
		T_EQ(r[0].size, 134217728);
		T_EQ(r[1].offset, 134217728);
		T_EQ(r[1].page_size, 4096);
		T_ASSERT(r[0].page_size_given);
	}
	/* 1.7 - 1.11: page_size_kib alone, in bytes; hugetlb 2 MiB; blanks and unknown fields */
	{
		const char *j = " [ { \"size\" : 4194304 , \"base_host_virt_addr\" : 2097152 ,\n"
				"\"offset\":0,\"page_size_kib\":2097152, \"gpa_start\": 0,"
				"\"note\":{\"a\":[true,false,null,-1.5e+3,\"\\u00e9\\n\"]}} ]\n";

		n = pi_fc_parse(j, strlen(j), r, 4, err, sizeof(err));
		T_EQ(n, 1);
		T_EQ(r[0].page_size, 2u << 20);
		T_EQ(r[0].size, 4u << 20);
	}
	/* older versions: neither page size field, 4 KiB assumed and said so */
	{
		const char *j = "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0}]";

		n = pi_fc_parse(j, strlen(j), r, 4, err, sizeof(err));
		T_EQ(n, 1);
		T_EQ(r[0].page_size, 4096);
		T_ASSERT(!r[0].page_size_given);
	}
	/* more regions than the caller has room for */
	{
		size_t len = 0;

		len += (size_t)snprintf(big + len, sizeof(big) - len, "[");
		for (i = 0; i < 5; i++)
			len += (size_t)snprintf(big + len, sizeof(big) - len,
						"%s{\"base_host_virt_addr\":%u,\"size\":4096,"
						"\"offset\":%u}", i ? "," : "", (i + 1) * 8192,
						i * 4096);
		snprintf(big + len, sizeof(big) - len, "]");
		T_EQ(pi_fc_parse(big, strlen(big), r, 4, err, sizeof(err)), -E2BIG);
		printf("  refused: 5 regions with room for 4 -> %s\n", err);
	}
	/* an embedded NUL is not JSON */
	T_EQ(pi_fc_parse("[{\"size\"\0", 9, r, 4, err, sizeof(err)), -EINVAL);
	T_ASSERT(strstr(err, "NUL byte"));

	/* message framing over a stream: complete, incomplete, a bracket inside a string */
	T_EQ(pi_fc_json_end("[{\"a\":1}]", 9), 9);
	T_EQ(pi_fc_json_end("  [{\"a\":1}", 10), 0);
	T_EQ(pi_fc_json_end("[{\"a]\\\"\":1}]xx", 14), 12);
	T_EQ(pi_fc_json_end("{\"a\":1}", 7), -EINVAL);
	T_EQ(pi_fc_json_end("", 0), 0);
	t_pass("fc_json: Firecracker region lists parsed, malformed ones refused with a reason");
}
