import ApusSys
import CApusSys
import CSeccomp
#if canImport(Glibc)
import Glibc
#endif

/// A seccomp allow-list: the system calls a process (or one thread) may
/// make once its setup is done. Anything else kills the whole process
/// (SECCOMP_RET_KILL_PROCESS); the kernel's audit record names the call, and
/// apusd reports it. Built with libseccomp, which compiles the list into a
/// BPF program for this architecture; loading it sets no_new_privs.
public struct SyscallPolicy: Sendable {
    /// Who it is for, in messages ("apus-hv", "apus-hv vCPU thread").
    public let name: String
    /// Calls allowed with any arguments.
    public let syscalls: [String]
    /// Calls allowed only with one argument equal to one of some values
    /// (`ioctl` by request number, `socket` by family, ...).
    public let restricted: [Restricted]
    /// Calls that fail with EACCES instead of killing: ones glibc makes on
    /// its own and copes with failing (a thread's malloc arena reads
    /// /proc/sys/vm/overcommit_memory once, when it first trims).
    public let failing: [String]

    public struct Restricted: Sendable {
        public let syscall: String
        /// The argument's index (0-5).
        public let argument: UInt32
        public let values: [UInt64]
        /// When set, the argument is masked with it before the comparison.
        public let mask: UInt64?
        public init(_ syscall: String, argument: UInt32, values: [UInt64], mask: UInt64? = nil) {
            self.syscall = syscall
            self.argument = argument
            self.values = values
            self.mask = mask
        }
    }

    public init(name: String, syscalls: [String], restricted: [Restricted] = [], failing: [String] = []) {
        self.name = name
        self.syscalls = syscalls
        self.restricted = restricted
        self.failing = failing.filter { !syscalls.contains($0) }
    }

    /// Names that are not system calls on this architecture (a typo in a
    /// list; the unit tests require none).
    public var unknownNames: [String] {
        (syscalls + restricted.map(\.syscall) + failing).filter { seccomp_syscall_resolve_name($0) == __NR_SCMP_ERROR }
    }

    /// Installs the filter on the calling thread, and on every other thread
    /// of the process when `allThreads` (threads started later inherit it
    /// either way). Filters stack: a thread that installs a second, narrower
    /// policy is held to both.
    public func install(allThreads: Bool) throws(SandboxError) {
        guard let ctx = seccomp_init(apus_seccomp_kill_process()) else { throw SandboxError("\(name): seccomp_init failed") }
        defer { seccomp_release(ctx) }
        if allThreads {
            guard seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) == 0 else { throw SandboxError("\(name): cannot synchronize threads") }
        }
        // The kernel logs every kill (the audit record apusd reads; kill_process
        // is in /proc/sys/kernel/seccomp/actions_logged by default); with no
        // SCMP_FLTATR_CTL_LOG, the calls that merely fail are not logged.
        for call in Set(syscalls) {
            let nr = seccomp_syscall_resolve_name(call)
            guard nr != __NR_SCMP_ERROR else { throw SandboxError("\(name): unknown system call '\(call)'") }
            let rc = apus_seccomp_allow(ctx, nr)
            guard rc == 0 else { throw SandboxError("\(name): cannot allow \(call): \(Errno(rawValue: -rc))") }
        }
        for r in restricted {
            let nr = seccomp_syscall_resolve_name(r.syscall)
            guard nr != __NR_SCMP_ERROR else { throw SandboxError("\(name): unknown system call '\(r.syscall)'") }
            for v in Set(r.values) {
                let rc = r.mask.map { apus_seccomp_allow_if_masked(ctx, nr, r.argument, $0, v) } ?? apus_seccomp_allow_if_equal(ctx, nr, r.argument, v)
                guard rc == 0 else { throw SandboxError("\(name): cannot allow \(r.syscall) with argument \(r.argument) = \(v): \(Errno(rawValue: -rc))") }
            }
        }
        for call in Set(failing) {
            let nr = seccomp_syscall_resolve_name(call)
            guard nr != __NR_SCMP_ERROR else { throw SandboxError("\(name): unknown system call '\(call)'") }
            let rc = apus_seccomp_fail(ctx, nr, EACCES)
            guard rc == 0 else { throw SandboxError("\(name): cannot make \(call) fail: \(Errno(rawValue: -rc))") }
        }
        let rc = seccomp_load(ctx)
        guard rc == 0 else { throw SandboxError("\(name): cannot load the seccomp filter: \(Errno(rawValue: -rc))") }
    }

    /// The name of system call `number` on this architecture ("syscall N" if unknown).
    public static func name(of number: Int32) -> String {
        guard let p = seccomp_syscall_resolve_num_arch(UInt32(SCMP_ARCH_NATIVE), number) else { return "syscall \(number)" }
        // SAFETY: libseccomp returns a malloc'd NUL-terminated copy that the caller frees.
        defer { free(p) }
        return String(cString: p)
    }
}

public struct SandboxError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Test builds only: SIGUSR2 makes the process call `personality`, which no
/// policy allows, so a test proves the filter kills (and apusd reports it)
/// without a way into the process that release builds would carry.
public enum SandboxTestHook {
    public static func install() {
        #if DEBUG
        _ = apus_install_forbidden_syscall_trigger(SIGUSR2)
        #endif
    }
}
