/*
 * netshift pause: the process that holds a pod sandbox's namespaces.
 *
 * It sleeps in pause() forever, reaps any child that gets re-parented to it (it is PID 1 of the pod
 * when the pod shares its PID namespace), and exits 0 on SIGINT or SIGTERM. Built static so the
 * image needs nothing but this file.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "3.10-netshift"

static void on_stop(int sig) { _exit(sig == SIGINT || sig == SIGTERM ? 0 : 1); }

static void on_child(int sig) {
	int saved = errno;
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

static int install(int sig, void (*fn)(int), int flags) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pause %s\n", VERSION);
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not running as PID 1\n");
	if (install(SIGINT, on_stop, 0) || install(SIGTERM, on_stop, 0) ||
	    install(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART)) {
		perror("pause: sigaction");
		return 2;
	}
	for (;;)
		pause();
}
