import ApusSys

/// apus-hv's diagnostics: one line each on stderr, prefixed with the
/// program name. Kept dependency-free to keep the hypervisor's memory small.
public enum Log {
    /// Verbosity, from the APUS_LOG environment variable (error, warn, info, debug).
    public enum Level: Int, Sendable, Comparable {
        case error, warning, info, debug
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    nonisolated(unsafe) static var level: Level = {
        switch getenvString("APUS_LOG") {
        case "debug": return .debug
        case "info": return .info
        case "error": return .error
        default: return .warning
        }
    }()

    /// The program name used as the prefix.
    nonisolated(unsafe) public static var program = "apus-hv"

    static func write(_ level: Level, _ message: String) {
        guard level <= Self.level else { return }
        try? FileDescriptor.standardError.writeAll("\(program): \(message)\n")
    }

    public static func error(_ m: @autoclosure () -> String) { write(.error, m()) }
    public static func warning(_ m: @autoclosure () -> String) { write(.warning, m()) }
    public static func info(_ m: @autoclosure () -> String) { write(.info, m()) }
    public static func debug(_ m: @autoclosure () -> String) { if Self.level >= .debug { write(.debug, m()) } }
}
