# x25519chat: make, make check, make install.
PROG = x25519chat
VERSION = 0.1.0

PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=
INSTALL ?= install

CFLAGS ?= -O2 -g
override CFLAGS += -std=c11 -Wall -Wextra -pthread -MMD -MP
override CPPFLAGS += -D_GNU_SOURCE \
	-DX25519CHAT_VERSION='"$(VERSION)"' \
	$(shell $(PKG_CONFIG) --cflags libsodium 2>/dev/null)
override LDFLAGS += -pthread
override LDLIBS += $(shell $(PKG_CONFIG) --libs libsodium 2>/dev/null || echo -lsodium)

OBJS = chat.o say.o term.o trust.o net.o session.o session_send.o \
	session_recv.o session_exec.o proto.o handshake.o sodium_shim.o
LIBOBJS = proto.o handshake.o sodium_shim.o
TESTS = test/unit

# Debian/Ubuntu packages: what the build needs, and what the tests need.
BUILD_PKGS = libsodium-dev pkg-config
CHECK_PKGS = expect python3-cryptography python3-dissononce groff-base \
	valgrind
SAN_PKGS = clang libclang-rt-dev

all: build-deps
	@$(MAKE) --no-print-directory $(PROG)

$(PROG): $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

test/unit: test/unit.o $(LIBOBJS)
	$(CC) $(LDFLAGS) -o $@ test/unit.o $(LIBOBJS) $(LDLIBS)

check: build-deps check-deps
	@$(MAKE) --no-print-directory $(PROG) $(TESTS)
	@sh test/run.sh

build-deps:
	@sh test/deps.sh $(BUILD_PKGS)

check-deps:
	@sh test/deps.sh $(CHECK_PKGS)

san-deps:
	@sh test/deps.sh $(SAN_PKGS)

# The whole test suite again with sanitizers, each from a clean tree.
SAN_CFLAGS = -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all
check-asan: san-deps
	$(MAKE) clean
	$(MAKE) check CC=clang CFLAGS="$(SAN_CFLAGS) -fsanitize=address,undefined" \
	    LDFLAGS="-fsanitize=address,undefined"
	$(MAKE) clean

check-tsan: san-deps
	$(MAKE) clean
	$(MAKE) check CC=clang CFLAGS="$(SAN_CFLAGS) -fsanitize=thread" \
	    LDFLAGS="-fsanitize=thread"
	$(MAKE) clean

# libFuzzer targets, each run FUZZ_SECONDS (default 60) on its seed corpus.
fuzz: san-deps
	sh fuzz/run.sh

# x25519chat beside plain TCP, TLS, ncat and spiped: one table.
BENCH_PKGS = socat ncat spiped openssl iproute2
bench: all
	@sh test/deps.sh $(BENCH_PKGS) python3-cryptography
	@$(MAKE) --no-print-directory bench/aead
	/usr/bin/python3 bench/bench.py

bench/aead: bench/aead.o
	$(CC) $(LDFLAGS) -o $@ bench/aead.o $(LDLIBS)

# The unit tests under valgrind (a whole session runs under it in check).
check-valgrind: check-deps
	@$(MAKE) --no-print-directory test/unit
	UNIT_NO_GIB=1 valgrind -q --leak-check=full --error-exitcode=1 \
	    ./test/unit test/vectors

# On CPUs without AES-NI: an arm64 build under qemu-aarch64, and this build
# under qemu-x86_64 -cpu Nehalem, each against this build (installs the
# cross compiler, arm64 libsodium and qemu-user when missing).
check-cpus: all
	@sh test/cpus.sh

.PHONY: check-cpus

# Resource bounds at full size: 10 GiB through one session, 1,000 sessions.
bounds: all check-deps
	BOUNDS_GIB=10 BOUNDS_SESSIONS=1000 /usr/bin/python3 test/bounds.py

install: all
	$(INSTALL) -d -m 755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	$(INSTALL) -m 755 $(PROG) $(DESTDIR)$(BINDIR)/$(PROG)
	$(INSTALL) -m 644 man/$(PROG).1 $(DESTDIR)$(MANDIR)/man1/$(PROG).1

clean:
	rm -f $(PROG) $(TESTS) bench/aead *.o *.d test/*.o test/*.d bench/*.o \
	    bench/*.d
	rm -rf fuzz/build

.PHONY: all check check-asan check-tsan check-valgrind bounds bench fuzz \
	build-deps check-deps san-deps install clean

-include $(OBJS:.o=.d) test/unit.d bench/aead.d
