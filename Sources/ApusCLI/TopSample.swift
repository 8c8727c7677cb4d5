/// One observation of a domain's counters, for `apus top`.
public struct TopSample: Sendable, Equatable {
    public var name: String
    public var state: String
    public var cpuNanoseconds: UInt64
    public var memoryKiB: UInt64
    public var maxMemoryKiB: UInt64
    public var vcpus: Int
    /// Summed over the domain's disks / NICs; nil when the daemon has none to report.
    public var diskReadBytes: Int64?
    public var diskWriteBytes: Int64?
    public var netRxBytes: Int64?
    public var netTxBytes: Int64?
    public var disks: Int
    public var nics: Int
    /// Monotonic time of the sample.
    public var atNanoseconds: UInt64

    public init(name: String, state: String, cpuNanoseconds: UInt64, memoryKiB: UInt64, maxMemoryKiB: UInt64, vcpus: Int,
                diskReadBytes: Int64? = nil, diskWriteBytes: Int64? = nil, netRxBytes: Int64? = nil, netTxBytes: Int64? = nil,
                disks: Int = 0, nics: Int = 0, atNanoseconds: UInt64) {
        self.name = name
        self.state = state
        self.cpuNanoseconds = cpuNanoseconds
        self.memoryKiB = memoryKiB
        self.maxMemoryKiB = maxMemoryKiB
        self.vcpus = vcpus
        self.diskReadBytes = diskReadBytes
        self.diskWriteBytes = diskWriteBytes
        self.netRxBytes = netRxBytes
        self.netTxBytes = netTxBytes
        self.disks = disks
        self.nics = nics
        self.atNanoseconds = atNanoseconds
    }
}

/// `apus top`'s table: per-domain CPU share and disk/network rates between
/// two samples (xentop's columns). A domain seen once shows totals only.
public enum TopView {
    public static func render(previous: [TopSample], current: [TopSample]) -> String {
        let before = Dictionary(previous.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var t = Table(["NAME", "STATE", "CPU(sec)", "CPU(%)", "MEM(k)", "MAXMEM(k)", "VCPUS", "VBDS", "VBD_RD(k/s)", "VBD_WR(k/s)",
                       "NETS", "NETRX(k/s)", "NETTX(k/s)"], rightAligned: Set(2...12))
        for s in current.sorted(by: { $0.name < $1.name }) {
            let p = before[s.name]
            let seconds = p.map { Double(s.atNanoseconds &- $0.atNanoseconds) / 1e9 } ?? 0
            func rate(_ now: Int64?, _ then: Int64?) -> String {
                guard let now else { return "-" }
                guard let then, seconds > 0, now >= then else { return "0" }
                return String(Int((Double(now - then) / 1024 / seconds).rounded()))
            }
            var cpu = "0.0"
            if let p, seconds > 0, s.cpuNanoseconds >= p.cpuNanoseconds {
                cpu = fixed(Double(s.cpuNanoseconds - p.cpuNanoseconds) / 1e9 / seconds * 100, 1)
            }
            t.add([s.name, s.state, String(s.cpuNanoseconds / 1_000_000_000), cpu, String(s.memoryKiB), String(s.maxMemoryKiB),
                   String(s.vcpus), String(s.disks), rate(s.diskReadBytes, p?.diskReadBytes), rate(s.diskWriteBytes, p?.diskWriteBytes),
                   String(s.nics), rate(s.netRxBytes, p?.netRxBytes), rate(s.netTxBytes, p?.netTxBytes)])
        }
        return t.render()
    }

    /// `x` with `digits` decimals, without Foundation's locale.
    static func fixed(_ x: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let n = Int((x * scale).rounded())
        let whole = n / Int(scale)
        var frac = String(n % Int(scale))
        while frac.count < digits { frac = "0" + frac }
        return digits == 0 ? String(whole) : "\(whole).\(frac)"
    }
}
