#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# install.sh - what `make install` gives a user, checked the way a user meets it: install into a
# temporary PREFIX, then build examples/lazy-restore.c against it with nothing but
# `pkg-config --cflags --libs pagein` (PKG_CONFIG_PATH) and run it, linked with the shared
# library and statically. Also: the .pc names that PREFIX, every public header and man page is
# installed, and the installed static archive exposes the public API alone (nm). Run by
# tests/run.sh; SANITIZE_BUILD names the sanitizers of the build under test.
set -uo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL install: $*"; exit 1; }
tmp=$(mktemp -d /tmp/pagein-install.XXXXXX) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
san=${SANITIZE_BUILD:-}

make -s install SANITIZE="$san" PREFIX="$prefix" >"$tmp/make.log" 2>&1 ||
	{ cat "$tmp/make.log"; fail "make install PREFIX=$prefix failed"; }

pc=$prefix/lib/pkgconfig/pagein.pc
[ -f "$pc" ] || fail "$pc was not installed"
grep -qx "prefix=$prefix" "$pc" || fail "$pc does not name PREFIX $prefix: $(grep '^prefix=' "$pc")"
grep -qx "Version: $(cat VERSION)" "$pc" || fail "$pc: Version is not VERSION's $(cat VERSION)"
for h in include/pagein*.h; do
	[ -f "$prefix/include/${h#include/}" ] || fail "public header $h was not installed"
done
for m in docs/man/*.[13]; do
	[ -e "$m" ] || continue
	[ -f "$prefix/share/man/man${m##*.}/${m##*/}" ] || fail "man page $m was not installed"
done

# The installed archive: its defined global symbols are exactly the public API.
bad=$(nm -g --defined-only "$prefix/lib/libpagein.a" | awk 'NF == 3 { print $3 }' |
	grep -v '^pagein_' | head -5)
[ -z "$bad" ] || fail "libpagein.a exports internal symbols: $bad"
nm -g --defined-only "$prefix/lib/libpagein.a" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/a.syms"
sed -n 's/^[a-z].*[ *]\(pagein_[a-z0-9_]*\)(.*/\1/p' include/pagein*.h | sort -u >"$tmp/h.syms"
diff -u "$tmp/h.syms" "$tmp/a.syms" >"$tmp/syms.diff" ||
	{ cat "$tmp/syms.diff"; fail "libpagein.a's global symbols differ from the public headers' API"; }

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=$(pkg-config --cflags --libs pagein) || fail "pkg-config --cflags --libs pagein failed"
sanflags=${san:+-fsanitize=$san}
cc -std=c11 $sanflags -o "$tmp/shared" examples/lazy-restore.c $flags >"$tmp/cc.log" 2>&1 ||
	{ cat "$tmp/cc.log"; fail "building against the installed library: cc ... $flags"; }
# (into a file: with pipefail, grep -q quitting early would fail ldd with SIGPIPE)
LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/shared" >"$tmp/ldd.txt" 2>&1
grep -q "$prefix/lib/libpagein.so.0" "$tmp/ldd.txt" ||
	{ cat "$tmp/ldd.txt"; fail "the program is not linked with the installed libpagein.so.0"; }
LD_LIBRARY_PATH=$prefix/lib "$tmp/shared" || fail "the program linked with libpagein.so failed"

if [ -n "$san" ]; then
	echo "static link skipped: sanitizer runtimes do not link -static"
else
	sflags=$(pkg-config --static --cflags --libs pagein) || fail "pkg-config --static failed"
	cc -std=c11 -static -o "$tmp/static" examples/lazy-restore.c $sflags >"$tmp/cc.log" 2>&1 ||
		{ cat "$tmp/cc.log"; fail "static build: cc -static ... $sflags"; }
	"$tmp/static" || fail "the statically linked program failed"
fi
echo "PASS install: PREFIX=$prefix, pkg-config, shared${san:+ (static skipped)}${san:- and static}, public symbols only"
