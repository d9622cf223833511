# kfsmtp — build, test and install. Every variable can be overridden:
#   make                     the C module for Lua 5.4
#   make LUA=luajit          the same for LuaJIT (OpenResty's luajit2)
#   make check               both builds, then every spec under both
#   make install PREFIX=/usr/local DESTDIR=/tmp/pkg

LUA ?= lua5.4
LUA_PC ?= $(if $(filter luajit,$(LUA)),luajit,$(LUA))
LUA_ABI ?= $(if $(filter luajit,$(LUA)),5.1,$(patsubst lua%,%,$(LUA)))
CC ?= cc
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
DESTDIR ?=
LUA_CMOD_DIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_LMOD_DIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
BIN_DIR ?= $(PREFIX)/bin
WWW_DIR ?= $(PREFIX)/share/kfsmtp/www

# Lua's own warning set, plus -Werror.
WARN = -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
       -Wpointer-arith -Wwrite-strings -Wundef
OPT ?= -O2 -g
CFLAGS ?= $(OPT)
SAN_FLAGS ?=
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(SAN_FLAGS) \
             $(shell $(PKG_CONFIG) --cflags $(LUA_PC) libcurl openssl libpq)
# The module is not linked against the Lua library: the host process has it.
LIBS = $(shell $(PKG_CONFIG) --libs libcurl openssl libpq) -lpthread

BUILD ?= build/$(LUA)
SRC = csrc/core.c csrc/buffer.c csrc/deadline.c csrc/delivery.c csrc/delivery_lua.c csrc/encode_lua.c csrc/luafield.c \
      csrc/message.c csrc/message_lua.c csrc/password.c csrc/password_lua.c csrc/pgstore.c csrc/pgstore_lua.c \
      csrc/sealing.c csrc/sealing_lua.c csrc/secretfile.c csrc/secretfile_lua.c csrc/session.c csrc/store.c csrc/store_lua.c \
      csrc/tls.c csrc/token.c csrc/tokencache.c \
      csrc/token_lua.c csrc/validate.c csrc/validate_lua.c csrc/vocab.c
HDR = $(wildcard csrc/*.h)
OBJ = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRC))
MODULE = $(BUILD)/kfsmtp/core.so

.PHONY: all luajit both clang rock exim check check-asan lint fuzz bench test deps demo demo-cluster serve install uninstall clean

all: $(MODULE)

$(BUILD)/obj/%.o: csrc/%.c $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(MODULE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN_FLAGS) -o $@ $(OBJ) $(LIBS)

luajit:
	$(MAKE) LUA=luajit

both:
	$(MAKE) LUA=lua5.4
	$(MAKE) LUA=luajit

# The same sources under clang's warnings (compile check; the module is not used).
clang:
	$(MAKE) CC=clang BUILD=build/clang

# luarocks builds the rockspec into a throwaway tree. Debian keeps curl.h in
# the multiarch folder, which luarocks 3.8 does not search on its own, and
# libpq-fe.h in a folder of its own, which pkg-config knows.
MULTIARCH ?= $(shell $(CC) -print-multiarch)
PQ_INCDIR ?= $(shell $(PKG_CONFIG) --variable=includedir libpq)
rock:
	rm -rf build/rocktree
	luarocks --lua-version=5.4 make --deps-mode=none --tree build/rocktree \
	  rockspec/kfsmtp-scm-1.rockspec CURL_INCDIR=/usr/include/$(MULTIARCH) \
	  OPENSSL_INCDIR=/usr/include OPENSSL_LIBDIR=/usr/lib/$(MULTIARCH) \
	  CURL_LIBDIR=/usr/lib/$(MULTIARCH) PQ_INCDIR=$(PQ_INCDIR) PQ_LIBDIR=/usr/lib/$(MULTIARCH) > build/rock.log 2>&1 || { cat build/rock.log; exit 1; }
	rm -rf csrc/*.o kfsmtp  # luarocks' builtin backend builds in the source tree
	LUA_PATH='build/rocktree/share/lua/5.4/?.lua;;' LUA_CPATH='build/rocktree/lib/lua/5.4/?.so;;' \
	  lua5.4 -e 'local k = require "kfsmtp"; assert(k.get({store = "build/rock-store.json"})); print("luarocks build: " .. k._VERSION)'

# The whole suite (Lua 5.4) against a module built with AddressSanitizer and
# UndefinedBehaviorSanitizer; any report aborts the spec that caused it.
# Leaks are valgrind's job (spec/memcheck_spec.lua) and the fuzzers'.
ASAN_BUILD = build/asan
ASAN_RUNTIME = $(shell $(CC) -print-file-name=libasan.so)
check-asan: exim
	$(MAKE) LUA=luajit
	$(MAKE) LUA=lua5.4 BUILD=$(ASAN_BUILD) OPT="-O1 -g" \
	  SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	KFSMTP_BUILD=$(ASAN_BUILD) LD_PRELOAD=$(ASAN_RUNTIME) \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  SPECS=spec ONLY=lua5.4 sh scripts/check.sh

# libFuzzer targets (clang, with ASan and UBSan) for the input rules, message
# composition and the store reader, each for FUZZ_SECONDS from fuzz/corpus/.
# A crash, leak or sanitizer report stops `make fuzz` with the input saved
# in build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS = -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  $(shell $(PKG_CONFIG) --cflags lua5.4 libcurl openssl libpq)
FUZZ_LIBS = $(shell $(PKG_CONFIG) --libs lua5.4 libcurl openssl libpq) -lpthread -lm -ldl
FUZZ_TARGETS = validate compose store
fuzz:
	@mkdir -p build/fuzz
	@for t in $(FUZZ_TARGETS); do \
	  $(FUZZ_CC) $(FUZZ_FLAGS) -o build/fuzz/fuzz_$$t fuzz/fuzz_$$t.c $(SRC) $(FUZZ_LIBS) || exit 1; \
	done
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 \
	    -artifact_prefix=build/fuzz/$$t- build/fuzz/corpus-$$t fuzz/corpus/$$t \
	    > build/fuzz/$$t.log 2>&1 || { tail -40 build/fuzz/$$t.log; exit 1; }; \
	  grep -a "DONE" build/fuzz/$$t.log | tail -1; \
	  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" build/fuzz/$$t.log; \
	done

# Benchmarks (not tests: nothing fails on a number). QUICK=1 for the short
# form CI runs so that it cannot rot.
bench: deps both
	/usr/bin/python3 bench/bench.py $(if $(QUICK),--quick)

# Installs the Debian packages the build, the specs and the demo need
# (only those missing, so it is quick and offline once done).
deps:
	@sh scripts/deps.sh

# luacheck (Debian's lua-check) with .luacheckrc: must report 0 warnings.
lint:
	luacheck --no-color lua bin/kfsmtp spec bench scripts

# Exim for spec/realmail_spec.lua, unpacked from Debian's package into
# build/exim (it cannot be installed beside postfix); once, then offline.
exim:
	@sh scripts/exim.sh

check: both clang rock exim
	@sh scripts/check.sh

test: check

demo: deps all
	@sh scripts/demo.sh

# The main job for several nodes: a throwaway PostgreSQL, a key file, a
# capture SMTP server and two nginx nodes sharing the database; a profile
# PUT through one is read and tested through the other. Everything it
# starts is stopped at the end, on a failure too (scripts/demo_cluster.lua).
demo-cluster: deps both
	@lua5.4 scripts/demo_cluster.lua

# The HTTP API on 127.0.0.1:$(PORT) (default 8080) until Ctrl-C.
serve: deps both
	@sh scripts/serve.sh

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_CMOD_DIR)/kfsmtp $(DESTDIR)$(LUA_LMOD_DIR)/kfsmtp $(DESTDIR)$(BIN_DIR)
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_CMOD_DIR)/kfsmtp/core.so
	install -m 0644 lua/kfsmtp.lua $(DESTDIR)$(LUA_LMOD_DIR)/kfsmtp.lua
	install -m 0644 lua/kfsmtp/*.lua $(DESTDIR)$(LUA_LMOD_DIR)/kfsmtp/
	sed '1s|.*|#!/usr/bin/env $(LUA)|' bin/kfsmtp > $(DESTDIR)$(BIN_DIR)/kfsmtp
	chmod 0755 $(DESTDIR)$(BIN_DIR)/kfsmtp
	install -d $(DESTDIR)$(WWW_DIR)
	install -m 0644 www/index.html www/smtp.css www/smtp.js www/favicon.svg $(DESTDIR)$(WWW_DIR)/

uninstall:
	rm -f $(DESTDIR)$(LUA_CMOD_DIR)/kfsmtp/core.so $(DESTDIR)$(LUA_LMOD_DIR)/kfsmtp.lua \
	      $(DESTDIR)$(BIN_DIR)/kfsmtp
	rm -rf $(DESTDIR)$(LUA_LMOD_DIR)/kfsmtp $(DESTDIR)$(WWW_DIR)

clean:
	rm -rf build csrc/*.o kfsmtp
