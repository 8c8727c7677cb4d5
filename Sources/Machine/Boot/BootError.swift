/// Errors while loading a guest kernel, initrd or command line. All of them
/// come from user-supplied files or flags and end in one clear message.
public enum BootError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The kernel file is not a bzImage Apus can boot.
    case notABzImage(String)
    /// The boot protocol is older than Apus supports.
    case protocolTooOld(UInt16)
    /// The kernel has no 64-bit entry point.
    case no64BitEntry
    /// The kernel, initrd or command line does not fit in guest memory.
    case doesNotFit(String)
    /// The command line is longer than the kernel accepts.
    case commandLineTooLong(length: Int, limit: Int)
    /// Reading a file failed.
    case io(String)

    public var description: String {
        switch self {
        case .notABzImage(let why): return "not a bzImage kernel: \(why)"
        case .protocolTooOld(let v): return "kernel boot protocol \(v >> 8).\(v & 0xFF) is too old (need 2.12 or later)"
        case .no64BitEntry: return "kernel has no 64-bit entry point (XLF_KERNEL_64 not set)"
        case .doesNotFit(let what): return "\(what) does not fit in guest memory"
        case .commandLineTooLong(let l, let limit): return "kernel command line is \(l) bytes; this kernel accepts at most \(limit)"
        case .io(let s): return s
        }
    }
}
