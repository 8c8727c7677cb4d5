/// A domain's resource tunables, libvirt's `<memtune>`, `<cputune>` and
/// `<blkiotune>`: limits apusd applies to the domain's cgroup (all of its
/// processes: apus-hv and its Dom0 backends), and shows through `virsh
/// memtune`, `schedinfo` and `blkiotune`. A nil field is "not set": the
/// kernel's default (unlimited, weight 100, no quota).
public struct DomainTuning: Equatable, Sendable {
    public var memory = Memory()
    public var cpu = CPU()
    public var blockIO = BlockIO()

    public init() {}

    /// Whether nothing is set (no element is written).
    public var isEmpty: Bool { self == DomainTuning() }

    /// `<memtune>`, in KiB.
    public struct Memory: Equatable, Sendable {
        /// memory.max: the most the domain's processes may use.
        public var hardLimitKiB: UInt64?
        /// memory.high: above it the kernel reclaims the domain's memory first.
        public var softLimitKiB: UInt64?
        /// memory.swap.max.
        public var swapHardLimitKiB: UInt64?
        public init() {}
    }

    /// `<cputune>`: a weight among domains, and CFS bandwidth (quota
    /// microseconds per period) for each vCPU, for apus-hv's other threads
    /// and the backends ("emulator"), and for the whole domain ("global").
    public struct CPU: Equatable, Sendable {
        /// cpu.weight (1-10000, as libvirt on cgroup v2).
        public var shares: UInt64?
        public var period: UInt64?
        /// A negative quota means no limit.
        public var quota: Int64?
        public var globalPeriod: UInt64?
        public var globalQuota: Int64?
        public var emulatorPeriod: UInt64?
        public var emulatorQuota: Int64?
        public init() {}
    }

    /// `<blkiotune>`: an I/O weight, and per host block device a weight and
    /// throughput limits (io.weight, io.max).
    public struct BlockIO: Equatable, Sendable {
        public var weight: UInt32?
        public var devices: [Device] = []
        public init() {}

        public struct Device: Equatable, Sendable {
            public var path: String
            public var weight: UInt32?
            public var readIOPS: UInt32?
            public var writeIOPS: UInt32?
            public var readBytesPerSecond: UInt64?
            public var writeBytesPerSecond: UInt64?
            public init(path: String) { self.path = path }
        }
    }

    // MARK: limits (libvirt's, for cgroup v2)

    /// VIR_DOMAIN_MEMORY_PARAM_UNLIMITED: "no limit", in KiB.
    public static let unlimitedKiB: UInt64 = 9_007_199_254_740_991
    /// cpu.weight's range.
    public static let shares: ClosedRange<UInt64> = 1...10_000
    /// CFS period and quota ranges, microseconds (VIR_CGROUP_CPU_PERIOD_*, _QUOTA_*).
    public static let periods: ClosedRange<UInt64> = 1_000...1_000_000
    public static let quotas: ClosedRange<Int64> = 1_000...17_592_186_044_415
    /// io.weight's range.
    public static let weights: ClosedRange<UInt32> = 1...10_000

    /// Checks every value against the kernel's ranges; libvirt's words.
    public func validate() throws(ToolstackError) {
        if let s = cpu.shares, !Self.shares.contains(s) {
            throw .invalidArgument("shares '\(s)' must be in range [\(Self.shares.lowerBound), \(Self.shares.upperBound)]")
        }
        for (name, p) in [("period", cpu.period), ("global_period", cpu.globalPeriod), ("emulator_period", cpu.emulatorPeriod)] {
            if let p, !Self.periods.contains(p) {
                throw .unsupported("Value of cputune '\(name)' must be in range [\(Self.periods.lowerBound), \(Self.periods.upperBound)]")
            }
        }
        for (name, q) in [("quota", cpu.quota), ("global_quota", cpu.globalQuota), ("emulator_quota", cpu.emulatorQuota)] {
            if let q, q >= 0, !Self.quotas.contains(q) {
                throw .unsupported("Value of cputune '\(name)' must be in range [\(Self.quotas.lowerBound), \(Self.quotas.upperBound)]")
            }
        }
        for (name, v) in [("hard_limit", memory.hardLimitKiB), ("soft_limit", memory.softLimitKiB), ("swap_hard_limit", memory.swapHardLimitKiB)] {
            if let v, v > Self.unlimitedKiB { throw .invalidArgument("Memory '\(v)' must be less than \(Self.unlimitedKiB) (\(name))") }
        }
        if let h = memory.hardLimitKiB, let s = memory.swapHardLimitKiB, h > s {
            throw .invalidArgument("memory hard_limit tunable value must be lower than or equal to swap_hard_limit")
        }
        if let w = blockIO.weight, !Self.weights.contains(w) {
            throw .invalidArgument("blkio weight '\(w)' must be in range [\(Self.weights.lowerBound), \(Self.weights.upperBound)]")
        }
        var paths = Set<String>()
        for d in blockIO.devices {
            guard paths.insert(d.path).inserted else { throw .xml("duplicate blkio device path '\(d.path)'") }
            guard d.path.hasPrefix("/") else { throw .invalidArgument("blkio device path '\(d.path)' must be absolute") }
            if let w = d.weight, !Self.weights.contains(w) {
                throw .invalidArgument("invalid value '\(w)' for parameter 'weight' of device '\(d.path)'")
            }
        }
    }
}

// MARK: XML

extension DomainXML {
    /// `<memtune>`, `<cputune>` and `<blkiotune>` of a domain document.
    static func parseTuning(_ root: XMLElement) throws(ToolstackError) -> DomainTuning {
        var t = DomainTuning()
        if let m = root.element("memtune") {
            func limit(_ name: String) throws(ToolstackError) -> UInt64? {
                guard let e = m.element(name) else { return nil }
                let kib = try scaledKiB(e, what: name)
                // libvirt truncates to its "unlimited"; at it, nothing is set.
                return kib >= DomainTuning.unlimitedKiB ? nil : kib
            }
            t.memory.hardLimitKiB = try limit("hard_limit")
            t.memory.softLimitKiB = try limit("soft_limit")
            t.memory.swapHardLimitKiB = try limit("swap_hard_limit")
            if m.element("min_guarantee") != nil { throw refuse("<memtune><min_guarantee>") }
        }
        if let c = root.element("cputune") {
            func unsigned(_ name: String, _ what: String) throws(ToolstackError) -> UInt64? {
                guard let text = c.childText(name) else { return nil }
                guard let v = UInt64(text.trimmingXMLWhitespace()) else { throw .xml("can't parse cputune \(what) value") }
                return v == 0 && name != "shares" ? nil : v
            }
            func signed(_ name: String, _ what: String) throws(ToolstackError) -> Int64? {
                guard let text = c.childText(name) else { return nil }
                guard let v = Int64(text.trimmingXMLWhitespace()) else { throw .xml("can't parse cputune \(what) value") }
                return v == 0 ? nil : v
            }
            t.cpu.shares = try unsigned("shares", "shares")
            t.cpu.period = try unsigned("period", "period")
            t.cpu.quota = try signed("quota", "quota")
            t.cpu.globalPeriod = try unsigned("global_period", "global period")
            t.cpu.globalQuota = try signed("global_quota", "global quota")
            t.cpu.emulatorPeriod = try unsigned("emulator_period", "emulator period")
            t.cpu.emulatorQuota = try signed("emulator_quota", "emulator quota")
            for e in c.elements() where !["shares", "period", "quota", "global_period", "global_quota", "emulator_period", "emulator_quota"].contains(e.name) {
                throw refuse("<cputune><\(e.name)>")
            }
        }
        if let b = root.element("blkiotune") {
            func number<T: FixedWidthInteger>(_ e: XMLElement, _ name: String, _ type: T.Type) throws(ToolstackError) -> T? {
                guard let text = e.childText(name) else { return nil }
                guard let v = T(text.trimmingXMLWhitespace()) else { throw .xml("could not parse blkiotune \(name) '\(text)'") }
                return v == 0 ? nil : v
            }
            t.blockIO.weight = try number(b, "weight", UInt32.self)
            for e in b.elements("device") {
                guard let path = e.childText("path")?.trimmingXMLWhitespace(), !path.isEmpty else { throw .xml("missing blkiotune device path") }
                var d = DomainTuning.BlockIO.Device(path: path)
                d.weight = try number(e, "weight", UInt32.self)
                d.readIOPS = try number(e, "read_iops_sec", UInt32.self)
                d.writeIOPS = try number(e, "write_iops_sec", UInt32.self)
                d.readBytesPerSecond = try number(e, "read_bytes_sec", UInt64.self)
                d.writeBytesPerSecond = try number(e, "write_bytes_sec", UInt64.self)
                t.blockIO.devices.append(d)
            }
        }
        try t.validate()
        return t
    }

    /// The three elements in libvirt's order and shape (empty ones left out).
    static func formatTuning(_ t: DomainTuning) -> (blkiotune: XMLElement?, memtune: XMLElement?, cputune: XMLElement?) {
        func text(_ name: String, _ value: String, _ attrs: [(name: String, value: String)] = []) -> XMLNode {
            .element(XMLElement(name, attributes: attrs, children: [.text(value)]))
        }
        var blk = XMLElement("blkiotune")
        if let w = t.blockIO.weight { blk.children.append(text("weight", String(w))) }
        for d in t.blockIO.devices {
            var e = XMLElement("device", children: [text("path", d.path)])
            if let v = d.weight { e.children.append(text("weight", String(v))) }
            if let v = d.readIOPS { e.children.append(text("read_iops_sec", String(v))) }
            if let v = d.writeIOPS { e.children.append(text("write_iops_sec", String(v))) }
            if let v = d.readBytesPerSecond { e.children.append(text("read_bytes_sec", String(v))) }
            if let v = d.writeBytesPerSecond { e.children.append(text("write_bytes_sec", String(v))) }
            blk.children.append(.element(e))
        }
        var mem = XMLElement("memtune")
        for (name, v) in [("hard_limit", t.memory.hardLimitKiB), ("soft_limit", t.memory.softLimitKiB), ("swap_hard_limit", t.memory.swapHardLimitKiB)] {
            if let v { mem.children.append(text(name, String(v), [("unit", "KiB")])) }
        }
        var cpu = XMLElement("cputune")
        if let v = t.cpu.shares { cpu.children.append(text("shares", String(v))) }
        if let v = t.cpu.period { cpu.children.append(text("period", String(v))) }
        if let v = t.cpu.quota { cpu.children.append(text("quota", String(v))) }
        if let v = t.cpu.globalPeriod { cpu.children.append(text("global_period", String(v))) }
        if let v = t.cpu.globalQuota { cpu.children.append(text("global_quota", String(v))) }
        if let v = t.cpu.emulatorPeriod { cpu.children.append(text("emulator_period", String(v))) }
        if let v = t.cpu.emulatorQuota { cpu.children.append(text("emulator_quota", String(v))) }
        return (blk.children.isEmpty ? nil : blk, mem.children.isEmpty ? nil : mem, cpu.children.isEmpty ? nil : cpu)
    }
}
