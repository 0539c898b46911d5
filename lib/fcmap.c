// SPDX-License-Identifier: MIT
/*
 * fcmap.c - Firecracker's guest memory description: the JSON array of GuestRegionUffdMapping
 * objects a VMM sends with its userfaultfd (docs/firecracker.md). A small strict JSON reader
 * (no dependency; the input is one short message) and the checks that keep a wrong description
 * from being served: every error names what was wrong and at which byte.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmm.h"

#define JSON_MAX_DEPTH 16 /* nesting allowed inside unknown fields */
#define KEY_MAX 64        /* longest key compared; longer ones are unknown by definition */

struct jp {
	const char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
};

static int fail(struct jp *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct jp *p, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (p->err && p->errlen && p->pos == SIZE_MAX)
		snprintf(p->err, p->errlen, "region list: %s", what);
	else if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "region list JSON, byte %zu: %s", p->pos, what);
	return -EINVAL;
}

static void blanks(struct jp *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
				   p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
		p->pos++;
}

static int peek(struct jp *p)
{
	blanks(p);
	return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int expect(struct jp *p, char c, const char *where)
{
	int got = peek(p);

	if (got != c) {
		if (got < 0)
			return fail(p, "the text ends where '%c' was expected %s", c, where);
		return fail(p, "expected '%c' %s, found '%c'", c, where, got);
	}
	p->pos++;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A string at the cursor. Its decoded bytes go to out (up to outsz - 1, NUL-terminated; *trunc
 * says whether it did not fit) when out is not NULL. \u escapes other than plain ASCII are
 * checked and kept as '?': keys we know are ASCII, so this never changes a match.
 */
static int string(struct jp *p, char *out, size_t outsz, bool *trunc)
{
	size_t n = 0;
	int c, i, v;

	if (expect(p, '"', "to start a string"))
		return -EINVAL;
	if (trunc)
		*trunc = false;
	for (;;) {
		if (p->pos >= p->len)
			return fail(p, "unterminated string");
		c = (unsigned char)p->s[p->pos];
		if (c == '"') {
			p->pos++;
			break;
		}
		if (c < 0x20)
			return fail(p, "control character 0x%02x inside a string", c);
		p->pos++;
		if (c == '\\') {
			if (p->pos >= p->len)
				return fail(p, "unterminated escape");
			c = (unsigned char)p->s[p->pos++];
			switch (c) {
			case '"': case '\\': case '/': break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				for (i = 0, v = 0; i < 4; i++) {
					int h = p->pos < p->len ? hexval(p->s[p->pos]) : -1;

					if (h < 0)
						return fail(p, "\\u needs four hex digits");
					v = v * 16 + h;
					p->pos++;
				}
				c = v < 0x80 ? v : '?';
				break;
			default:
				p->pos--;
				return fail(p, "unknown escape '\\%c'", c);
			}
		}
		if (out) {
			if (n + 1 < outsz)
				out[n++] = (char)c;
			else if (trunc)
				*trunc = true;
		}
	}
	if (out)
		out[n] = 0;
	return 0;
}

/* An unsigned integer for a known field: digits only, no leading zero, fits in 64 bits. */
static int uint_value(struct jp *p, const char *key, uint64_t *v)
{
	size_t start;
	int c = peek(p);

	start = p->pos;
	if (c == '-')
		return fail(p, "\"%s\" is negative", key);
	if (c < '0' || c > '9')
		return fail(p, "\"%s\" must be a non-negative integer", key);
	*v = 0;
	while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
		unsigned d = (unsigned)(p->s[p->pos] - '0');

		if (*v > (UINT64_MAX - d) / 10) {
			p->pos = start;
			return fail(p, "\"%s\" does not fit in 64 bits", key);
		}
		*v = *v * 10 + d;
		p->pos++;
	}
	if (p->s[start] == '0' && p->pos - start > 1) {
		p->pos = start;
		return fail(p, "\"%s\": a number may not have leading zeros", key);
	}
	if (p->pos < p->len && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
		return fail(p, "\"%s\" must be an integer (no fraction or exponent)", key);
	return 0;
}

/* Any JSON number (for unknown fields): the RFC 8259 grammar, nothing more. */
static int any_number(struct jp *p)
{
	size_t d;

	if (p->pos < p->len && p->s[p->pos] == '-')
		p->pos++;
	if (p->pos < p->len && p->s[p->pos] == '0') {
		p->pos++;
	} else {
		for (d = 0; p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9'; d++)
			p->pos++;
		if (!d)
			return fail(p, "malformed number");
	}
	if (p->pos < p->len && p->s[p->pos] == '.') {
		p->pos++;
		for (d = 0; p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9'; d++)
			p->pos++;
		if (!d)
			return fail(p, "malformed number: digits must follow '.'");
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		for (d = 0; p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9'; d++)
			p->pos++;
		if (!d)
			return fail(p, "malformed number: digits must follow the exponent");
	}
	return 0;
}

static int literal(struct jp *p, const char *word)
{
	size_t n = strlen(word);

	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n))
		return fail(p, "unexpected character '%c'", p->s[p->pos]);
	p->pos += n;
	return 0;
}

/* Any JSON value (an unknown field's), checked and skipped. */
static int skip_value(struct jp *p, int depth)
{
	int c = peek(p);

	if (depth > JSON_MAX_DEPTH)
		return fail(p, "nested deeper than %d levels", JSON_MAX_DEPTH);
	switch (c) {
	case -1:
		return fail(p, "the text ends where a value was expected");
	case '"':
		return string(p, NULL, 0, NULL);
	case 't':
		return literal(p, "true");
	case 'f':
		return literal(p, "false");
	case 'n':
		return literal(p, "null");
	case '[':
		p->pos++;
		if (peek(p) == ']') {
			p->pos++;
			return 0;
		}
		for (;;) {
			if (skip_value(p, depth + 1))
				return -EINVAL;
			c = peek(p);
			p->pos++;
			if (c == ']')
				return 0;
			if (c != ',') {
				p->pos--;
				return fail(p, "expected ',' or ']' in an array");
			}
		}
	case '{':
		p->pos++;
		if (peek(p) == '}') {
			p->pos++;
			return 0;
		}
		for (;;) {
			if (string(p, NULL, 0, NULL) || expect(p, ':', "after a key") ||
			    skip_value(p, depth + 1))
				return -EINVAL;
			c = peek(p);
			p->pos++;
			if (c == '}')
				return 0;
			if (c != ',') {
				p->pos--;
				return fail(p, "expected ',' or '}' in an object");
			}
		}
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return any_number(p);
		return fail(p, "unexpected character '%c'", c);
	}
}

enum { F_BASE, F_SIZE, F_OFFSET, F_PAGE, F_PAGE_KIB, F_N };
static const char *const field_names[F_N] = {
	"base_host_virt_addr", "size", "offset", "page_size", "page_size_kib",
};

/* One region object at the cursor. */
static int region(struct jp *p, unsigned idx, struct pi_fc_region *r)
{
	uint64_t v[F_N] = { 0 };
	bool seen[F_N] = { false };
	char key[KEY_MAX];
	size_t obj = p->pos;
	bool trunc;
	int c, f;

	if (peek(p) != '{')
		return fail(p, "region %u must be an object", idx);
	p->pos++;
	if (peek(p) == '}')
		return fail(p, "region %u is empty", idx);
	for (;;) {
		size_t kpos = p->pos;

		if (string(p, key, sizeof(key), &trunc) || expect(p, ':', "after a key"))
			return -EINVAL;
		for (f = 0; f < F_N; f++)
			if (!trunc && !strcmp(key, field_names[f]))
				break;
		if (f < F_N) {
			if (seen[f]) {
				p->pos = kpos;
				return fail(p, "region %u has \"%s\" twice", idx, field_names[f]);
			}
			seen[f] = true;
			if (uint_value(p, field_names[f], &v[f]))
				return -EINVAL;
		} else if (skip_value(p, 1)) {
			return -EINVAL; /* unknown fields are allowed, broken JSON is not */
		}
		c = peek(p);
		p->pos++;
		if (c == '}')
			break;
		if (c != ',') {
			p->pos--;
			return fail(p, "expected ',' or '}' in region %u", idx);
		}
	}
	for (f = F_BASE; f <= F_OFFSET; f++)
		if (!seen[f]) {
			p->pos = obj;
			return fail(p, "region %u lacks \"%s\"", idx, field_names[f]);
		}
	r->base = v[F_BASE];
	r->size = v[F_SIZE];
	r->offset = v[F_OFFSET];
	r->page_size_given = seen[F_PAGE] || seen[F_PAGE_KIB];
	/* both are bytes (page_size_kib's name is wrong, Firecracker says so): they must agree */
	if (seen[F_PAGE] && seen[F_PAGE_KIB] && v[F_PAGE] != v[F_PAGE_KIB]) {
		p->pos = obj;
		return fail(p, "region %u: page_size %llu and page_size_kib %llu disagree (both are "
			    "bytes)", idx, (unsigned long long)v[F_PAGE],
			    (unsigned long long)v[F_PAGE_KIB]);
	}
	r->page_size = seen[F_PAGE] ? v[F_PAGE] : seen[F_PAGE_KIB] ? v[F_PAGE_KIB] : 4096;
	return 0;
}

/* The checks on one region's numbers, then on all of them together. */
static int check_regions(struct jp *p, struct pi_fc_region *r, unsigned n)
{
	unsigned i, j;

	p->pos = SIZE_MAX; /* the text was fine: these messages name regions, not bytes */
	for (i = 0; i < n; i++) {
		uint64_t ps = r[i].page_size;

		if (ps != 4096 && ps != 2ull << 20) {
			if (ps == 4 || ps == 2048)
				return fail(p, "region %u: page size %llu looks like KiB; Firecracker "
					    "sends bytes (4096 or 2097152)", i,
					    (unsigned long long)ps);
			return fail(p, "region %u: page size %llu is not 4096 or 2097152", i,
				    (unsigned long long)ps);
		}
		if (!r[i].size)
			return fail(p, "region %u has size 0", i);
		if (r[i].base % ps || r[i].size % ps || r[i].offset % ps)
			return fail(p, "region %u: base_host_virt_addr 0x%llx, size %llu and offset "
				    "%llu must be multiples of its page size %llu", i,
				    (unsigned long long)r[i].base, (unsigned long long)r[i].size,
				    (unsigned long long)r[i].offset, (unsigned long long)ps);
		if (r[i].base + r[i].size < r[i].base || r[i].offset + r[i].size < r[i].offset)
			return fail(p, "region %u wraps around the end of the address space", i);
	}
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++) {
			if (r[i].base < r[j].base + r[j].size && r[j].base < r[i].base + r[i].size)
				return fail(p, "regions %u and %u overlap in the VMM's memory", i, j);
			if (r[i].offset < r[j].offset + r[j].size &&
			    r[j].offset < r[i].offset + r[i].size)
				return fail(p, "regions %u and %u overlap in the memory file", i, j);
		}
	return 0;
}

int pi_fc_parse(const char *json, size_t len, struct pi_fc_region *out, unsigned max, char *err,
		size_t errlen)
{
	struct jp p = { json, len, 0, err, errlen };
	unsigned n = 0;
	int c;

	if (err && errlen)
		err[0] = 0;
	if (len > PI_FC_MAX_JSON)
		return fail(&p, "longer than %d bytes", PI_FC_MAX_JSON);
	if (memchr(json, 0, len)) {
		p.pos = (size_t)((const char *)memchr(json, 0, len) - json);
		return fail(&p, "NUL byte in the text");
	}
	c = peek(&p);
	if (c < 0)
		return fail(&p, "empty message: expected a JSON array of regions");
	if (c != '[')
		return fail(&p, "expected a JSON array of regions ('['), found '%c'", c);
	p.pos++;
	if (peek(&p) == ']')
		return fail(&p, "the region list is empty");
	for (;;) {
		if (n == max) {
			if (err && errlen)
				snprintf(err, errlen, "region list JSON: more than %u regions", max);
			return -E2BIG;
		}
		if (region(&p, n, &out[n]))
			return -EINVAL;
		n++;
		c = peek(&p);
		p.pos++;
		if (c == ']')
			break;
		if (c != ',') {
			p.pos--;
			if (c < 0)
				return fail(&p, "the text ends inside the region array");
			return fail(&p, "expected ',' or ']' after region %u", n - 1);
		}
	}
	if (peek(&p) >= 0)
		return fail(&p, "unexpected text after the region array");
	if (check_regions(&p, out, n))
		return -EINVAL;
	return (int)n;
}

long pi_fc_json_end(const char *buf, size_t len)
{
	size_t i = 0;
	long depth = 0;
	bool in_str = false;

	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'))
		i++;
	if (i == len)
		return 0;
	if (buf[i] != '[')
		return -EINVAL;
	for (; i < len; i++) {
		char c = buf[i];

		if (in_str) {
			if (c == '\\')
				i++; /* the escaped byte cannot end the string */
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"')
			in_str = true;
		else if (c == '[' || c == '{')
			depth++;
		else if ((c == ']' || c == '}') && --depth == 0)
			return (long)(i + 1);
	}
	return 0;
}
