import ApusControl
import ApusSys

/// Results of a harness run: one line per check, PASS or FAIL with detail,
/// and the measurements behind the tables; written at the end as JSON lines
/// and as JUnit XML for CI systems (``writeJSONLines(to:)``, ``writeJUnit(to:)``).
public final class Report: @unchecked Sendable {
    // SAFETY (Sendable): used from one thread.
    public struct Check: Sendable {
        /// The mode that made it (conformance, integrity, restart, fs ...).
        public let suite: String
        public let name: String
        public let passed: Bool
        public let detail: String
        /// Since the suite's previous check (or its start).
        public let seconds: Double
    }
    public private(set) var checks: [Check] = []
    /// One object per table row or event (a kill, a benchmark row), in order.
    public private(set) var measurements: [JSONValue] = []
    public let verbose: Bool
    /// The mode now running: checks and measurements are filed under it.
    public var suite: String = "harness" {
        didSet { lastMark = Clock.monotonicNanoseconds() }
    }
    private var lastMark = Clock.monotonicNanoseconds()

    public init(verbose: Bool = true, suite: String = "harness") {
        self.verbose = verbose
        self.suite = suite
    }

    /// Records a check and prints it.
    public func check(_ name: String, _ passed: Bool, _ detail: @autoclosure () -> String = "") {
        let d = detail()
        let now = Clock.monotonicNanoseconds()
        checks.append(Check(suite: suite, name: name, passed: passed, detail: d, seconds: Double(now &- lastMark) / 1e9))
        lastMark = now
        if verbose { emit("\(passed ? "PASS" : "FAIL")  \(name)\(d.isEmpty ? "" : "  (\(d))")") }
    }

    /// Records a measurement (its members after the suite's name).
    public func measure(_ members: [(String, JSONValue)]) {
        measurements.append(.object([("suite", .string(suite))] + members))
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

    // MARK: machine-readable reports

    /// One JSON object per line: every measurement, then every check
    /// (`{"suite":..,"check":..,"passed":..,"detail":..,"seconds":..}`).
    public func jsonLines() -> String {
        var out = ""
        for m in measurements { out += m.text + "\n" }
        for c in checks {
            out += JSONValue.object([("suite", .string(c.suite)), ("check", .string(c.name)), ("passed", .bool(c.passed)),
                                     ("detail", .string(c.detail)), ("seconds", .number(c.seconds))]).text + "\n"
        }
        return out
    }

    /// JUnit XML as Jenkins, GitLab and GitHub's test reporters read it: a
    /// testsuite per mode, a testcase per check, a failure element with
    /// the detail for each failed one.
    public func junit() -> String {
        var suites: [(String, [Check])] = []
        for c in checks {
            if let i = suites.firstIndex(where: { $0.0 == c.suite }) { suites[i].1.append(c) } else { suites.append((c.suite, [c])) }
        }
        func time(_ cs: [Check]) -> String { Report.decimal(cs.reduce(0) { $0 + $1.seconds }, 3) }
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<testsuites name=\"apus-vhost-test\" tests=\"\(checks.count)\" failures=\"\(failures.count)\" time=\"\(time(checks))\">\n"
        for (name, cs) in suites {
            out += "  <testsuite name=\"\(Report.xml(name))\" tests=\"\(cs.count)\" failures=\"\(cs.filter { !$0.passed }.count)\" errors=\"0\" time=\"\(time(cs))\">\n"
            for c in cs {
                let head = "    <testcase classname=\"apus-vhost-test.\(Report.xml(name))\" name=\"\(Report.xml(c.name))\" time=\"\(Report.decimal(c.seconds, 3))\""
                if c.passed {
                    out += head + "/>\n"
                } else {
                    out += head + ">\n      <failure message=\"\(Report.xml(c.detail.isEmpty ? "failed" : c.detail))\"/>\n    </testcase>\n"
                }
            }
            out += "  </testsuite>\n"
        }
        return out + "</testsuites>\n"
    }

    /// Text for an XML attribute: markup escaped, characters XML 1.0 cannot carry dropped.
    static func xml(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "\n": out += "&#10;"
            case "\t": out += "&#9;"
            default:
                if u.value >= 0x20, u.value != 0xFFFE, u.value != 0xFFFF { out.unicodeScalars.append(u) }
            }
        }
        return out
    }

    public func writeJSONLines(to path: String) throws { try Report.write(jsonLines(), to: path) }
    public func writeJUnit(to path: String) throws { try Report.write(junit(), to: path) }

    static func write(_ text: String, to path: String) throws {
        let fd = try FileDescriptor.open(path, [.writeOnly, .create, .truncate], mode: 0o644)
        defer { fd.close() }
        try fd.writeAll(text)
    }

    public func summary(_ mode: String) {
        emit("\(mode): \(checks.count - failures.count)/\(checks.count) checks passed")
    }
}
