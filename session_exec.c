/*
 * A command as one end of a session (-e): its process, its pipes, its
 * stderr lines and its end.  See session.h.
 *
 * This file owns the command's process group and the three pipes to it;
 * it must not touch the socket or the ciphers, which are the session's.
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "say.h"
#include "term.h"
#include "session.h"

#define KILL_AFTER_MS	5000	/* from SIGTERM to SIGKILL */
#define ERRLINE		1024	/* a stderr line longer than this is cut */

extern char **environ;

/* In the command's process, before exec: a clean slate.  No return. */
static void
exec_child(const char *cmd, int in, int out, int err)
{
	struct sigaction sa;
	sigset_t none;
	int sig;

	(void)setpgid(0, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(in, STDIN_FILENO) == -1 || dup2(out, STDOUT_FILENO) == -1 ||
	    dup2(err, STDERR_FILENO) == -1)
		_exit(126);
	/* Only descriptors 0 to 2 go on. */
	if (close_range(3, ~0U, 0) == -1) {
		long max = sysconf(_SC_OPEN_MAX), fd;

		for (fd = 3; fd < (max > 0 ? max : 1024); fd++)
			(void)close((int)fd);
	}
	execle("/bin/sh", "sh", "-c", cmd, (char *)NULL, environ);
	_exit(127);
}

/* The command's stderr, line by line, each labelled and made safe. */
static void *
relay_stderr(void *arg)
{
	struct session_cmd *sc = arg;
	char line[ERRLINE], shown[4 * ERRLINE + 1];
	size_t have = 0, i;
	struct pollfd pfd = { sc->err, POLLIN, 0 };
	ssize_t n;
	size_t after = 0;	/* bytes read once told to stop */
	int eof = 0;

	while (!eof) {
		if (poll(&pfd, 1, atomic_load(&sc->stop) ? 0 : 200) <= 0) {
			if (atomic_load(&sc->stop))
				break;
			continue;
		}
		/* A grandchild that keeps writing is not followed for ever. */
		if (atomic_load(&sc->stop) && (after += sizeof(line)) > 65536)
			break;
		n = read(sc->err, line + have, sizeof(line) - have);
		if (n == -1 && errno == EINTR)
			continue;
		eof = n <= 0;
		have += n > 0 ? (size_t)n : 0;
		/* Each whole line, or a full buffer, or what is left at the
		 * end, goes out as one line. */
		while (have > 0) {
			char *nl = memchr(line, '\n', have);

			if (nl == NULL && have < sizeof(line) && !eof)
				break;
			i = nl != NULL ? (size_t)(nl - line) : have;
			shown[term_sanitize(shown, (const uint8_t *)line, i)] =
			    '\0';
			say_status(-1, "%s %s", sc->label, shown);
			i += nl != NULL;
			memmove(line, line + i, have - i);
			have -= i;
		}
	}
	return (NULL);
}

/*
 * session_cmd_start(sc, cmd, label):
 * Run /bin/sh -c cmd in a process group of its own, with default signal
 * dispositions, an empty signal mask and only descriptors 0 to 2: its
 * stdin becomes our stdout and its stdout our stdin, so that a session
 * run next carries them; its stderr lines go to ours, after label.
 * Return 0, or -1 after reporting.
 */
int
session_cmd_start(struct session_cmd *sc, const char *cmd, const char *label)
{
	int in[2], out[2], err[2];

	memset(sc, 0, sizeof(*sc));
	snprintf(sc->label, sizeof(sc->label), "%s", label);
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 ||
	    pipe2(err, O_CLOEXEC) == -1) {
		say_error("pipe: %s", strerror(errno));
		return (-1);
	}
	if ((sc->pid = fork()) == -1) {
		say_error("fork: %s", strerror(errno));
		return (-1);
	}
	if (sc->pid == 0)
		exec_child(cmd, in[0], out[1], err[1]);
	/* Also here, so that a signal cannot come before the child's own. */
	(void)setpgid(sc->pid, sc->pid);
	if (dup2(in[1], STDOUT_FILENO) == -1 ||
	    dup2(out[0], STDIN_FILENO) == -1) {
		say_error("dup2: %s", strerror(errno));
		return (-1);
	}
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(out[1]);
	close(err[1]);
	sc->err = err[0];
	atomic_init(&sc->stop, 0);
	if (pthread_create(&sc->relay, NULL, relay_stderr, sc) != 0) {
		say_error("pthread_create: cannot relay the command's stderr");
		close(sc->err);
		sc->err = -1;
		return (-1);
	}
	sc->relaying = 1;
	return (0);
}

/* Wait for the command until deadline (0: forever); 1 once reaped. */
static int
reap_until(struct session_cmd *sc, int64_t deadline)
{
	pid_t r;

	while (!sc->reaped) {
		r = waitpid(sc->pid, &sc->status, deadline ? WNOHANG : 0);
		if (r == sc->pid)
			sc->reaped = 1;
		else if (r == -1 && errno != EINTR)
			return (0);
		else if (deadline && proto_now_ms() >= deadline)
			return (0);
		else if (deadline)
			(void)poll(NULL, 0, 20);
	}
	return (1);
}

/*
 * session_cmd_result(sc, why, whylen):
 * After the peer's CLOSE (the command's stdin is closed): wait for the
 * command to exit.  Return 0 if it exited 0, else EXIT_RUNTIME with
 * "command exited with status N" or "command killed by signal N" in why.
 */
int
session_cmd_result(struct session_cmd *sc, char *why, size_t whylen)
{

	if (!reap_until(sc, 0)) {
		snprintf(why, whylen, "command lost: %s", strerror(errno));
		return (EXIT_RUNTIME);
	}
	if (WIFEXITED(sc->status) && WEXITSTATUS(sc->status) == 0)
		return (0);
	if (WIFSIGNALED(sc->status))
		snprintf(why, whylen, "command killed by signal %d",
		    WTERMSIG(sc->status));
	else
		snprintf(why, whylen, "command exited with status %d",
		    WEXITSTATUS(sc->status));
	return (EXIT_RUNTIME);
}

/*
 * session_cmd_end(sc, clean):
 * The session is over.  Unless it ended with the peer's CLOSE (clean),
 * the command's process group gets SIGTERM before its stdin closes, and
 * SIGKILL KILL_AFTER_MS later if it still runs, so that it never takes a
 * cut for the end of its input.  Then our ends of its pipes close, the
 * command is reaped, and its stderr is relayed to the end.
 */
void
session_cmd_end(struct session_cmd *sc, int clean)
{
	int null;

	if (!clean && !sc->reaped)
		(void)kill(-sc->pid, SIGTERM);
	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) != -1) {
		(void)dup2(null, STDIN_FILENO);
		(void)dup2(null, STDOUT_FILENO);
		close(null);
	}
	if (!clean && !reap_until(sc, proto_now_ms() + KILL_AFTER_MS))
		(void)kill(-sc->pid, SIGKILL);
	(void)reap_until(sc, 0);
	/* What it wrote last to stderr, and then no more: a grandchild
	 * that keeps the pipe open is not waited for. */
	if (sc->relaying) {
		atomic_store(&sc->stop, 1);
		pthread_join(sc->relay, NULL);
		sc->relaying = 0;
	}
	if (sc->err != -1)
		close(sc->err);
	sc->err = -1;
}
