#ifndef SAY_H
#define SAY_H

/*
 * The program's one voice: status lines and errors on stderr, the -v/-q
 * verbosity that decides which status lines are shown, the exit statuses
 * of x25519chat(1), and hex text for traces.  Every line is written whole,
 * one at a time, from any thread.
 *
 * This room never calls the terminal: a chat's prompt line must be
 * cleared before a line is written and redrawn after it, so the terminal
 * installs a hook (say_set_hook()) that is called around each line.
 */

#include <stddef.h>
#include <stdint.h>

/* Exit statuses (x25519chat(1), EXIT STATUS). */
#define EXIT_OK		0
#define EXIT_RUNTIME	1
#define EXIT_USAGE	2
#define EXIT_SECURITY	3
#define EXIT_CUT	4
#define EXIT_PEER	5	/* the peer reported a failure (ERROR) */

#define PROG		"x25519chat"

/*
 * A hook called around every line written: with before 1 just before the
 * line, and with before 0 just after it.
 */
typedef void say_hook_fn(int before);

/*
 * say_set_hook(fn):
 * Call fn around every line written from now on, or none if fn is NULL.
 * No line is being written while the hook changes.
 */
void say_set_hook(say_hook_fn *fn);

/*
 * say_set_verbosity(level):
 * Show status lines up to level: -1 (-q) shows none, 0 the usual ones,
 * and each -v one level more.  Set it before any thread starts.
 */
void say_set_verbosity(int level);

/*
 * say_verbosity(void):
 * Return the level set by say_set_verbosity(), 0 if it never was.
 */
int say_verbosity(void);

/*
 * say_status(level, fmt, ...):
 * Write one status line on stderr if the verbosity is at least level.
 * The line is wiped from memory once written: it may hold a key.
 */
void say_status(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * say_error(fmt, ...):
 * Write one error line on stderr, "x25519chat: " first, whatever the
 * verbosity.
 */
void say_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/*
 * say_usage(fmt, ...):
 * A usage error: write its one line as say_error() does, and evaluate to
 * EXIT_USAGE, the exit status to return.
 */
#define say_usage(...)	(say_error(__VA_ARGS__), EXIT_USAGE)

/*
 * say_exit_for(err):
 * Return the exit status for the PROTO_E* code err met after the
 * handshake or in it: EXIT_RUNTIME for a failing system or an expired
 * deadline, EXIT_CUT for a stream cut short, EXIT_SECURITY for the rest.
 */
int say_exit_for(int err);

/*
 * say_hex(out, buf, len):
 * Write the len bytes of buf as lowercase hex text and a NUL into out,
 * which must hold 2 * len + 1 bytes.
 */
void say_hex(char *out, const uint8_t *buf, size_t len);

#endif /* !SAY_H */
