import Sandbox
import Testing

/// The allow-lists as code: every name is a system call on this
/// architecture (a typo would otherwise surface as a process killed in
/// production), and each narrower filter really is narrower.
@Suite struct SyscallPolicyTests {
    static let all: [SyscallPolicy] = [HypervisorPolicy.process, HypervisorPolicy.vcpu, BlockBackendPolicy.process,
                                       NetBackendPolicy.process, BootLoaderPolicy.process]

    @Test func everyNameIsASystemCall() {
        for p in Self.all { #expect(p.unknownNames.isEmpty, "\(p.name): \(p.unknownNames)") }
        #expect(SyscallPolicy(name: "typo", syscalls: ["read", "raed"]).unknownNames == ["raed"])
    }

    @Test func theVCPUThreadIsHeldToLessThanItsProcess() {
        let process = Set(HypervisorPolicy.process.syscalls), vcpu = Set(HypervisorPolicy.vcpu.syscalls)
        #expect(vcpu.isSubset(of: process))
        // ioctl only with KVM's request type (KVM_RUN is _IO(0xAE, 0x80)).
        #expect(!vcpu.contains("ioctl"))
        #expect(HypervisorPolicy.vcpu.restricted.contains { $0.syscall == "ioctl" && $0.argument == 1 && $0.mask == 0xFF00 && $0.values == [0xAE00] })
        // No new sockets, files, threads, programs or filters from a vCPU thread.
        for call in ["socket", "connect", "accept4", "openat", "clone", "clone3", "execve", "seccomp", "unlink"] {
            #expect(!vcpu.contains(call), "\(call)")
        }
        for call in ["futex", "write", "sendmsg"] { #expect(vcpu.contains(call)) }
    }

    @Test func nothingMayStartAProgramOrReachOtherProcesses() {
        for p in Self.all {
            let allowed = Set(p.syscalls)
            for call in ["execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
                         "pivot_root", "chroot", "setuid", "init_module", "finit_module", "kexec_load", "bpf", "perf_event_open",
                         "personality", "keyctl", "add_key", "open_by_handle_at", "userfaultfd", "reboot"] {
                #expect(!allowed.contains(call), "\(p.name) allows \(call)")
            }
            // Signals only at itself.
            #expect(!allowed.contains("kill") && !allowed.contains("tgkill"), "\(p.name)")
            #expect(p.restricted.contains { $0.syscall == "kill" && $0.argument == 0 })
        }
        // Sockets: only Unix ones, and only where a process makes new ones.
        #expect(HypervisorPolicy.process.restricted.contains { $0.syscall == "socket" && $0.values == [1] })
        #expect(!BlockBackendPolicy.process.syscalls.contains("socket") && !BlockBackendPolicy.process.restricted.contains { $0.syscall == "socket" })
        // The boot loader, which parses what the guest wrote, opens nothing and writes only what it holds.
        #expect(!BootLoaderPolicy.process.syscalls.contains { ["openat", "socket", "clone", "clone3", "ioctl", "unlink"].contains($0) })
    }

    @Test func callNumbersHaveNames() {
        #expect(SyscallPolicy.name(of: 135) == "personality")
        #expect(SyscallPolicy.name(of: 0) == "read")
        #expect(SyscallPolicy.name(of: 99999) == "syscall 99999")
    }
}
