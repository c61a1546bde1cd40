/*
 * Fuzz target keylists: the input is the contents of a key list file,
 * read by the program's own parsers in trust.c: trust_read_allow() (an
 * --allow file) and trust_read_known() (a known_peers file, looking for
 * FUZZ_HOSTPORT), called just as setup_keys() in chat.c calls them.  The
 * input goes into a memory file opened again by its /proc path each run;
 * the error lines the parsers print go to stderr (run.sh closes it with
 * -close_fd_mask=2).
 */

#include <sys/mman.h>

#include <unistd.h>

#include "../trust.h"
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
	struct trust_keys k;

	if (ftruncate(memfd, 0) != 0 ||
	    pwrite(memfd, data, size, 0) != (ssize_t)size) {
		perror("fuzz: memfd");
		abort();
	}

	memset(&k, 0, sizeof(k));
	snprintf(k.hostport, sizeof(k.hostport), "%s", FUZZ_HOSTPORT);
	snprintf(k.known, sizeof(k.known), "%s", path);
	(void)trust_read_allow(&k, path);
	(void)trust_read_known(&k);
	trust_allow_free(&k);
	free(k.known_keys);
	return (0);
}
