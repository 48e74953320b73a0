// guestd-init is the PID 1 of every Hearth container: it creates the effects socket, runs
// the serving guestd (the guestd next to it) and restarts it when it dies, reaps orphans,
// and stops everything on SIGTERM, SIGINT or SIGPWR (LXC's halt signal).
//
//	guestd-init [init] [ARGS...]   ARGS go to every serving guestd
//
// It is C, built static, and not Go: it runs in every container for the container's whole
// life and mostly waits, and a Go runtime costs ~0.7 MiB of anonymous memory per process
// (its heap arena metadata, span sets, stacks of its threads) and a millisecond of start;
// this costs a few pages. Its behaviour is tested from Go (internal/initproc) and by the
// integration tests that run real containers.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// The contract with the serving guestd (initproc.BootTimeEnv, initproc.RestartsEnv,
// effectsock.FDEnv and effectsock.Path on the Go side).
#define BOOT_TIME_ENV "HEARTH_GUESTD_BOOT_TIME"
#define RESTARTS_ENV "HEARTH_GUESTD_RESTARTS"
#define EFFECTS_FD_ENV "HEARTH_EFFECTS_FD"
#define EFFECTS_PATH "/media/hearth/rpc/effects.sock"
#define EFFECTS_FD 3
#define SERVING "guestd"

// The serving guestd's Go runtime starts with one P and no collection: guestd would set
// both in main, after the runtime had set up a P per CPU and its package init had
// collected, work every container start paid for nothing (guestd turns collection on once
// the package's start is over).
static const char *const runtime_env[] = {"GOMAXPROCS=1", "GOGC=off"};
#define NRUNTIME_ENV (sizeof runtime_env / sizeof runtime_env[0])

// runtime_var reports whether the environment entry e sets a variable runtime_env sets.
static int runtime_var(const char *e) {
	for (size_t i = 0; i < NRUNTIME_ENV; i++) {
		size_t n = strchr(runtime_env[i], '=') - runtime_env[i] + 1; // the name and its '='
		if (strncmp(e, runtime_env[i], n) == 0)
			return 1;
	}
	return 0;
}

// How long the serving guestd has to stop the package before everything is killed (the
// host's own stop timeout, which kills the whole container, is usually shorter).
#define STOP_TIMEOUT_MS (10 * 60 * 1000)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STABLE_MS 30000 // a guestd that ran this long restarts after BACKOFF_MIN_MS

extern char **environ;

static void say(const char *fmt, ...) {
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dprintf(2, "%s guestd-init: %s\n", ts, msg);
}

static long long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// effects_listen creates the effects socket, open to every user of the container (package
// scripts run as their images' users): bound under a temporary name, given its mode, then
// renamed into place, so it never appears with another mode. A socket left by an earlier
// init is replaced; one that answers is left alone. Returns the listener or -1.
static int effects_listen(void) {
	const char *path = EFFECTS_PATH;
	char dir[sizeof(EFFECTS_PATH)];
	strcpy(dir, path);
	*strrchr(dir, '/') = 0;
	struct stat st;
	if (stat(dir, &st) != 0) {
		// The host binds the rpc directory in; without it, make it as unixsock does.
		char part[sizeof(EFFECTS_PATH)];
		for (char *p = dir + 1;; p++) {
			if (*p != '/' && *p != 0)
				continue;
			memcpy(part, dir, p - dir);
			part[p - dir] = 0;
			if (mkdir(part, 0750) != 0 && errno != EEXIST) {
				say("the effects socket: create %s: %s", part, strerror(errno));
				return -1;
			}
			if (*p == 0)
				break;
		}
		chmod(dir, 0750);
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			say("the effects socket: %s exists and is not a socket", path);
			return -1;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		strcpy(sa.sun_path, path);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
			close(probe);
			say("the effects socket: %s: another process is serving on it", path);
			return -1;
		}
		if (probe >= 0)
			close(probe);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		say("the effects socket: socket: %s", strerror(errno));
		return -1;
	}
	char tmp[sizeof(sa.sun_path)];
	snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
	unlink(tmp);
	strcpy(sa.sun_path, tmp);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(tmp, 0666) != 0 || rename(tmp, path) != 0 ||
	    listen(fd, SOMAXCONN) != 0) {
		say("the effects socket: %s: %s", path, strerror(errno));
		unlink(tmp);
		close(fd);
		return -1;
	}
	return fd;
}

struct init {
	const char *exe;
	char **argv;    // the serving guestd's, argv[0] = SERVING
	char **envp;    // environ without the contract's variables, room for them at the end
	size_t nenv;    // entries of envp before that room
	long long boot; // unix nanoseconds when init started
	int effects;    // the effects listener, or -1
	int restarts;
	pid_t child;    // the serving guestd, or 0
	long long started;
	sigset_t mask;
};

// start runs the serving guestd; returns 0, or -1 when it could not fork.
static int start(struct init *in) {
	char boot[64], restarts[64], efd[64];
	snprintf(boot, sizeof boot, BOOT_TIME_ENV "=%lld", in->boot);
	snprintf(restarts, sizeof restarts, RESTARTS_ENV "=%d", in->restarts);
	snprintf(efd, sizeof efd, EFFECTS_FD_ENV "=%d", EFFECTS_FD);
	size_t n = in->nenv;
	in->envp[n++] = boot;
	in->envp[n++] = restarts;
	if (in->effects >= 0)
		in->envp[n++] = efd;
	in->envp[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		sigprocmask(SIG_UNBLOCK, &in->mask, NULL);
		setpgid(0, 0);
		if (in->effects >= 0) {
			if (in->effects == EFFECTS_FD)
				fcntl(EFFECTS_FD, F_SETFD, 0);
			else
				dup2(in->effects, EFFECTS_FD);
		}
		execve(in->exe, in->argv, in->envp);
		dprintf(2, "guestd-init: execute %s: %s\n", in->exe, strerror(errno));
		_exit(127);
	}
	in->child = pid;
	in->started = now_ms();
	return 0;
}

static void describe(int status, char *buf, size_t n) {
	if (WIFEXITED(status))
		snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "signal: %s", strsignal(WTERMSIG(status)));
	else
		snprintf(buf, n, "status %#x", status);
}

// reap collects every exited child; it returns 1 when the serving guestd was among them.
static int reap(struct init *in, int *status) {
	int found = 0, st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == in->child) {
			in->child = 0;
			*status = st;
			found = 1;
		}
	}
	return found;
}

// shutdown stops the serving guestd (which stops the package), then every process left.
static int shutdown_all(struct init *in, int sfd) {
	if (in->child > 0) {
		kill(in->child, SIGTERM);
		long long deadline = now_ms() + STOP_TIMEOUT_MS;
		int st;
		while (in->child > 0) {
			long long left = deadline - now_ms();
			if (left <= 0) {
				say("guestd did not stop within %d minutes", STOP_TIMEOUT_MS / 60000);
				break;
			}
			struct pollfd p = {.fd = sfd, .events = POLLIN};
			if (poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) > 0) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof si) == sizeof si) {
				}
			}
			reap(in, &st);
		}
	}
	// Whatever is left: processes that ignored the stop. kill(-1) spares init itself.
	kill(-1, SIGKILL);
	long long deadline = now_ms() + 1000;
	while (now_ms() < deadline) {
		if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			break;
		usleep(5000);
	}
	return 0;
}

int main(int argc, char **argv) {
	if (getpid() != 1) {
		// Run by hand on a host, init would take the effects socket's path there and reap
		// and stop what is not its own.
		dprintf(2, "guestd-init is the first process (PID 1) of a Hearth container and runs nowhere else; "
		           "containerd-lite starts it (this is PID %d)\n",
		        (int)getpid());
		return 2;
	}
	struct init in = {.effects = -1};
	struct timespec bt;
	clock_gettime(CLOCK_REALTIME, &bt);
	in.boot = (long long)bt.tv_sec * 1000000000LL + bt.tv_nsec;

	// The serving guestd: next to init's own executable.
	static char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - sizeof(SERVING) - 1);
	if (n <= 0) {
		say("find its own executable: %s", n < 0 ? strerror(errno) : "empty");
		return 1;
	}
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	strcpy(slash ? slash + 1 : exe, SERVING);
	in.exe = exe;

	int first = 1;
	if (argc > 1 && strcmp(argv[1], "init") == 0)
		first = 2;
	in.argv = calloc(argc - first + 2, sizeof(char *));
	size_t env = 0;
	while (environ[env])
		env++;
	in.envp = calloc(env + NRUNTIME_ENV + 4, sizeof(char *));
	if (!in.argv || !in.envp) {
		say("out of memory");
		return 1;
	}
	in.argv[0] = SERVING;
	for (int i = first; i < argc; i++)
		in.argv[i - first + 1] = argv[i];
	for (size_t i = 0; i < env; i++) {
		const char *e = environ[i];
		if (strncmp(e, BOOT_TIME_ENV "=", sizeof BOOT_TIME_ENV) && strncmp(e, RESTARTS_ENV "=", sizeof RESTARTS_ENV) &&
		    strncmp(e, EFFECTS_FD_ENV "=", sizeof EFFECTS_FD_ENV) && !runtime_var(e))
			in.envp[in.nenv++] = environ[i];
	}
	for (size_t i = 0; i < NRUNTIME_ENV; i++)
		in.envp[in.nenv++] = (char *)runtime_env[i];

	// Signals come through a descriptor: SIGCHLD for exits, the stop signals.
	sigemptyset(&in.mask);
	sigaddset(&in.mask, SIGCHLD);
	sigaddset(&in.mask, SIGTERM);
	sigaddset(&in.mask, SIGINT);
	sigaddset(&in.mask, SIGPWR);
	sigprocmask(SIG_BLOCK, &in.mask, NULL);
	int sfd = signalfd(-1, &in.mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		say("signalfd: %s", strerror(errno));
		return 1;
	}
	in.effects = effects_listen();
	if (in.effects < 0)
		say("the serving guestd makes its own effects socket");

	if (start(&in) != 0) {
		say("start guestd: %s", strerror(errno));
		return 1;
	}
	long long backoff = BACKOFF_MIN_MS, restart_at = -1;
	for (;;) {
		int timeout = -1;
		if (restart_at >= 0) {
			long long left = restart_at - now_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		struct pollfd p = {.fd = sfd, .events = POLLIN};
		int r = poll(&p, 1, timeout);
		if (r < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			return 1;
		}
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof si) == sizeof si) {
			if (si.ssi_signo == SIGCHLD)
				continue;
			say("%s: stopping", strsignal(si.ssi_signo));
			return shutdown_all(&in, sfd);
		}
		int status;
		if (reap(&in, &status)) {
			char how[64];
			describe(status, how, sizeof how);
			say("guestd exited: %s; restarting in %lld ms", how, backoff);
			restart_at = now_ms() + backoff;
			if (now_ms() - in.started > STABLE_MS)
				backoff = BACKOFF_MIN_MS;
			else
				backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
		}
		if (restart_at >= 0 && now_ms() >= restart_at) {
			restart_at = -1;
			in.restarts++;
			if (start(&in) != 0) {
				say("restart guestd: %s", strerror(errno));
				restart_at = now_ms() + backoff;
			}
		}
	}
}
