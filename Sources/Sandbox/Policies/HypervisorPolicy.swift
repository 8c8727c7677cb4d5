/// apus-hv's filters, installed once the machine is built (memory mapped,
/// kernel loaded, devices wired, control socket listening) and before any
/// vCPU runs guest code. A vCPU thread installs its own narrower filter on
/// top before its first KVM_RUN.
public enum HypervisorPolicy {
    /// The whole process: its main loop serves the control socket and the
    /// console, reconnects to restarted backends (a Unix socket, KVM_IRQFD
    /// and KVM_IOEVENTFD again), writes its status file and reads its own
    /// threads' CPU time from /proc.
    public static var process: SyscallPolicy {
        SyscallPolicy(name: "apus-hv", syscalls: RuntimePolicy.syscalls + [
            "ioctl",
            "connect", "accept4", "sendmsg", "recvmsg", "sendto", "recvfrom", "shutdown", "getsockopt", "setsockopt", "getsockname",
            "openat", "unlinkat", "unlink", "rename", "renameat", "fsync", "fdatasync", "getdents64",
            "timerfd_create", "timerfd_settime",
            // the vCPU threads start after this filter and stack their own
            // (a filter can only take calls away)
            "clone", "clone3", "seccomp",
        ], restricted: RuntimePolicy.restricted + [RuntimePolicy.unixSocketsOnly], failing: RuntimePolicy.failing)
    }

    /// A vCPU thread: KVM_RUN and the exits it handles (port and MMIO
    /// accesses, which for virtio-mmio may send vhost-user messages to a
    /// backend and register KVM_IRQFD / KVM_IOEVENTFD), waking the main
    /// loop, logging. No new sockets, files, threads or processes.
    public static var vcpu: SyscallPolicy {
        SyscallPolicy(name: "apus-hv vCPU thread", syscalls: RuntimePolicy.syscalls + ["sendmsg", "recvmsg"],
                      restricted: RuntimePolicy.restricted + [kvmIoctlsOnly], failing: RuntimePolicy.failing)
    }

    /// ioctl with KVM's request type only (the 0xAE byte of the request
    /// number: KVM_RUN, KVM_IRQFD, KVM_IOEVENTFD, KVM_IRQ_LINE, KVM_NMI, the
    /// register calls), so a vCPU thread cannot drive a terminal, a socket
    /// or a device through another descriptor.
    public static let kvmIoctlsOnly = SyscallPolicy.Restricted("ioctl", argument: 1, values: [0xAE00], mask: 0xFF00)
}
