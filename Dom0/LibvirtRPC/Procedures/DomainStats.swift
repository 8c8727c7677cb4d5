import Toolstack

/// Counters: `domblkstat`, `domifstat`, `dommemstat`.
enum DomainStatsProcedures {
    static let all: [Procedure] = [
        .call(64, "virDomainBlockStats", .readOnly, DomainStringArguments.self, BlockStatsResult.self) { a, call throws(ToolstackError) in
            let c = try await call.manager.blockStats(try await call.domain(a.dom).uuid, device: a.string)
            return BlockStatsResult(rdReq: c.readRequests, rdBytes: c.readBytes, wrReq: c.writeRequests, wrBytes: c.writeBytes, errs: c.errors)
        },
        .call(243, "virDomainBlockStatsFlags", .readOnly, BlockStatsFlagsArguments.self, ParametersResult<16>.self,
              accepts: .stringOkay) { a, call throws(ToolstackError) in
            guard a.nparams >= 0, a.nparams <= 16 else { throw .invalidArgument("nparams too large") }
            let c = try await call.manager.blockStats(try await call.domain(a.dom).uuid, device: a.path)
            let params = BlockStatsResult.parameters(c)
            // nparams 0 is the size probe: no parameters, just how many there are.
            let sent = params.forClient(wanted: Int(a.nparams), stringsOK: call.stringsOK)
            return ParametersResult(params: sent, nparams: Int32(a.nparams == 0 ? params.count : sent.count))
        },
        .call(65, "virDomainInterfaceStats", .readOnly, DomainStringArguments.self, InterfaceStatsResult.self) { a, call throws(ToolstackError) in
            let c = try await call.manager.interfaceStats(try await call.domain(a.dom).uuid, device: a.string)
            return InterfaceStatsResult(c)
        },
        .call(159, "virDomainMemoryStats", .readOnly, MemoryStatsArguments.self, MemoryStatsResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            guard a.maxStats <= 1024 else { throw .invalidArgument("maxStats too large") }
            let stats = try await call.manager.memoryStats(try await call.domain(a.dom).uuid).prefix(Int(a.maxStats))
            return MemoryStatsResult(stats: stats.map { MemoryStat(tag: $0.tag, value: $0.value) })
        },
    ]
}

/// `remote_domain_block_stats_ret`
struct BlockStatsResult: XDRCodable, Equatable {
    var rdReq: Int64 = 0, rdBytes: Int64 = 0, wrReq: Int64 = 0, wrBytes: Int64 = 0, errs: Int64 = 0
    init() {}
    init(rdReq: UInt64, rdBytes: UInt64, wrReq: UInt64, wrBytes: UInt64, errs: UInt64) {
        self.rdReq = Int64(clamping: rdReq); self.rdBytes = Int64(clamping: rdBytes)
        self.wrReq = Int64(clamping: wrReq); self.wrBytes = Int64(clamping: wrBytes); self.errs = Int64(clamping: errs)
    }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.hyper(&rdReq); try c.hyper(&rdBytes); try c.hyper(&wrReq); try c.hyper(&wrBytes); try c.hyper(&errs)
    }

    /// VIR_DOMAIN_BLOCK_STATS_* typed parameters (all LLONG).
    static func parameters(_ c: BlockCounters) -> [TypedParameter] {
        [("rd_operations", c.readRequests), ("rd_bytes", c.readBytes), ("wr_operations", c.writeRequests), ("wr_bytes", c.writeBytes),
         ("flush_operations", c.flushRequests), ("rd_total_times", c.readNanoseconds), ("wr_total_times", c.writeNanoseconds),
         ("flush_total_times", c.flushNanoseconds), ("errs", c.errors)].map { TypedParameter($0.0, .llong(Int64(clamping: $0.1))) }
    }
}

/// `remote_domain_block_stats_flags_args`
struct BlockStatsFlagsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var path = ""
    var nparams: Int32 = 0
    var flags = TypedParameterFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&dom); try c.string(&path, max: 4096); try c.int(&nparams); try c.value(&flags)
    }
}

/// `remote_domain_interface_stats_ret`
struct InterfaceStatsResult: XDRCodable, Equatable {
    var rxBytes: Int64 = 0, rxPackets: Int64 = 0, rxErrs: Int64 = 0, rxDrop: Int64 = 0
    var txBytes: Int64 = 0, txPackets: Int64 = 0, txErrs: Int64 = 0, txDrop: Int64 = 0
    init() {}
    init(_ c: InterfaceCounters) {
        rxBytes = c.rxBytes; rxPackets = c.rxPackets; rxErrs = c.rxErrors; rxDrop = c.rxDrops
        txBytes = c.txBytes; txPackets = c.txPackets; txErrs = c.txErrors; txDrop = c.txDrops
    }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.hyper(&rxBytes); try c.hyper(&rxPackets); try c.hyper(&rxErrs); try c.hyper(&rxDrop)
        try c.hyper(&txBytes); try c.hyper(&txPackets); try c.hyper(&txErrs); try c.hyper(&txDrop)
    }
}

/// `remote_domain_memory_stats_args`
struct MemoryStatsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var maxStats: UInt32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uint(&maxStats); try c.value(&flags) }
}

/// `remote_domain_memory_stat`
struct MemoryStat: XDRCodable, Equatable {
    var tag: Int32 = 0
    var value: UInt64 = 0
    init() {}
    init(tag: Int32, value: UInt64) { self.tag = tag; self.value = value }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&tag); try c.uhyper(&value) }
}

/// `remote_domain_memory_stats_ret`
struct MemoryStatsResult: XDRCodable, Equatable {
    var stats: [MemoryStat] = []
    init() {}
    init(stats: [MemoryStat]) { self.stats = stats }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&stats, max: 1024) }
}
