/*
 * Fuzz target hostport: the input, with a NUL added, is the argument of
 * -l or -c, split by net.c's net_parse_hostport() into buffers the size
 * that main() in chat.c gives it, once as a listener would (-l) and once
 * as a connector (-c).  The usage errors it prints go to stderr (run.sh
 * closes it with -close_fd_mask=2).
 */

#include "../net.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char hbuf[256], pbuf[8], *arg;
	const char *host;
	long port;
	int listening;

	if ((arg = malloc(size + 1)) == NULL)
		abort();
	memcpy(arg, data, size);
	arg[size] = '\0';
	for (listening = 0; listening < 2; listening++) {
		if (net_parse_hostport(arg, listening, hbuf, sizeof(hbuf),
		    pbuf, sizeof(pbuf), &host) != 0)
			continue;
		fuzz_check(host == NULL || (host == hbuf && host[0] != '\0' &&
		    strlen(host) < sizeof(hbuf)), "bad host");
		fuzz_check(host != NULL || listening, "a connector without "
		    "a host");
		port = strtol(pbuf, NULL, 10);
		fuzz_check(port >= (listening ? 0 : 1) && port <= 65535,
		    "port out of range");
	}
	free(arg);
	return (0);
}
