/// apus-netback's filter, installed once its control socket listens and its
/// TAP uplink is open, before a frontend connects. apusd adds ports at run
/// time, so making a listening Unix socket stays allowed (bound in apusd's
/// runtime directory); the TAP is read and written as it is. The inflight
/// region a frontend asks for (GET_INFLIGHT_FD) is a memfd sized and sealed here.
public enum NetBackendPolicy {
    public static var process: SyscallPolicy {
        SyscallPolicy(name: "apus-netback", syscalls: RuntimePolicy.syscalls + [
            "accept4", "bind", "listen", "sendmsg", "recvmsg", "sendto", "recvfrom", "shutdown", "getsockopt", "setsockopt", "getsockname",
            "unlink", "unlinkat", "fchmod", "chmod", "fchmodat",
            "clone", "clone3", "ioctl", "timerfd_create", "timerfd_settime",
            "memfd_create", "ftruncate",
        ], restricted: RuntimePolicy.restricted + [RuntimePolicy.unixSocketsOnly], failing: RuntimePolicy.failing)
    }
}
