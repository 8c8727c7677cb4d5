/// apus-bootloader's filter, installed once the disk image (with its
/// backing chain) and the two output files are open, before the first byte
/// of the guest's disk is parsed: from then on it reads and writes the
/// descriptors it has, and nothing else.
public enum BootLoaderPolicy {
    public static var process: SyscallPolicy {
        SyscallPolicy(name: "apus-bootloader", syscalls: RuntimePolicy.syscalls + ["ftruncate", "fsync"], restricted: RuntimePolicy.restricted, failing: RuntimePolicy.failing)
    }
}
