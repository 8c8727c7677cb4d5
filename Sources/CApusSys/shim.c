#define _GNU_SOURCE
#include "CApusSys.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <grp.h>
#include <sched.h>
#include <linux/capability.h>
#include <dirent.h>
#include <unistd.h>
#include <sys/vfs.h>

int apus_ioctl_ptr(int fd, unsigned long request, void *arg) {
    return ioctl(fd, request, arg);
}

int apus_ioctl_val(int fd, unsigned long request, unsigned long arg) {
    return ioctl(fd, request, arg);
}

int apus_fcntl_int(int fd, int cmd, int arg) {
    return fcntl(fd, cmd, arg);
}

long apus_fs_type(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    return (long)s.f_type;
}

#define APUS_MAX_FDS 16

ssize_t apus_sendmsg_fds(int sock, const void *buf, size_t len,
                         const int *fds, int nfds, int flags) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        char buf[CMSG_SPACE(sizeof(int) * APUS_MAX_FDS)];
        struct cmsghdr align;
    } control;
    if (nfds < 0 || nfds > APUS_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t apus_recvmsg_fds(int sock, void *buf, size_t len,
                         int *fds, int maxfds, int *nfds_out,
                         int *truncated_out, int flags) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg;
    union {
        char buf[CMSG_SPACE(sizeof(int) * APUS_MAX_FDS)];
        struct cmsghdr align;
    } control;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    *nfds_out = 0;
    *truncated_out = 0;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return n;
    }
    if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
        *truncated_out = 1;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *received = (int *)CMSG_DATA(cm);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, &received[i], sizeof fd);
            if (*nfds_out < maxfds) {
                fds[(*nfds_out)++] = fd;
            } else {
                close(fd);
                *truncated_out = 1;
            }
        }
    }
    return n;
}

static void apus_kick_handler(int signo) {
    (void)signo;
}

int apus_install_kick_handler(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = apus_kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: we want EINTR out of KVM_RUN */
    return sigaction(signo, &sa, NULL);
}

/* Test builds' proof that a seccomp filter kills: the handler makes a
 * call no Apus policy allows (personality, as a harmless query). */
static void apus_forbidden_syscall_handler(int signo) {
    (void)signo;
    syscall(SYS_personality, 0xffffffffUL);
}

int apus_install_forbidden_syscall_trigger(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = apus_forbidden_syscall_handler;
    sigemptyset(&sa.sa_mask);
    return sigaction(signo, &sa, NULL);
}

/* Termination signals for a daemon whose threads the language runtime
 * starts (their masks are not ours to set): whichever thread takes the
 * signal writes to an eventfd; the daemon reads it on its own time. */
static volatile int apus_notify_fd = -1;
static volatile sig_atomic_t apus_notified_signal = 0;

static void apus_notify_handler(int signo) {
    int saved = errno;
    uint64_t one = 1;
    apus_notified_signal = signo;
    if (apus_notify_fd >= 0) {
        ssize_t unused = write(apus_notify_fd, &one, sizeof one);
        (void)unused;
    }
    errno = saved;
}

int apus_install_notify_handler(int signo, int eventfd) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    apus_notify_fd = eventfd;
    sa.sa_handler = apus_notify_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(signo, &sa, NULL);
}

int apus_notified_signal_number(void) { return (int)apus_notified_signal; }

int apus_block_signal(int signo, int block) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    return pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

int apus_unblock_all_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    return pthread_sigmask(SIG_SETMASK, &set, NULL);
}

uint16_t apus_load_acquire_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

void apus_store_release_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

uint32_t apus_load_acquire_u32(const void *p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

void apus_store_release_u32(void *p, uint32_t v) {
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}

void apus_fence_seq_cst(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int apus_gettid(void) {
    return (int)syscall(SYS_gettid);
}

int apus_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

int apus_fallocate(int fd, int mode, int64_t offset, int64_t len) {
    int r;
    do {
        r = fallocate(fd, mode, (off_t)offset, (off_t)len);
    } while (r < 0 && errno == EINTR);
    return r;
}

int apus_accept4(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}

int apus_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    return pthread_setname_np(pthread_self(), buf);
}

int apus_sigrtmin(void) {
    return SIGRTMIN;
}

int apus_openpt(char *path_out, size_t path_len) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) {
        return -1;
    }
    if (grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, path_out, path_len) != 0) {
        int e = errno;
        close(m);
        errno = e;
        return -1;
    }
    return m;
}

int apus_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return -1;
    }
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int apus_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    int fds[3] = { in_fd, out_fd, err_fd };
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0) {
            posix_spawn_file_actions_adddup2(&actions, fds[i], i);
        } else {
            posix_spawn_file_actions_addopen(&actions, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
        }
    }
    /* Nothing else the daemon has open reaches the child: descriptors made
     * by libraries (NIO's listening sockets and client connections) are not
     * all close-on-exec, and an inherited listening socket would keep a
     * dead daemon's backlog accepting connections nobody serves. */
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc == 0 ? (int)pid : -rc;
}

int apus_spawn_in_namespaces(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd,
                             unsigned long namespaces, int cgroup_procs_fd) {
    int report[2], go[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    if (pipe2(go, O_CLOEXEC) != 0) {
        int e = errno;
        close(report[0]);
        close(report[1]);
        return -e;
    }
    /* No signal handler of the parent's may run in the child between clone
     * and execve: they are all blocked across the clone. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long pid = syscall(SYS_clone, (unsigned long)SIGCHLD | namespaces, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        /* The child: a copy of a possibly multithreaded parent, so only
         * plain system calls from here to execve (no malloc, no locks).
         * It waits until the parent has placed it in its cgroup (or given
         * up: end of file), so all it allocates is charged there. */
        char token = 0;
        ssize_t got;
        do {
            got = read(go[0], &token, 1);
        } while (got < 0 && errno == EINTR);
        if (got != 1) _exit(127);
        int fds[3] = { in_fd, out_fd, err_fd };
        int moved[3];
        for (int i = 0; i < 3; i++) {
            moved[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD, 10) : open("/dev/null", i == 0 ? O_RDONLY : O_WRONLY);
        }
        for (int i = 0; i < 3; i++) {
            if (moved[i] < 0 || dup2(moved[i], i) != i) goto failed;
        }
        /* The report pipe becomes descriptor 3 (close-on-exec); everything
         * else the daemon has open is closed, as in apus_spawn. */
        if (report[1] != 3 && dup3(report[1], 3, O_CLOEXEC) != 3) goto failed;
        syscall(SYS_close_range, 4U, ~0U, 0U);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL);
        if (setsid() < 0) goto failed;
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
    failed:;
        int e = errno;
        (void)!write(3, &e, sizeof e);
        _exit(127);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    close(go[0]);
    if (pid < 0) {
        close(report[0]);
        close(go[1]);
        return -clone_errno;
    }
    if (cgroup_procs_fd >= 0) {
        char text[24];
        int n = snprintf(text, sizeof text, "%ld", pid);
        if (write(cgroup_procs_fd, text, (size_t)n) != n) {
            int e = errno ? errno : EIO;
            close(go[1]);
            close(report[0]);
            int s;
            while (waitpid((pid_t)pid, &s, 0) < 0 && errno == EINTR) {}
            return -e;
        }
    }
    char token = 1;
    ssize_t sent;
    do {
        sent = write(go[1], &token, 1);
    } while (sent < 0 && errno == EINTR);
    close(go[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof child_errno) {
        int s;
        while (waitpid((pid_t)pid, &s, 0) < 0 && errno == EINTR) {}
        return -(child_errno ? child_errno : EIO);
    }
    return (int)pid;
}

int apus_detach_mounts(void) {
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0) return -errno;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -errno;
    return 0;
}

int apus_pivot_root(const char *new_root, const char *put_old) {
    return syscall(SYS_pivot_root, new_root, put_old) == 0 ? 0 : -errno;
}

int apus_drop_privileges(uint32_t uid, uint32_t gid) {
    if (uid == 0 || gid == 0) return -EINVAL;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -errno;
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -errno;
    }
    if (setgroups(0, NULL) != 0) return -errno;
    if (setresgid(gid, gid, gid) != 0) return -errno;
    if (setresuid(uid, uid, uid) != 0) return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    /* Paranoia, as OpenSSH's permanently_set_uid: root must be gone. */
    if (setuid(0) == 0 || geteuid() == 0 || getegid() == 0) return -EPERM;
    return 0;
}

int apus_keep_only_capability(int keep) {
    if (keep < 0 || keep > 63) return -EINVAL;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -errno;
    for (int cap = 0; cap <= 63; cap++) {
        if (cap != keep && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -errno;
    }
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[keep / 32].effective = 1U << (keep % 32);
    data[keep / 32].permitted = 1U << (keep % 32);
    if (syscall(SYS_capset, &header, data) != 0) return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    return 0;
}

/* Sets both the soft and hard limit of `resource` for process `pid`. */
int apus_prlimit(int pid, int resource, uint64_t value) {
    struct rlimit r = { .rlim_cur = (rlim_t)value, .rlim_max = (rlim_t)value };
    return prlimit((pid_t)pid, (__rlimit_resource_t)resource, &r, NULL) == 0 ? 0 : -errno;
}

int apus_pidfd_open(int pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int apus_reap_child(int child, int *status) {
    int s = 0;
    pid_t pid = waitpid(child, &s, WNOHANG);
    if (pid <= 0) return 0;
    *status = s;
    return (int)pid;
}

int apus_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int apus_spawn_actions_addchdir(posix_spawn_file_actions_t *actions, const char *dir) {
    return posix_spawn_file_actions_addchdir_np(actions, dir);
}
