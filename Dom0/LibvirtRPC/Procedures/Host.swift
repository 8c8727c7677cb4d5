import Toolstack

/// Dom0's host: its CPUs and memory as `virsh nodeinfo`, `nodecpustats`,
/// `nodememstats` and `freecell` show them (libvirt's Linux readings of
/// /proc), and the security model (none: no sVirt).
enum HostProcedures {
    static let all: [Procedure] = [
        .call(6, "virNodeGetInfo", .readOnly, XDRVoid.self, NodeInfoResult.self) { _, _ in
            let n = Int32(HostInfo.cpuCount)
            return NodeInfoResult(model: "x86_64", memory: HostInfo.memoryKiB, cpus: n, mhz: HostInfo.mhz,
                                  nodes: 1, sockets: 1, cores: n, threads: 1)
        },
        .call(293, "virNodeGetCPUMap", .readOnly, CPUMapArguments.self, CPUMapResult.self, accepts: []) { a, _ in
            let n = HostInfo.cpuCount
            return CPUMapResult(cpumap: a.needMap != 0 ? CPUMap.all(n) : [], online: a.needOnline != 0 ? UInt32(n) : 0, ret: Int32(n))
        },
        .call(122, "virNodeGetSecurityModel", .readOnly, XDRVoid.self, SecurityModelResult.self) { _, _ in
            SecurityModelResult() // no sVirt: an empty model, so dominfo prints no security lines
        },
        .call(227, "virNodeGetCPUStats", .readOnly, NodeCPUStatsArguments.self, NodeStatsResult.self,
              accepts: []) { a, _ throws(ToolstackError) in
            // VIR_NODE_CPU_STATS_ALL_CPUS is -1.
            guard a.cpuNum >= -1 else { throw .invalidArgument("Invalid cpuNum in virNodeGetCPUStats") }
            guard let t = HostInfo.cpuTimes(cpu: a.cpuNum == -1 ? nil : Int(a.cpuNum)) else {
                throw .invalidArgument("Invalid cpuNum in virNodeGetCPUStats")
            }
            let fields = [NodeStat("kernel", t.kernel), NodeStat("user", t.user), NodeStat("idle", t.idle), NodeStat("iowait", t.iowait)]
            return try NodeStatsResult.probe(fields, nparams: a.nparams, api: "virNodeGetCPUStats")
        },
        .call(228, "virNodeGetMemoryStats", .readOnly, NodeMemoryStatsArguments.self, NodeStatsResult.self,
              accepts: []) { a, _ throws(ToolstackError) in
            // VIR_NODE_MEMORY_STATS_ALL_CELLS is -1; the host is one cell (0).
            guard a.cellNum == -1 || a.cellNum == 0 else { throw .invalidArgument("Invalid cell number \(a.cellNum)") }
            let m = HostInfo.meminfo()
            var fields = [NodeStat("total", m["MemTotal"] ?? 0), NodeStat("free", m["MemFree"] ?? 0)]
            if a.cellNum == -1 { fields += [NodeStat("buffers", m["Buffers"] ?? 0), NodeStat("cached", m["Cached"] ?? 0)] }
            return try NodeStatsResult.probe(fields, nparams: a.nparams, api: "virNodeGetMemoryStats")
        },
        .call(101, "virNodeGetCellsFreeMemory", .readOnly, CellsFreeMemoryArguments.self, CellsFreeMemoryResult.self) { a, _ throws(ToolstackError) in
            guard a.maxcells >= 0, a.maxcells <= 1024 else { throw .invalidArgument("maxCells out of range") }
            guard a.startCell >= 0, a.startCell <= 0 else { throw .invalidArgument("start cell \(a.startCell) out of range (0-0)") }
            return CellsFreeMemoryResult(cells: a.maxcells > 0 ? [HostInfo.freeMemoryBytes] : [])
        },
        .call(102, "virNodeGetFreeMemory", .readOnly, XDRVoid.self, UHyperResult.self) { _, _ in UHyperResult(HostInfo.freeMemoryBytes) },
    ]
}

/// `remote_node_get_info_ret` (model is `char[32]`: 32 ints on the wire).
struct NodeInfoResult: XDRCodable, Equatable {
    var model = ""
    var memory: UInt64 = 0
    var cpus: Int32 = 0, mhz: Int32 = 0, nodes: Int32 = 0, sockets: Int32 = 0, cores: Int32 = 0, threads: Int32 = 0
    init() {}
    init(model: String, memory: UInt64, cpus: Int32, mhz: Int32, nodes: Int32, sockets: Int32, cores: Int32, threads: Int32) {
        self.model = model; self.memory = memory; self.cpus = cpus; self.mhz = mhz
        self.nodes = nodes; self.sockets = sockets; self.cores = cores; self.threads = threads
    }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.fixedCharArray(&model, count: 32); try c.uhyper(&memory)
        try c.int(&cpus); try c.int(&mhz); try c.int(&nodes); try c.int(&sockets); try c.int(&cores); try c.int(&threads)
    }
}

/// CPU bitmaps: bit N of byte N/8 is CPU N.
enum CPUMap {
    /// The first `n` CPUs set, in `bytes` bytes (default: as few as hold them).
    static func all(_ n: Int, bytes: Int? = nil) -> [UInt8] {
        var map = [UInt8](repeating: 0, count: bytes ?? (n + 7) / 8)
        for cpu in 0..<n where cpu / 8 < map.count { map[cpu / 8] |= 1 << (cpu % 8) }
        return map
    }
}

/// `remote_node_get_cpu_map_args`
struct CPUMapArguments: FlaggedArguments, Equatable {
    var needMap: Int32 = 0, needOnline: Int32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&needMap); try c.int(&needOnline); try c.value(&flags) }
}

/// `remote_node_get_cpu_map_ret`
struct CPUMapResult: XDRCodable, Equatable {
    var cpumap: [UInt8] = []
    var online: UInt32 = 0
    var ret: Int32 = 0
    init() {}
    init(cpumap: [UInt8], online: UInt32, ret: Int32) { self.cpumap = cpumap; self.online = online; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.opaque(&cpumap, max: 2048); try c.uint(&online); try c.int(&ret) }
}

/// `remote_node_get_security_model_ret { char model<257>; char doi<257>; }`
struct SecurityModelResult: XDRCodable, Equatable {
    var model = "", doi = ""
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.charArray(&model, max: 257); try c.charArray(&doi, max: 257) }
}

/// `remote_node_get_cpu_stats_args`
struct NodeCPUStatsArguments: FlaggedArguments, Equatable {
    var cpuNum: Int32 = 0, nparams: Int32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&cpuNum); try c.int(&nparams); try c.value(&flags) }
}

/// `remote_node_get_memory_stats_args`
struct NodeMemoryStatsArguments: FlaggedArguments, Equatable {
    var nparams: Int32 = 0, cellNum: Int32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&nparams); try c.int(&cellNum); try c.value(&flags) }
}

/// `remote_node_get_cpu_stats` / `remote_node_get_memory_stats`: a field and its value.
struct NodeStat: XDRCodable, Equatable {
    var field = ""
    var value: UInt64 = 0
    init() {}
    init(_ field: String, _ value: UInt64) { self.field = field; self.value = value }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&field, max: 80); try c.uhyper(&value) }
}

/// `{ params<16>; int nparams; }` of both node stats procedures.
struct NodeStatsResult: XDRCodable, Equatable {
    var params: [NodeStat] = []
    var nparams: Int32 = 0
    init() {}
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&params, max: 16); try c.int(&nparams) }

    /// libvirt's protocol: nparams 0 asks how many there are; otherwise it
    /// must be exactly that many.
    static func probe(_ fields: [NodeStat], nparams: Int32, api: String) throws(ToolstackError) -> NodeStatsResult {
        var r = NodeStatsResult()
        r.nparams = Int32(fields.count)
        guard nparams != 0 else { return r }
        guard Int(nparams) == fields.count else { throw .invalidArgument("nparams in \(api) must be \(fields.count)") }
        r.params = fields
        return r
    }
}

/// `remote_node_get_cells_free_memory_args`
struct CellsFreeMemoryArguments: XDRCodable, Equatable {
    var startCell: Int32 = 0, maxcells: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&startCell); try c.int(&maxcells) }
}

/// `remote_node_get_cells_free_memory_ret`
struct CellsFreeMemoryResult: XDRCodable, Equatable {
    var cells: [UInt64] = []
    init() {}
    init(cells: [UInt64]) { self.cells = cells }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.uhyperArray(&cells, max: 1024) }
}
