import ApusSys

/// Results of a harness run: one line per check, PASS or FAIL with detail.
public final class Report: @unchecked Sendable {
    // SAFETY (Sendable): used from one thread.
    public struct Check: Sendable {
        public let name: String
        public let passed: Bool
        public let detail: String
    }
    public private(set) var checks: [Check] = []
    public let verbose: Bool
    public init(verbose: Bool = true) { self.verbose = verbose }

    /// Records a check and prints it.
    public func check(_ name: String, _ passed: Bool, _ detail: @autoclosure () -> String = "") {
        let d = detail()
        checks.append(Check(name: name, passed: passed, detail: d))
        if verbose { emit("\(passed ? "PASS" : "FAIL")  \(name)\(d.isEmpty ? "" : "  (\(d))")") }
    }

    /// Runs `body`, recording a failure if it throws.
    public func attempt(_ name: String, _ body: () throws -> Void) {
        do {
            try body()
        } catch {
            check(name, false, "\(error)")
        }
    }

    public var failures: [Check] { checks.filter { !$0.passed } }

    public func emit(_ line: String) {
        try? FileDescriptor.standardOutput.writeAll(line + "\n")
    }

    /// `v` with `digits` decimals ("-" when not finite), for tables.
    public static func decimal(_ v: Double, _ digits: Int) -> String {
        guard v.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (v * scale).rounded() / scale
        if digits == 0 { return String(Int(rounded)) }
        var s = String(rounded)
        if let dot = s.firstIndex(of: ".") {
            let decimals = s.distance(from: dot, to: s.endIndex) - 1
            if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
        }
        return s
    }

    public func summary(_ mode: String) {
        emit("\(mode): \(checks.count - failures.count)/\(checks.count) checks passed")
    }
}
