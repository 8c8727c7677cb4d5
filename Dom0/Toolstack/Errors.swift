/// A toolstack error as libvirt reports it: a virErrorNumber, a
/// virErrorDomain and the message virsh prints (with libvirt's prefix).
public struct ToolstackError: Error, Equatable, Sendable, CustomStringConvertible {
    /// virErrorNumber values used by Apus.
    public enum Code: Int32, Sendable {
        case internalError = 1
        case noSupport = 3
        case noConnect = 5
        case operationDenied = 6
        case invalidArgument = 8
        case operationFailed = 9
        case xmlError = 27
        case configSyntax = 33
        case systemError = 38
        case rpc = 39
        case noDomain = 42
        case noNetwork = 43
        case invalidMAC = 44
        case noNetworkPort = 107
        case noStoragePool = 49
        case noStorageVolume = 50
        case storagePoolBuilt = 76
        case storageVolumeExists = 90
        case operationInvalid = 55
        case configUnsupported = 67
        case operationTimeout = 68
        case noDomainMetadata = 80
        case argumentUnsupported = 74
        case operationUnsupported = 84
        case noDomainSnapshot = 72
    }
    /// virErrorDomain values used by Apus.
    public enum Origin: Int32, Sendable {
        case none = 0
        case rpc = 7
        case storage = 18
        case network = 19
        case domain = 20
        case domainSnapshot = 57
        case hypervisor = 66 // VIR_FROM_... any value virsh shows as a label only
    }

    public let code: Code
    public let origin: Origin
    public let message: String

    public init(_ code: Code, _ message: String, origin: Origin = .domain) {
        self.code = code
        self.origin = origin
        self.message = message
    }

    public var description: String { message }

    // The constructors below put libvirt's standard prefixes into the message.
    public static func xml(_ detail: String) -> ToolstackError { ToolstackError(.xmlError, "XML error: \(detail)") }
    public static func unsupported(_ detail: String) -> ToolstackError { ToolstackError(.configUnsupported, "unsupported configuration: \(detail)") }
    public static func invalidState(_ detail: String) -> ToolstackError { ToolstackError(.operationInvalid, "Requested operation is not valid: \(detail)") }
    public static func invalidArgument(_ detail: String) -> ToolstackError { ToolstackError(.invalidArgument, "invalid argument: \(detail)") }
    public static func failed(_ detail: String) -> ToolstackError { ToolstackError(.operationFailed, "operation failed: \(detail)") }
    public static func internalError(_ detail: String) -> ToolstackError { ToolstackError(.internalError, "internal error: \(detail)") }
    public static func noDomain(_ detail: String) -> ToolstackError { ToolstackError(.noDomain, "Domain not found: \(detail)") }
    public static func noStoragePool(_ detail: String) -> ToolstackError { ToolstackError(.noStoragePool, "Storage pool not found: \(detail)", origin: .storage) }
    public static func noStorageVolume(_ detail: String) -> ToolstackError { ToolstackError(.noStorageVolume, "Storage volume not found: \(detail)", origin: .storage) }
    public static func noNetwork(_ detail: String) -> ToolstackError { ToolstackError(.noNetwork, "Network not found: \(detail)", origin: .network) }
    public static func noSnapshot(_ detail: String) -> ToolstackError {
        ToolstackError(.noDomainSnapshot, "Domain snapshot not found: \(detail)", origin: .domainSnapshot)
    }
    /// VIR_ERR_OPERATION_UNSUPPORTED: something libvirt can do that Apus does not.
    public static func unsupportedOperation(_ detail: String) -> ToolstackError {
        ToolstackError(.operationUnsupported, "Operation not supported: \(detail)")
    }
    /// A failed system call, worded as libvirt's virReportSystemError (no prefix).
    public static func systemError(_ detail: String) -> ToolstackError { ToolstackError(.systemError, detail, origin: .network) }
    public static func denied(_ detail: String) -> ToolstackError { ToolstackError(.operationDenied, "operation forbidden: \(detail)") }
}
