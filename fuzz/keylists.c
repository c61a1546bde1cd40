/*
 * Fuzz target keylists: the input is the contents of a key list file,
 * read by the program's own parsers: chat.c's for_each_line() with
 * allow_line() (an --allow file) and with known_line() (a known_peers
 * file, looking for FUZZ_HOSTPORT), called just as setup_keys() calls
 * them.  chat.c keeps these static, so it is included here whole, its
 * main() renamed.  The input goes into a memory file opened again by its
 * /proc path each run; the error lines the parsers print go to stderr
 * (run.sh closes it with -close_fd_mask=2).
 */

#define main x25519chat_main
#include "../chat.c"
#undef main

#include <sys/mman.h>

#include "fuzz.h"

static char path[64];
static int memfd = -1;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{

	(void)argc;
	(void)argv;
	fuzz_init();
	if ((memfd = memfd_create("keylist", MFD_CLOEXEC)) == -1) {
		perror("fuzz: memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct keys k;
	struct allow_ctx a;

	if (ftruncate(memfd, 0) != 0 ||
	    pwrite(memfd, data, size, 0) != (ssize_t)size) {
		perror("fuzz: memfd");
		abort();
	}

	memset(&k, 0, sizeof(k));
	snprintf(k.hostport, sizeof(k.hostport), "%s", FUZZ_HOSTPORT);
	snprintf(k.known, sizeof(k.known), "%s", path);
	a.k = &k;
	a.path = path;
	(void)for_each_line(path, allow_line, &a, 0);
	(void)for_each_line(k.known, known_line, &k, 1);
	free(k.allow);
	free(k.known_keys);
	return (0);
}
