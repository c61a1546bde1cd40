/*
 * The terminal in chat mode: raw mode, the line editor and the safe
 * display of the peer's bytes.  See term.h.
 */

#include <sys/ioctl.h>

#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include <sodium.h>

#include "proto.h"
#include "say.h"
#include "term.h"

/* A typed line: its packet also holds the type byte and the newline. */
#define LINEMAX		(PROTO_MAXPLAIN - 2)

/* The terminal in chat mode: the line being typed and the screen. */
static struct {
	pthread_mutex_t mu;
	int raw;		/* raw mode is on */
	struct termios saved;
	char line[LINEMAX + 1];
	size_t len;
	int utf8;		/* the locale encodes UTF-8 */
	int esc;		/* inside an escape sequence typed */
} term = { .mu = PTHREAD_MUTEX_INITIALIZER };

/*
 * term_utf8_len(p, n, cp):
 * Return the length of the valid UTF-8 sequence at p (with n bytes left,
 * n > 0), and store its code point in *cp; or return 0 if there is none.
 * Overlong forms, surrogates and values past U+10FFFF are not valid.
 */
size_t
term_utf8_len(const uint8_t *p, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c;

	if (p[0] < 0x80) {
		*cp = p[0];
		return (1);
	} else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		c = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		c = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		c = p[0] & 0x07;
	} else
		return (0);
	if (n < len)
		return (0);
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return (0);
		c = c << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF. */
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return (0);
	*cp = c;
	return (len);
}

/*
 * term_unsafe_cp(c):
 * Return 1 if a terminal may act on the code point c rather than show it
 * (control characters, bidirectional overrides and isolates), else 0.
 */
int
term_unsafe_cp(uint32_t c)
{

	return (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) ||
	    (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069));
}

/*
 * term_sanitize(out, in, len):
 * Append a printable form of the len bytes at in to out, which has room
 * for 4 * len bytes: printable UTF-8 as it is, control characters and
 * invalid bytes as \xNN, control code points above ASCII as \uNNNN.
 * Return the length written; out is not NUL-terminated.
 */
size_t
term_sanitize(char *out, const uint8_t *in, size_t len)
{
	size_t i = 0, o = 0, n;
	uint32_t c;

	while (i < len) {
		n = term_utf8_len(in + i, len - i, &c);
		if (n == 0 || (n == 1 && term_unsafe_cp(c))) {
			o += (size_t)sprintf(out + o, "\\x%02x", in[i]);
			i++;
		} else if (term_unsafe_cp(c)) {
			o += (size_t)sprintf(out + o, "\\u%04x", (unsigned)c);
			i += n;
		} else {
			memcpy(out + o, in + i, n);
			o += n;
			i += n;
		}
	}
	return (o);
}

/*
 * The terminal: raw mode and a small line editor, so that a line from the
 * peer can be printed above the one being typed, which is then redrawn.
 */

/*
 * term_restore(void):
 * Put the terminal back as term_start() found it, without waiting for
 * the terminal's lock: for a process about to end while a stuck thread
 * may hold it.  Harmless when the terminal is not in raw mode.
 */
void
term_restore(void)
{

	if (term.raw) {
		(void)tcsetattr(STDIN_FILENO, TCSANOW, &term.saved);
		term.raw = 0;
	}
}

/* Columns the code point c takes on the screen. */
static int
cp_width(uint32_t c)
{
	int w;

	if (!term.utf8)
		return (1);
	w = wcwidth((wchar_t)c);
	return (w < 0 ? 1 : w);
}

/*
 * Redraw the prompt line: whole (the terminal wraps it), or for a line
 * being typed only the tail that fits.  Locked.
 */
static void
term_redraw(int whole)
{
	struct winsize ws;
	int cols = 80, used = 0, w;
	size_t start = whole ? 0 : term.len, n;
	uint32_t c;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 8)
		cols = ws.ws_col;
	/* Walk back over whole characters while they fit. */
	while (start > 0) {
		n = start - 1;
		while (n > 0 && ((uint8_t)term.line[n] & 0xc0) == 0x80)
			n--;
		if (term_utf8_len((const uint8_t *)term.line + n, start - n,
		    &c) == 0)
			c = '?';
		w = cp_width(c);
		if (used + w > cols - 3)
			break;
		used += w;
		start = n;
	}
	(void)proto_write_full(STDOUT_FILENO, "\r\033[K> ", 6);
	(void)proto_write_full(STDOUT_FILENO, term.line + start,
	    term.len - start);
}

/*
 * The voice's hook: in chat mode a status or error line goes above the
 * prompt line, which is cleared before it and redrawn after it.  The lock
 * is held from before the line to after it.
 */
static void
term_hook(int before)
{

	if (before) {
		pthread_mutex_lock(&term.mu);
		if (term.raw)
			(void)proto_write_full(STDOUT_FILENO, "\r\033[K", 4);
		return;
	}
	if (term.raw)
		term_redraw(0);
	pthread_mutex_unlock(&term.mu);
}

/*
 * term_start(void):
 * Put the terminal on stdin in raw mode, show an empty prompt line, and
 * hook the voice.  Return 0, or -1 if stdin is not a terminal that can
 * be set so (nothing is changed then).
 */
int
term_start(void)
{
	struct termios t;
	const char *cs;

	if (tcgetattr(STDIN_FILENO, &term.saved) != 0)
		return (-1);
	t = term.saved;
	/*
	 * Keep ISIG (Ctrl-C ends the session cleanly), ICRNL and OPOST; but
	 * no suspending, which would leave the shell a raw terminal.
	 */
	t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | IEXTEN);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	t.c_cc[VSUSP] = _POSIX_VDISABLE;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) != 0)
		return (-1);
	cs = setlocale(LC_CTYPE, "");
	term.utf8 = cs != NULL && (strstr(cs, "UTF-8") != NULL ||
	    strstr(cs, "utf8") != NULL);
	pthread_mutex_lock(&term.mu);
	term.raw = 1;
	term.len = 0;
	term.esc = 0;
	(void)proto_write_full(STDOUT_FILENO, "> ", 2);
	pthread_mutex_unlock(&term.mu);
	say_set_hook(term_hook);
	return (0);
}

/*
 * term_stop(void):
 * Clear the prompt line, drop what was typed but not sent, unhook the
 * voice and put the terminal back as term_start() found it.  Harmless if
 * term_start() was not called or failed.
 */
void
term_stop(void)
{

	pthread_mutex_lock(&term.mu);
	if (term.raw) {
		(void)proto_write_full(STDOUT_FILENO, "\r\033[K", 4);
		/* What was typed after the end must not reach the shell. */
		(void)tcflush(STDIN_FILENO, TCIFLUSH);
	}
	term_restore();
	sodium_memzero(term.line, sizeof(term.line));
	term.len = 0;
	pthread_mutex_unlock(&term.mu);
	say_set_hook(NULL);
}

/*
 * term_show(label, text, len):
 * Show one line from the peer, label first and its len bytes of text
 * made safe by term_sanitize(), above the prompt line, which is redrawn.
 * Call it only between term_start() and term_stop().
 */
void
term_show(const char *label, const uint8_t *text, size_t len)
{
	char *out;
	size_t n;

	if ((out = malloc(4 * len + strlen(label) + 2)) == NULL)
		return;
	n = (size_t)sprintf(out, "%s ", label);
	n += term_sanitize(out + n, text, len);
	out[n++] = '\n';
	pthread_mutex_lock(&term.mu);
	(void)proto_write_full(STDOUT_FILENO, "\r\033[K", 4);
	(void)proto_write_full(STDOUT_FILENO, out, n);
	term_redraw(0);
	pthread_mutex_unlock(&term.mu);
	sodium_memzero(out, n);
	free(out);
}

/*
 * term_show_stream(ts, label, data, len, flush):
 * Show the len bytes of data that continue the stream ts as term_show()
 * does, one line at a time: a line waits in ts until its newline comes or
 * it is TERM_SHOWMAX bytes long, or until flush is set (data may then be
 * NULL and len 0).  ts starts zeroed; its held bytes are wiped when shown.
 */
void
term_show_stream(struct term_stream *ts, const char *label,
    const uint8_t *data, size_t len, int flush)
{
	size_t take;
	const uint8_t *nl;

	while (len > 0) {
		nl = memchr(data, '\n', len);
		take = nl != NULL ? (size_t)(nl - data) : len;
		if (take > TERM_SHOWMAX - ts->nheld)
			take = TERM_SHOWMAX - ts->nheld;
		memcpy(ts->held + ts->nheld, data, take);
		ts->nheld += take;
		data += take;
		len -= take;
		if (len > 0 && *data == '\n') {
			data++;
			len--;
		} else if (ts->nheld < TERM_SHOWMAX)
			continue;
		term_show(label, ts->held, ts->nheld);
		sodium_memzero(ts->held, ts->nheld);
		ts->nheld = 0;
	}
	if (flush && ts->nheld > 0) {
		term_show(label, ts->held, ts->nheld);
		sodium_memzero(ts->held, ts->nheld);
		ts->nheld = 0;
	}
}

/* Apply one typed byte that edits the line (not Enter or Ctrl-D). Locked. */
static void
term_edit(uint8_t b)
{

	switch (b) {
	case 0x7f:	/* Backspace: one whole character */
	case 0x08:
		while (term.len > 0 &&
		    ((uint8_t)term.line[--term.len] & 0xc0) == 0x80)
			;
		break;
	case 0x15:	/* Ctrl-U */
		term.len = 0;
		break;
	case 0x17:	/* Ctrl-W */
		while (term.len > 0 && term.line[term.len - 1] == ' ')
			term.len--;
		while (term.len > 0 && term.line[term.len - 1] != ' ')
			term.len--;
		break;
	case 0x0c:	/* Ctrl-L */
		(void)proto_write_full(STDOUT_FILENO, "\033[H\033[2J", 7);
		break;
	default:
		if (b == '\t')
			b = ' ';
		if (b < 0x20)
			break;
		if (term.len < LINEMAX)
			term.line[term.len++] = (char)b;
		else
			(void)proto_write_full(STDOUT_FILENO, "\a", 1);
	}
}

/*
 * term_input(in, n, send_line, arg):
 * Feed n typed bytes to the line editor, between term_start() and
 * term_stop().  Each finished non-empty line is passed to
 * send_line(arg, line, len), without the terminal's lock held; escape
 * sequences (arrow keys and the like) are skipped, even when split over
 * calls.  Return 0 to go on, 1 when Ctrl-D on an empty line ends the
 * input, or send_line()'s failure.
 */
int
term_input(const uint8_t *in, size_t n, term_line_fn *send_line, void *arg)
{
	size_t i, len;
	int rc = 0;

	pthread_mutex_lock(&term.mu);
	for (i = 0; i < n && rc == 0; i++) {
		/* Skip escape sequences (arrow keys and the like). */
		if (term.esc == 1)
			term.esc = (in[i] == '[' || in[i] == 'O') ? 2 : 0;
		else if (term.esc == 2)
			term.esc = (in[i] >= 0x40 && in[i] <= 0x7e) ? 0 : 2;
		else if (in[i] == 0x1b)
			term.esc = 1;
		else if (in[i] == 0x04 && term.len == 0)	/* Ctrl-D */
			rc = 1;
		else if (in[i] == '\r' || in[i] == '\n') {
			/* The typed line stays on screen whole, as in a
			 * shell (the terminal wraps it); the text stays in
			 * term.line, which only we write. */
			term_redraw(1);
			len = term.len;
			term.len = 0;
			(void)proto_write_full(STDOUT_FILENO, "\n> ", 3);
			/* Like the original, an empty line sends nothing. */
			if (len == 0)
				continue;
			pthread_mutex_unlock(&term.mu);
			rc = send_line(arg, term.line, len);
			pthread_mutex_lock(&term.mu);
		} else
			term_edit(in[i]);
	}
	if (rc == 0)
		term_redraw(0);
	pthread_mutex_unlock(&term.mu);
	return (rc);
}
