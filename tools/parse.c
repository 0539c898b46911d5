// SPDX-License-Identifier: MIT
/*
 * parse.c - the one parser for every number the pagein command takes: counts, seeds, sizes with
 * K/M/G/T and fractions, seconds, ports. The parse_* functions return 0 or -errno (-EINVAL: not
 * a number of that kind, -ERANGE: it overflows, -EDOM: a port outside 1..65535) and never print; the opt_* wrappers name the
 * option, give the accepted range and exit with EXIT_USAGE, so no option is accepted silently.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"
#include "ctl.h"

int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10, d;
	const char *p = s;

	/* strtoull would take blanks, a sign (wrapping "-1" to 2^64-1) and octal: we take none */
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (!*p)
		return -EINVAL;
	for (; *p; p++) {
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return -EINVAL;
		if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v))
			return -ERANGE;
	}
	*out = v;
	return 0;
}

int parse_size_bytes(const char *s, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, frac_div = 1, mult = 1, v, part;
	const char *p = s;
	bool has_frac = false;
	unsigned nd = 0;

	for (; *p >= '0' && *p <= '9'; p++, nd++)
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(*p - '0'), &whole))
			return -ERANGE;
	if (*p == '.') {
		has_frac = true;
		for (p++; *p >= '0' && *p <= '9'; p++, nd++) {
			/* 18 fraction digits are more than any unit (2^40) can resolve */
			if (frac_div < 1000000000000000000ull) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_div *= 10;
			}
		}
	}
	if (!nd)
		return -EINVAL;
	switch (*p) {
	case 'k': case 'K': mult = 1ull << 10; p++; break;
	case 'm': case 'M': mult = 1ull << 20; p++; break;
	case 'g': case 'G': mult = 1ull << 30; p++; break;
	case 't': case 'T': mult = 1ull << 40; p++; break;
	default: break;
	}
	/* KiB, KB, Ki, B: all binary units, as everywhere in pagein */
	if (mult > 1 && *p == 'i')
		p++;
	if (*p == 'B')
		p++;
	if (*p || (has_frac && mult == 1)) /* "1.5" bytes is not a size */
		return -EINVAL;
	if (__builtin_mul_overflow(whole, mult, &v))
		return -ERANGE;
	/* frac / frac_div of a unit, rounded down to a whole byte (frac < frac_div <= 10^18,
	 * mult <= 2^40: the product needs 128 bits) */
	part = (uint64_t)((unsigned __int128)frac * mult / frac_div);
	if (__builtin_add_overflow(v, part, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (!(*s >= '0' && *s <= '9') && *s != '.')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end)
		return -EINVAL;
	if (errno == ERANGE || !isfinite(v))
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_hostport(const char *s, bool zero_ok, unsigned *port)
{
	const char *colon = strrchr(s, ':');
	uint64_t v;
	int ret;

	if (!colon || colon == s)
		return -EINVAL;
	/* an IPv6 literal must be bracketed, or its last group would read as the port */
	if (s[0] == '[' && colon[-1] != ']')
		return -EINVAL;
	ret = parse_u64(colon + 1, &v);
	if (ret < 0)
		return ret;
	if (v > 65535 || (!v && !zero_ok))
		return -EDOM;
	*port = (unsigned)v;
	return 0;
}

/* A size as the user would write it: the largest binary unit that divides it. */
static void fmt_size(char *buf, size_t len, uint64_t v)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && v && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%" PRIu64 "%.*s", v, u >= 0, u >= 0 ? &units[u] : "");
}

/* err: -EINVAL not such a number, -ERANGE past 64 bits, -EDOM outside range. */
static void __attribute__((noreturn)) bad(const char *opt, const char *arg, int err,
					  const char *what, const char *range)
{
	if (err == -ERANGE)
		die_code(EXIT_USAGE, "%s: '%s' is too large: it overflows 64 bits (%s)", opt, arg,
			 range);
	if (err == -EDOM)
		die_code(EXIT_USAGE, "%s: '%s' is out of range (%s)", opt, arg, range);
	die_code(EXIT_USAGE, "%s: '%s' is not %s (%s)", opt, arg, what, range);
}

uint64_t opt_u64(const char *opt, const char *arg, uint64_t min, uint64_t max)
{
	char range[64];
	uint64_t v;
	int ret;

	snprintf(range, sizeof(range), "%" PRIu64 "..%" PRIu64, min, max);
	ret = parse_u64(arg, &v);
	if (ret == 0 && (v < min || v > max))
		ret = -EDOM;
	if (ret < 0)
		bad(opt, arg, ret, "a whole number", range);
	return v;
}

unsigned opt_uint(const char *opt, const char *arg, unsigned min, unsigned max)
{
	return (unsigned)opt_u64(opt, arg, min, max);
}

uint64_t opt_size(const char *opt, const char *arg, uint64_t min, uint64_t max)
{
	char range[96], lo[32], hi[32];
	uint64_t v;
	int ret;

	fmt_size(lo, sizeof(lo), min);
	fmt_size(hi, sizeof(hi), max);
	snprintf(range, sizeof(range), "%s..%s; examples: 4096, 64K, 1.5G, 2T", lo, hi);
	ret = parse_size_bytes(arg, &v);
	if (ret == 0 && (v < min || v > max))
		ret = -EDOM;
	if (ret < 0)
		bad(opt, arg, ret, "a size", range);
	return v;
}

double opt_seconds(const char *opt, const char *arg, double min, double max)
{
	char range[64];
	double v;
	int ret;

	snprintf(range, sizeof(range), "%g..%g seconds", min, max);
	ret = parse_seconds(arg, &v);
	if (ret == 0 && (v < min || v > max))
		ret = -EDOM;
	if (ret < 0)
		bad(opt, arg, ret, "a number of seconds", range);
	return v;
}

void opt_hostport(const char *opt, const char *arg, bool zero_ok)
{
	unsigned port;
	int ret = parse_hostport(arg, zero_ok, &port);

	if (ret < 0)
		bad(opt, arg, ret, "HOST:PORT", zero_ok ? "port 0..65535, 0 for a free one"
							: "port 1..65535");
}

uint64_t parse_size(const char *s)
{
	return opt_size("size", s, 0, UINT64_MAX);
}

int parse_rate(const char *s, uint64_t *out)
{
	size_t n = strlen(s);
	char buf[64];

	/* "100M/s" reads as "100M" */
	if (n >= 2 && n < sizeof(buf) && !strcmp(s + n - 2, "/s")) {
		memcpy(buf, s, n - 2);
		buf[n - 2] = 0;
		s = buf;
	}
	return parse_size_bytes(s, out);
}
