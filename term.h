#ifndef TERM_H
#define TERM_H

/*
 * The terminal in chat mode: raw mode, a small line editor whose line is
 * redrawn under each line printed above it, and the safe display of the
 * peer's bytes, which must never reach the screen as something a terminal
 * acts on.
 *
 * This room never sends anything: a finished line goes to a callback it
 * is given.  It writes only to the terminal, and while in chat mode it
 * hooks the voice (say.h) so that status lines go above the prompt line.
 */

#include <stddef.h>
#include <stdint.h>

/*
 * term_utf8_len(p, n, cp):
 * Return the length of the valid UTF-8 sequence at p (with n bytes left,
 * n > 0), and store its code point in *cp; or return 0 if there is none.
 * Overlong forms, surrogates and values past U+10FFFF are not valid.
 */
size_t term_utf8_len(const uint8_t *p, size_t n, uint32_t *cp);

/*
 * term_unsafe_cp(c):
 * Return 1 if a terminal may act on the code point c rather than show it
 * (control characters, bidirectional overrides and isolates), else 0.
 */
int term_unsafe_cp(uint32_t c);

/*
 * term_sanitize(out, in, len):
 * Append a printable form of the len bytes at in to out, which has room
 * for 4 * len bytes: printable UTF-8 as it is, control characters and
 * invalid bytes as \xNN, control code points above ASCII as \uNNNN.
 * Return the length written; out is not NUL-terminated.
 */
size_t term_sanitize(char *out, const uint8_t *in, size_t len);

/*
 * term_start(void):
 * Put the terminal on stdin in raw mode, show an empty prompt line, and
 * hook the voice.  Return 0, or -1 if stdin is not a terminal that can
 * be set so (nothing is changed then).
 */
int term_start(void);

/*
 * term_stop(void):
 * Clear the prompt line, drop what was typed but not sent, unhook the
 * voice and put the terminal back as term_start() found it.  Harmless if
 * term_start() was not called or failed.
 */
void term_stop(void);

/*
 * term_restore(void):
 * Put the terminal back as term_start() found it, without waiting for
 * the terminal's lock: for a process about to end while a stuck thread
 * may hold it.  Harmless when the terminal is not in raw mode.
 */
void term_restore(void);

/*
 * term_show(label, text, len):
 * Show one line from the peer, label first and its len bytes of text
 * made safe by term_sanitize(), above the prompt line, which is redrawn.
 * Call it only between term_start() and term_stop().
 */
void term_show(const char *label, const uint8_t *text, size_t len);

/* A received byte stream, shown a line at a time. */
#define TERM_SHOWMAX	4096	/* the longest line shown at once */
struct term_stream {
	uint8_t held[TERM_SHOWMAX];	/* a line waiting for its end */
	size_t nheld;
};

/*
 * term_show_stream(ts, label, data, len, flush):
 * Show the len bytes of data that continue the stream ts as term_show()
 * does, one line at a time: a line waits in ts until its newline comes or
 * it is TERM_SHOWMAX bytes long, or until flush is set (data may then be
 * NULL and len 0).  ts starts zeroed; its held bytes are wiped when shown.
 */
void term_show_stream(struct term_stream *ts, const char *label,
    const uint8_t *data, size_t len, int flush);

/*
 * A finished line for term_input()'s caller: len bytes at line, not
 * NUL-terminated, valid only during the call.  Return 0 to go on, or
 * anything else to stop.
 */
typedef int term_line_fn(void *arg, const char *line, size_t len);

/*
 * term_input(in, n, send_line, arg):
 * Feed n typed bytes to the line editor, between term_start() and
 * term_stop().  Each finished non-empty line is passed to
 * send_line(arg, line, len), without the terminal's lock held; escape
 * sequences (arrow keys and the like) are skipped, even when split over
 * calls.  Return 0 to go on, 1 when Ctrl-D on an empty line ends the
 * input, or send_line()'s failure.
 */
int term_input(const uint8_t *in, size_t n, term_line_fn *send_line,
    void *arg);

#endif /* !TERM_H */
