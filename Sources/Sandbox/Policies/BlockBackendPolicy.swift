/// apus-blkback's filter, installed once the image (and its backing chain)
/// is open and the vhost-user and control sockets listen, before the first
/// frontend connects. What a session needs: accepting frontends, the
/// vhost-user messages (guest memory arrives as memfds it maps), a worker
/// thread per queue with io_uring or plain positioned I/O on the image's
/// descriptors, flush, discard (fallocate), resize (ftruncate).
public enum BlockBackendPolicy {
    public static var process: SyscallPolicy {
        SyscallPolicy(name: "apus-blkback", syscalls: RuntimePolicy.syscalls + [
            "accept4", "sendmsg", "recvmsg", "sendto", "recvfrom", "shutdown", "getsockopt", "setsockopt",
            "clone", "clone3",
            "io_uring_setup", "io_uring_enter", "io_uring_register",
            "fsync", "fdatasync", "fallocate", "ftruncate", "sync_file_range",
            "ioctl", "timerfd_create", "timerfd_settime",
            // its own sockets, removed when it stops
            "unlink", "unlinkat",
            // the inflight region a frontend asks for (GET_INFLIGHT_FD), sealed at its size
            "memfd_create",
        ], restricted: RuntimePolicy.restricted, failing: RuntimePolicy.failing)
    }
}
