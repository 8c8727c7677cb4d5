// C shims for the syscall layer: things Swift cannot import directly
// (variadic ioctl/fcntl, function-like macros such as CMSG_* and _IO*, and
// atomics on foreign memory). Everything here is tiny and stateless; the
// typed Swift wrappers live in the ApusSys module.
#ifndef APUS_CSYS_H
#define APUS_CSYS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <termios.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>

#ifdef __cplusplus
extern "C" {
#endif

// ioctl and fcntl are variadic; Swift cannot call them directly.
int apus_ioctl_ptr(int fd, unsigned long request, void *arg);
int apus_ioctl_val(int fd, unsigned long request, unsigned long arg);
int apus_fcntl_int(int fd, int cmd, int arg);
/// The file system type (statfs f_type) `fd` is on; -1 and errno on error.
long apus_fs_type(int fd);

// sendmsg/recvmsg with SCM_RIGHTS file-descriptor passing.
// Returns bytes sent/received or -1 with errno. On receive, *nfds_out is the
// number of descriptors stored in fds (extra ones are closed), and
// *truncated_out is nonzero if MSG_CTRUNC/MSG_TRUNC was reported.
ssize_t apus_sendmsg_fds(int sock, const void *buf, size_t len,
                         const int *fds, int nfds, int flags);
ssize_t apus_recvmsg_fds(int sock, void *buf, size_t len,
                         int *fds, int maxfds, int *nfds_out,
                         int *truncated_out, int flags);

// A no-op handler for the vCPU kick signal: its only job is to interrupt
// KVM_RUN with EINTR. Installed without SA_RESTART.
int apus_install_kick_handler(int signo);
int apus_install_forbidden_syscall_trigger(int signo);
int apus_block_signal(int signo, int block);
int apus_install_notify_handler(int signo, int eventfd);
int apus_notified_signal_number(void);
int apus_unblock_all_signals(void);

// Loads and stores with explicit memory ordering on memory we do not own
// (guest memory shared with a guest or another process).
uint16_t apus_load_acquire_u16(const void *p);
void apus_store_release_u16(void *p, uint16_t v);
uint32_t apus_load_acquire_u32(const void *p);
void apus_store_release_u32(void *p, uint32_t v);
void apus_fence_seq_cst(void);

// The thread id of the caller (for /proc/self/task/TID/stat).
int apus_gettid(void);

// memfd_create with the given flags (MFD_CLOEXEC etc).
int apus_memfd_create(const char *name, unsigned int flags);


// GNU extensions that Swift's Glibc module does not expose.
int apus_fallocate(int fd, int mode, int64_t offset, int64_t len);
int apus_accept4(int fd);
int apus_set_thread_name(const char *name);
int apus_sigrtmin(void);
int apus_openpt(char *path_out, size_t path_len);
int apus_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

// Process management for the Dom0 supervisor.
/// posix_spawn in a new session (setsid), with stdin/stdout/stderr from the
/// given descriptors (-1: /dev/null) and every other descriptor closed.
/// Returns the pid or -errno.
int apus_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd);
/// Like apus_spawn, but the child is made with clone(2) and `namespaces`
/// (CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWIPC, ...): with CLONE_NEWPID it is
/// process 1 of a PID namespace of its own. With `cgroup_procs_fd` (an open
/// cgroup.procs, or -1) the child is moved into that cgroup before it runs
/// the program. Returns the pid as the caller sees it, or -errno (also when
/// the child's execve failed).
int apus_spawn_in_namespaces(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd,
                             unsigned long namespaces, int cgroup_procs_fd);
/// clone(2)'s namespace flags (sched.h defines them only for _GNU_SOURCE).
static const unsigned long APUS_CLONE_NEWNS = 0x00020000UL;
static const unsigned long APUS_CLONE_NEWIPC = 0x08000000UL;
static const unsigned long APUS_CLONE_NEWPID = 0x20000000UL;
static const unsigned long APUS_CLONE_NEWNET = 0x40000000UL;
static const unsigned long APUS_CLONE_NEWUTS = 0x04000000UL;
/// open(2)'s O_PATH (fcntl.h defines it only for _GNU_SOURCE).
static const int APUS_O_PATH = 010000000;
/// unshare(CLONE_NEWNS | CLONE_NEWIPC), then every mount made private (so
/// nothing mounted afterwards propagates to or from the host). 0 or -errno.
int apus_detach_mounts(void);
/// pivot_root(2), which glibc does not wrap.
int apus_pivot_root(const char *new_root, const char *put_old);
/// Gives up root for good: no supplementary groups, gid then uid set (real,
/// effective and saved) to the given ones, the ambient and bounding
/// capability sets cleared (the bounding set on the calling thread; setuid
/// clears every thread's permitted and effective sets), then checks that
/// uid 0 cannot be regained. Returns 0 or -errno.
int apus_drop_privileges(uint32_t uid, uint32_t gid);
/// CAP_DAC_OVERRIDE's number (linux/capability.h).
static const int APUS_CAP_DAC_OVERRIDE = 1;
/// Stays root but keeps capability `keep` alone: every other one leaves the
/// bounding set (the calling thread's), and the effective, permitted and
/// inheritable sets of the calling thread; ambient capabilities are cleared
/// and no_new_privs set. Call it while the process has one thread, or from
/// the thread that will do the privileged work. Returns 0 or -errno.
int apus_keep_only_capability(int keep);
/// pidfd_open(2): a pollable descriptor that becomes readable when `pid` exits.
int apus_pidfd_open(int pid);
int apus_prlimit(int pid, int resource, uint64_t value);
/// Reaps `child` without blocking if it exited; returns its pid (0: still
/// running, -1: not a child) and status.
int apus_reap_child(int child, int *status);

#ifdef __cplusplus
}
#endif
/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start.
int apus_pipe_cloexec(int fds[2]);

/// posix_spawn_file_actions_addchdir_np (a GNU extension).
int apus_spawn_actions_addchdir(posix_spawn_file_actions_t *actions, const char *dir);

#endif
