import ApusSys

// Logging shared by Dom0's vhost-user backends (blkback, netback).

/// Rate-limited warnings on stderr (guest-triggered problems must not flood the log).
public final class ErrorLog: @unchecked Sendable {
    // SAFETY (Sendable): guarded by `lock`.
    public static let shared = ErrorLog()
    private let lock = ConditionLock()
    private var last: UInt64 = 0
    private var suppressed = 0

    public init() {}

    public func warn(_ message: @autoclosure () -> String) {
        let now = Clock.monotonicNanoseconds()
        let (emit, skipped) = lock.withLock { () -> (Bool, Int) in
            if last != 0 && now - last < 1_000_000_000 { suppressed += 1; return (false, 0) }
            last = now
            defer { suppressed = 0 }
            return (true, suppressed)
        }
        guard emit else { return }
        let extra = skipped > 0 ? " (\(skipped) similar messages suppressed)" : ""
        try? FileDescriptor.standardError.writeAll("\(BackendLog.program): \(message())\(extra)\n")
    }
}

/// The program name prefixed to backend log lines.
public enum BackendLog {
    nonisolated(unsafe) public static var program = "apus-blkback"
    /// APUS_VHOST_TRACE set: every request a frontend sends is logged
    /// (name, descriptors, payload in hex), for debugging a frontend.
    public static let trace = getenvString("APUS_VHOST_TRACE") != nil

    static func trace(_ message: VhostUserMessage, _ label: String) {
        let name = message.request.map { "\($0)" } ?? "request \(message.requestCode)"
        let digits = Array("0123456789abcdef")
        let hex = String(message.payload.prefix(256).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] })
        try? FileDescriptor.standardError.writeAll("\(program): \(label) <- \(name) flags=0x\(String(message.flags, radix: 16)) fds=\(message.fds.count) \(hex)\n")
    }
}
