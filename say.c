/*
 * The program's one voice: status lines, errors, verbosity and exit
 * statuses.  See say.h.
 */

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "proto.h"
#include "say.h"

/* Guards the hook, and keeps the lines of several threads apart. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static say_hook_fn *hook;

/* Set by the main thread before any other thread starts. */
static int verbosity;

/*
 * say_set_hook(fn):
 * Call fn around every line written from now on, or none if fn is NULL.
 * No line is being written while the hook changes.
 */
void
say_set_hook(say_hook_fn *fn)
{

	pthread_mutex_lock(&mu);
	hook = fn;
	pthread_mutex_unlock(&mu);
}

/*
 * say_set_verbosity(level):
 * Show status lines up to level: -1 (-q) shows none, 0 the usual ones,
 * and each -v one level more.  Set it before any thread starts.
 */
void
say_set_verbosity(int level)
{

	verbosity = level;
}

/*
 * say_verbosity(void):
 * Return the level set by say_set_verbosity(), 0 if it never was.
 */
int
say_verbosity(void)
{

	return (verbosity);
}

static void
vsay(int fd, const char *prefix, const char *fmt, va_list ap)
{
	char buf[1024];
	int n = 0;

	if (prefix != NULL)
		n = snprintf(buf, sizeof(buf), "%s", prefix);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	n = (int)strlen(buf);
	buf[n++] = '\n';
	/* In chat mode the hook clears the prompt line and redraws it. */
	pthread_mutex_lock(&mu);
	if (hook != NULL)
		hook(1);
	(void)proto_write_full(fd, buf, (size_t)n);
	if (hook != NULL)
		hook(0);
	pthread_mutex_unlock(&mu);
	/* With -vv the line may hold a key. */
	sodium_memzero(buf, sizeof(buf));
}

/*
 * say_status(level, fmt, ...):
 * Write one status line on stderr if the verbosity is at least level.
 * The line is wiped from memory once written: it may hold a key.
 */
void
say_status(int level, const char *fmt, ...)
{
	va_list ap;

	if (verbosity < level)
		return;
	va_start(ap, fmt);
	vsay(STDERR_FILENO, NULL, fmt, ap);
	va_end(ap);
}

/*
 * say_error(fmt, ...):
 * Write one error line on stderr, "x25519chat: " first, whatever the
 * verbosity.
 */
void
say_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(STDERR_FILENO, PROG ": ", fmt, ap);
	va_end(ap);
}

/*
 * say_exit_for(err):
 * Return the exit status for the PROTO_E* code err met after the
 * handshake or in it: EXIT_RUNTIME for a failing system or an expired
 * deadline, EXIT_CUT for a stream cut short, EXIT_SECURITY for the rest.
 */
int
say_exit_for(int err)
{

	switch (err) {
	case PROTO_EERRNO:
	case PROTO_ETIMEOUT:
		return (EXIT_RUNTIME);
	case PROTO_EEOF:
	case PROTO_ETRUNC:
		return (EXIT_CUT);
	default:
		return (EXIT_SECURITY);
	}
}

/*
 * say_hex(out, buf, len):
 * Write the len bytes of buf as lowercase hex text and a NUL into out,
 * which must hold 2 * len + 1 bytes.
 */
void
say_hex(char *out, const uint8_t *buf, size_t len)
{

	sodium_bin2hex(out, 2 * len + 1, buf, len);
}
