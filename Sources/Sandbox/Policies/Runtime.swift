#if canImport(Glibc)
import Glibc
#endif

/// What every Apus process needs from the kernel whatever it does: the
/// Swift runtime and glibc (memory, threads' synchronization, signals
/// delivered to itself, time, exit), and I/O on descriptors it already
/// holds. Each executable's policy adds its own calls to this.
public enum RuntimePolicy {
    public static let syscalls = [
        // descriptors already open
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
        "close", "fstat", "newfstatat", "statx", "lseek", "fcntl", "dup", "dup3",
        "poll", "ppoll", "epoll_create1", "epoll_wait", "epoll_pwait", "epoll_ctl", "eventfd2",
        // memory
        "mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "membarrier",
        // synchronization and scheduling
        "futex", "sched_yield", "sched_getaffinity", "rseq", "set_robust_list", "get_robust_list",
        // signals (kill and tgkill only at itself: see `restricted`)
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "rt_sigtimedwait",
        // time, identity, randomness
        "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "getrandom",
        "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getrusage", "uname",
        // the end
        "exit", "exit_group", "restart_syscall",
    ]

    /// Signals only to this process (fatal errors raise SIGABRT at
    /// themselves; threads kick each other with tgkill).
    public static var restricted: [SyscallPolicy.Restricted] {
        let me = UInt64(UInt32(bitPattern: getpid()))
        return [
            .init("tgkill", argument: 0, values: [me]),
            .init("kill", argument: 0, values: [me]),
            // prctl: naming threads (PR_SET_NAME 15, PR_GET_NAME 16), and
            // PR_SET_NO_NEW_PRIVS (38), which a thread stacking its own
            // filter sets again (it can only take privileges away).
            .init("prctl", argument: 0, values: [15, 16, 38]),
        ]
    }

    /// Calls that fail (EACCES) rather than kill where a policy does not
    /// allow them: glibc opens /proc/sys/vm/overcommit_memory the first time
    /// a thread's malloc arena shrinks, and carries on when it cannot.
    public static let failing = ["open", "openat"]

    /// Unix sockets only (AF_UNIX = 1), e.g. reconnecting to a backend.
    public static let unixSocketsOnly = SyscallPolicy.Restricted("socket", argument: 0, values: [1])
}
