import Toolstack

/// Counters: `domblkstat`, `domifstat`, `dommemstat`.
enum DomainStatsProcedures {
    static let all: [Procedure] = [
        .call(344, "virConnectGetAllDomainStats", .readOnly, AllDomainStatsArguments.self, AllDomainStatsResult.self,
              accepts: [.active, .inactive, .persistent, .transient, .running, .paused, .shutoff, .other, .nowait, .backing, .enforceStats]) { a, call throws(ToolstackError) in
            if a.flags.contains(.enforceStats), a.stats & ~DomainStatsGroups.supported != 0 {
                throw ToolstackError(.argumentUnsupported, "argument unsupported: Stats types bits 0x\(String(a.stats & ~DomainStatsGroups.supported, radix: 16)) are not supported by this daemon")
            }
            let groups = a.stats == 0 ? StatisticsGroups.all : DomainStatsGroups.groups(a.stats)
            let uuids = a.doms.isEmpty ? nil : a.doms.map(\.uuid)
            let stats = try await call.manager.statistics(of: uuids, filter: a.flags.filter, groups: groups)
            return AllDomainStatsResult(stats.map { DomainStatsRecord(dom: RemoteDomain($0.info), params: DomainStatsGroups.parameters($0, groups: groups)) })
        },
        .call(194, "virDomainGetBlockInfo", .readOnly, DomainStringFlagsArguments<NoFlags>.self, BlockInfoResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            BlockInfoResult(try await call.manager.blockInfo(try await call.domain(a.dom).uuid, disk: a.string))
        },
        .call(353, "virDomainInterfaceAddresses", .readOnly, InterfaceAddressesArguments.self, InterfaceAddressesResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            switch a.source {
            case 0, 2:
                return InterfaceAddressesResult(try await call.manager.interfaceAddresses(d.uuid, arp: a.source == 2))
            case 1:
                // The agent source reaches into the guest: read-write only, as in libvirt.
                if call.client.readOnly { throw .denied("read only access prevents virDomainInterfaceAddresses") }
                throw ToolstackError(.argumentUnsupported, "argument unsupported: Apus has no guest agent")
            default:
                throw .invalidArgument("Unknown IP address data source \(a.source)")
            }
        },
        .call(262, "virDomainGetCPUStats", .readOnly, CPUStatsArguments.self, ParametersResult<2048>.self,
              accepts: .stringOkay) { a, call throws(ToolstackError) in
            guard a.nparams <= 16 else { throw .internalError("nparams too large") }
            guard a.ncpus <= 128 else { throw .internalError("ncpus too large") }
            let d = try await call.domain(a.dom)
            if a.startCPU == -1 {
                guard a.ncpus == 1 else { throw .invalidArgument("ncpus must be 1 when start_cpu is -1") }
                let t = try await call.manager.cpuTimes(d.uuid)
                let all = [TypedParameter("cpu_time", .ullong(t.total)), TypedParameter("user_time", .ullong(t.user)),
                           TypedParameter("system_time", .ullong(t.system))]
                if a.nparams == 0 { return ParametersResult(params: [], nparams: Int32(all.count)) }
                let sent = Array(all.prefix(Int(a.nparams)))
                return ParametersResult(params: sent, nparams: Int32(sent.count))
            }
            guard a.startCPU >= 0 else { throw .invalidArgument("start_cpu must be -1 or a CPU number") }
            guard d.isActive else { throw .invalidState("domain is not running") }
            // The number of host CPUs; no per-CPU breakdown (it needs a cgroup).
            if a.ncpus == 0 { return ParametersResult(params: [], nparams: Int32(HostInfo.cpuCount)) }
            return ParametersResult(params: [], nparams: 0)
        },
        .call(263, "virDomainGetDiskErrors", .readOnly, DiskErrorsArguments.self, DiskErrorsResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            guard a.maxerrors <= 256 else { throw .invalidArgument("maxerrors too large") }
            let errors = try await call.manager.diskErrors(try await call.domain(a.dom).uuid)
            // maxerrors 0 asks how many there are.
            let sent = errors.prefix(Int(a.maxerrors)).map { DiskErrorsResult.DiskError(disk: $0.disk, error: $0.error) }
            return DiskErrorsResult(errors: sent, nerrors: Int32(a.maxerrors == 0 ? errors.count : sent.count))
        },
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

/// The statistics groups of GET_ALL_DOMAIN_STATS (virDomainStatsTypes) and
/// libvirt's names for their fields.
enum DomainStatsGroups {
    static let state: UInt32 = 1, cpuTotal: UInt32 = 2, balloon: UInt32 = 4, vcpu: UInt32 = 8
    static let interface: UInt32 = 16, block: UInt32 = 32
    /// What Apus reports; perf, iothread, memory, dirtyrate and vm it has not.
    static let supported: UInt32 = 0x3F

    static func groups(_ bits: UInt32) -> StatisticsGroups { StatisticsGroups(rawValue: bits & supported) }

    /// The typed parameters of one domain's record, in libvirt's order.
    static func parameters(_ s: DomainStatistics, groups: StatisticsGroups) -> [TypedParameter] {
        var p: [TypedParameter] = []
        func u(_ name: String, _ v: UInt64) { p.append(TypedParameter(name, .ullong(v))) }
        func i(_ name: String, _ v: Int32) { p.append(TypedParameter(name, .int(v))) }
        func ui(_ name: String, _ v: Int) { p.append(TypedParameter(name, .uint(UInt32(clamping: v)))) }
        func str(_ name: String, _ v: String) { p.append(TypedParameter(name, .string(v))) }
        if groups.contains(.state) {
            i("state.state", s.info.state.rawValue)
            i("state.reason", s.info.reason)
        }
        if let cpu = s.cpu {
            u("cpu.time", cpu.total); u("cpu.user", cpu.user); u("cpu.system", cpu.system)
        }
        if let b = s.balloon {
            u("balloon.current", b.currentKiB); u("balloon.maximum", b.maximumKiB)
            if let rss = b.rssKiB { u("balloon.rss", rss) }
        }
        if let current = s.vcpuCurrent, let maximum = s.vcpuMaximum {
            ui("vcpu.current", current); ui("vcpu.maximum", maximum)
            for v in s.vcpus ?? [] {
                i("vcpu.\(v.number).state", 1) // VIR_VCPU_RUNNING
                u("vcpu.\(v.number).time", v.cpuNanoseconds)
                u("vcpu.\(v.number).wait", v.waitNanoseconds)
            }
        }
        if let nets = s.interfaces {
            ui("net.count", nets.count)
            for (n, net) in nets.enumerated() {
                str("net.\(n).name", net.name)
                guard let c = net.counters else { continue }
                for (k, v) in [("rx.bytes", c.rxBytes), ("rx.pkts", c.rxPackets), ("rx.errs", c.rxErrors), ("rx.drop", c.rxDrops),
                               ("tx.bytes", c.txBytes), ("tx.pkts", c.txPackets), ("tx.errs", c.txErrors), ("tx.drop", c.txDrops)] {
                    u("net.\(n).\(k)", UInt64(clamping: v))
                }
            }
        }
        if let disks = s.disks {
            ui("block.count", disks.count)
            for (n, disk) in disks.enumerated() {
                str("block.\(n).name", disk.name)
                str("block.\(n).path", disk.path)
                if let c = disk.counters {
                    for (k, v) in [("rd.reqs", c.readRequests), ("rd.bytes", c.readBytes), ("rd.times", c.readNanoseconds),
                                   ("wr.reqs", c.writeRequests), ("wr.bytes", c.writeBytes), ("wr.times", c.writeNanoseconds),
                                   ("fl.reqs", c.flushRequests), ("fl.times", c.flushNanoseconds)] {
                        u("block.\(n).\(k)", v)
                    }
                }
                if let info = disk.info {
                    u("block.\(n).allocation", info.allocation); u("block.\(n).capacity", info.capacity); u("block.\(n).physical", info.physical)
                }
            }
        }
        return p
    }
}

/// `remote_connect_get_all_domain_stats_args`
struct AllDomainStatsArguments: FlaggedArguments, Equatable {
    var doms: [RemoteDomain] = []
    var stats: UInt32 = 0
    var flags = DomainStatsFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.array(&doms, max: DomainListProcedures.listMax); try c.uint(&stats); try c.value(&flags)
    }
}

/// `remote_domain_stats_record`
struct DomainStatsRecord: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var params: [TypedParameter] = []
    init() {}
    init(dom: RemoteDomain, params: [TypedParameter]) { self.dom = dom; self.params = params }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.array(&params, max: 262_144) }
}

/// `remote_connect_get_all_domain_stats_ret`
struct AllDomainStatsResult: XDRCodable, Equatable {
    var retStats: [DomainStatsRecord] = []
    init() {}
    init(_ records: [DomainStatsRecord]) { retStats = records }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&retStats, max: DomainListProcedures.listMax) }
}

/// `remote_domain_get_block_info_ret`
struct BlockInfoResult: XDRCodable, Equatable {
    var allocation: UInt64 = 0, capacity: UInt64 = 0, physical: UInt64 = 0
    init() {}
    init(_ i: BlockInfo) { allocation = i.allocation; capacity = i.capacity; physical = i.physical }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.uhyper(&allocation); try c.uhyper(&capacity); try c.uhyper(&physical) }
}

/// `remote_domain_interface_addresses_args`
struct InterfaceAddressesArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    /// VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE 0, _AGENT 1, _ARP 2.
    var source: UInt32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uint(&source); try c.value(&flags) }
}

/// `remote_domain_ip_addr`
struct IPAddressWire: XDRCodable, Equatable {
    var type: Int32 = 0
    var addr = ""
    var prefix: UInt32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&type); try c.string(&addr); try c.uint(&prefix) }
}

/// `remote_domain_interface`
struct DomainInterfaceWire: XDRCodable, Equatable {
    var name = ""
    var hwaddr: String?
    var addrs: [IPAddressWire] = []
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&name); try c.optionalString(&hwaddr); try c.array(&addrs, max: 2048) }
}

/// `remote_domain_interface_addresses_ret`
struct InterfaceAddressesResult: XDRCodable, Equatable {
    var ifaces: [DomainInterfaceWire] = []
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&ifaces, max: 2048) }

    /// Groups addresses by interface, as libvirt lists them.
    init() {}
    init(_ addresses: [InterfaceAddress]) {
        for a in addresses {
            let ip = IPAddressWire(type: a.isIPv6 ? 1 : 0, addr: a.address, prefix: a.prefix)
            if let i = ifaces.firstIndex(where: { $0.name == a.interface && $0.hwaddr == a.mac }) {
                ifaces[i].addrs.append(ip)
            } else {
                ifaces.append(DomainInterfaceWire(name: a.interface, hwaddr: a.mac, addrs: [ip]))
            }
        }
    }
}

/// `remote_domain_get_cpu_stats_args`
struct CPUStatsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var nparams: UInt32 = 0
    var startCPU: Int32 = 0
    var ncpus: UInt32 = 0
    var flags = TypedParameterFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&dom); try c.uint(&nparams); try c.int(&startCPU); try c.uint(&ncpus); try c.value(&flags)
    }
}

/// `remote_domain_get_disk_errors_args`
struct DiskErrorsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var maxerrors: UInt32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uint(&maxerrors); try c.value(&flags) }
}

/// `remote_domain_get_disk_errors_ret`
struct DiskErrorsResult: XDRCodable, Equatable {
    struct DiskError: XDRCodable, Equatable {
        var disk = ""
        var error: Int32 = 0
        mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&disk); try c.int(&error) }
    }
    var errors: [DiskError] = []
    var nerrors: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&errors, max: 256); try c.int(&nerrors) }
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
