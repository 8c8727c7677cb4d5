import ApusSys

/// Errors from the KVM layer.
public enum KVMError: Error, Sendable, CustomStringConvertible {
    /// /dev/kvm could not be opened.
    case unavailable(String)
    /// KVM reports an API version other than 12.
    case wrongAPIVersion(Int32)
    /// A capability Apus needs is missing.
    case missingCapability(String)
    /// An ioctl failed.
    case ioctl(String, Errno)

    public var description: String {
        switch self {
        case .unavailable(let why): return "KVM is not available: \(why)"
        case .wrongAPIVersion(let v): return "unsupported KVM API version \(v) (need 12)"
        case .missingCapability(let c): return "KVM lacks a required capability: \(c)"
        case .ioctl(let name, let e): return "\(name) failed: \(e)"
        }
    }
}
