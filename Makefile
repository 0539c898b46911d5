# SPDX-License-Identifier: MIT
# pagein: one entry point. make | make test | make demo | make bench | make install
# Sources are picked up by wildcard: lib/*.c -> libpagein, tools/*.c -> pagein, tests/t_*.c -> one
# test program each. WERROR=0 relaxes -Werror, V=1 prints commands, SANITIZE=address,undefined
# builds everything with those sanitizers (into build-san/).

CC      ?= cc
WERROR  ?= 1
PREFIX  ?= /usr/local
SANITIZE ?=

ifeq ($(SANITIZE),)
B := build
SANFLAGS :=
else
comma := ,
B := build-san-$(subst $(comma),-,$(SANITIZE))
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

WFLAGS := -Wall -Wextra -Wshadow -Wno-unused-parameter
ifeq ($(WERROR),1)
WFLAGS += -Werror
endif

CFLAGS  ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -Iinclude -Ilib
ALLCFLAGS = -std=c11 $(WFLAGS) $(CFLAGS) $(SANFLAGS) -pthread -MMD -MP
LIBS := -lxxhash -llz4 -lssl -lcrypto -lpthread -lm

LIB_SRC   := $(sort $(wildcard lib/*.c lib/net/*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/t_*.c))
THELP_SRC := tests/helpers.c

LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
PIC_OBJ  := $(LIB_SRC:%.c=$(B)/pic/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(B)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(B)/tests/%)

all: deps $(B)/libpagein.a $(B)/libpagein.so $(B)/pagein.pc $(B)/pagein $(TESTS)

.PHONY: all deps test demo bench install clean soak

deps:
	$(Q)bash scripts/deps.sh build

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(ALLCFLAGS) -c -o $@ $<

$(B)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(ALLCFLAGS) -fPIC -c -o $@ $<

$(B)/libpagein.a: $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# The shared library exports the public API alone: the version script is made from the header,
# so a function is public exactly when include/pagein.h declares it.
$(B)/pagein.map: include/pagein.h
	@mkdir -p $(dir $@)
	$(Q){ echo "PAGEIN_0 { global:"; \
	  sed -n 's/^[a-z].*[ *]\(pagein_[a-z0-9_]*\)(.*/  \1;/p' $<; \
	  echo "local: *; };"; } > $@

$(B)/libpagein.so: $(PIC_OBJ) $(B)/pagein.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SANFLAGS) -Wl,--version-script=$(B)/pagein.map -Wl,-soname,libpagein.so.0 \
		-o $@ $(PIC_OBJ) $(LIBS)

$(B)/pagein.pc: Makefile
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: pagein' 'Description: demand paging of VM and process memory' \
	  'Version: 0.1' 'Requires.private: libxxhash liblz4 libssl libcrypto' \
	  'Libs: -L$${libdir} -lpagein' 'Libs.private: -lpthread' \
	  'Cflags: -I$${includedir}' > $@

$(B)/pagein: $(TOOL_OBJ) $(B)/libpagein.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALLCFLAGS) -o $@ $(TOOL_OBJ) $(B)/libpagein.a $(LIBS)

$(B)/tests/%: tests/%.c $(B)/tests/helpers.o $(B)/tests/proxy.o $(B)/libpagein.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) -Itests $(ALLCFLAGS) -o $@ $< $(B)/tests/helpers.o $(B)/tests/proxy.o \
		$(B)/libpagein.a $(LIBS)

test: all
	$(Q)B=$(B) SANITIZE_BUILD=$(SANITIZE) bash tests/run.sh

demo: all
	$(Q)$(B)/pagein demo

bench: all
	$(Q)bash scripts/deps.sh bench
	$(Q)B=$(B) bash bench/run.sh

soak: all
	$(Q)B=$(B) SOAK=1 bash tests/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/pagein.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/libpagein.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libpagein.so $(DESTDIR)$(PREFIX)/lib/libpagein.so.0
	ln -sf libpagein.so.0 $(DESTDIR)$(PREFIX)/lib/libpagein.so
	install -m 644 $(B)/pagein.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(B)/pagein $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build build-san-*

-include kvm/kvm.mk
-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(B)/tests/helpers.d $(B)/tests/proxy.d
-include fuzz/fuzz.mk
