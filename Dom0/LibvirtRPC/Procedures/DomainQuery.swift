import Toolstack

/// What a domain is and how it is tuned: info, state, XML, vCPUs, memory,
/// the setters of `setmem` and `setvcpus`.
enum DomainQueryProcedures {
    static let all: [Procedure] = [
        .call(16, "virDomainGetInfo", .readOnly, DomainArguments.self, DomainInfoResult.self) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            return DomainInfoResult(state: d.state.rawValue, maxMem: d.maxMemoryKiB, memory: d.memoryKiB, nrVirtCpu: Int32(d.vcpus),
                                    cpuTime: await call.manager.cpuTime(d.uuid))
        },
        .call(212, "virDomainGetState", .readOnly, DomainFlagsArguments<NoFlags>.self, DomainStateResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            return DomainStateResult(state: d.state.rawValue, reason: d.reason)
        },
        .call(19, "virDomainGetOSType", .readOnly, DomainArguments.self, StringResult.self) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return StringResult("hvm")
        },
        .call(14, "virDomainGetXMLDesc", .readOnly, DomainFlagsArguments<DomainXMLFlags>.self, StringResult.self,
              accepts: [.secure, .inactive, .updateCPU, .migratable], readOnlyDenies: [.secure, .migratable]) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            return StringResult(try await call.manager.xml(d.uuid, inactive: a.flags.contains(.inactive)))
        },
        .call(17, "virDomainGetMaxMemory", .readOnly, DomainArguments.self, UHyperResult.self) { a, call throws(ToolstackError) in
            UHyperResult(try await call.domain(a.dom).maxMemoryKiB)
        },
        .call(18, "virDomainGetMaxVcpus", .readOnly, DomainArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(Int32(try await call.domain(a.dom).vcpus))
        },
        .call(200, "virDomainGetVcpusFlags", .readOnly, DomainFlagsArguments<DomainImpactFlags>.self, IntResult.self,
              accepts: [.live, .config, .maximum, .guest]) { a, call throws(ToolstackError) in
            guard !a.flags.contains(.guest) else { throw ToolstackError(.operationUnsupported, "Operation not supported: Apus has no guest agent") }
            let d = try await call.domain(a.dom)
            return IntResult(Int32(try await call.manager.vcpuCount(d.uuid, impact: .init(rawValue: a.flags.rawValue & 7))))
        },
        .call(20, "virDomainGetVcpus", .readOnly, GetVCPUsArguments.self, GetVCPUsResult.self) { a, call throws(ToolstackError) in
            guard a.maxinfo >= 1, a.maxinfo <= 16384 else { throw .invalidArgument("maxinfo must be between 1 and 16384") }
            guard a.maplen >= 0, Int64(a.maxinfo) * Int64(a.maplen) <= 8_388_608 else { throw .invalidArgument("maxinfo * maplen is too large") }
            let d = try await call.domain(a.dom)
            guard d.uuid != .zero else { throw .invalidState("Domain-0's CPUs are the host's: see nodeinfo") }
            let vcpus = try await call.manager.vcpus(d.uuid).prefix(Int(a.maxinfo))
            // Affinity: every host CPU (apus-hv does not pin).
            let map = CPUMap.all(HostInfo.cpuCount, bytes: Int(a.maplen))
            return GetVCPUsResult(info: vcpus.map { VCPUInfoWire(number: $0.number, state: 1, cpuTime: $0.cpuNanoseconds, cpu: $0.hostCPU) },
                                  cpumaps: Array(Array(repeating: map, count: vcpus.count).joined()))
        },
        .call(121, "virDomainGetSecurityLabel", .readOnly, DomainArguments.self, SecurityLabelResult.self) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return SecurityLabelResult()
        },
        .call(426, "virDomainGetMessages", .readOnly, DomainFlagsArguments<DomainMessageFlags>.self, MessagesResult.self,
              accepts: [.deprecation, .tainting]) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return MessagesResult()
        },

        // MARK: setters
        .call(31, "virDomainSetMemory", .readWrite, SetMemoryArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.setMemory(try await call.domain(a.dom).uuid, kib: a.memory, impact: .live)
            return XDRVoid()
        },
        .call(30, "virDomainSetMaxMemory", .readWrite, SetMemoryArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.setMemory(try await call.domain(a.dom).uuid, kib: a.memory, impact: [.maximum])
            return XDRVoid()
        },
        .call(204, "virDomainSetMemoryFlags", .readWrite, SetMemoryFlagsArguments.self, XDRVoid.self,
              accepts: [.live, .config, .maximum]) { a, call throws(ToolstackError) in
            try await call.manager.setMemory(try await call.domain(a.dom).uuid, kib: a.memory, impact: .init(rawValue: a.flags.rawValue))
            return XDRVoid()
        },
        .call(32, "virDomainSetVcpus", .readWrite, SetVCPUsArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.setVCPUs(try await call.domain(a.dom).uuid, count: Int(min(a.nvcpus, 65536)), impact: .live)
            return XDRVoid()
        },
        .call(199, "virDomainSetVcpusFlags", .readWrite, SetVCPUsFlagsArguments.self, XDRVoid.self,
              accepts: [.live, .config, .maximum, .guest, .hotpluggable]) { a, call throws(ToolstackError) in
            guard a.flags.isDisjoint(with: [.guest, .hotpluggable]) else {
                throw ToolstackError(.operationUnsupported, "Operation not supported: Apus has no guest agent or hot-pluggable vCPUs")
            }
            try await call.manager.setVCPUs(try await call.domain(a.dom).uuid, count: Int(min(a.nvcpus, 65536)),
                                            impact: .init(rawValue: a.flags.rawValue))
            return XDRVoid()
        },
    ]
}

/// `remote_domain_get_info_ret` (state is an unsigned char and nrVirtCpu an
/// unsigned short: a whole int each on the wire).
struct DomainInfoResult: XDRCodable, Equatable {
    var state: Int32 = 0
    var maxMem: UInt64 = 0, memory: UInt64 = 0
    var nrVirtCpu: Int32 = 0
    var cpuTime: UInt64 = 0
    init() {}
    init(state: Int32, maxMem: UInt64, memory: UInt64, nrVirtCpu: Int32, cpuTime: UInt64) {
        self.state = state; self.maxMem = maxMem; self.memory = memory; self.nrVirtCpu = nrVirtCpu; self.cpuTime = cpuTime
    }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.int(&state); try c.uhyper(&maxMem); try c.uhyper(&memory); try c.int(&nrVirtCpu); try c.uhyper(&cpuTime)
    }
}

/// `remote_domain_get_state_ret`
struct DomainStateResult: XDRCodable, Equatable {
    var state: Int32 = 0, reason: Int32 = 0
    init() {}
    init(state: Int32, reason: Int32) { self.state = state; self.reason = reason }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&state); try c.int(&reason) }
}

/// `remote_domain_get_vcpus_args`
struct GetVCPUsArguments: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var maxinfo: Int32 = 0, maplen: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&maxinfo); try c.int(&maplen) }
}

/// `remote_vcpu_info`
struct VCPUInfoWire: XDRCodable, Equatable {
    var number: UInt32 = 0
    /// VIR_VCPU_OFFLINE 0, RUNNING 1, BLOCKED 2.
    var state: Int32 = 0
    var cpuTime: UInt64 = 0
    var cpu: Int32 = -1
    init() {}
    init(number: UInt32, state: Int32, cpuTime: UInt64, cpu: Int32) { self.number = number; self.state = state; self.cpuTime = cpuTime; self.cpu = cpu }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.uint(&number); try c.int(&state); try c.uhyper(&cpuTime); try c.int(&cpu) }
}

/// `remote_domain_get_vcpus_ret`
struct GetVCPUsResult: XDRCodable, Equatable {
    var info: [VCPUInfoWire] = []
    var cpumaps: [UInt8] = []
    init() {}
    init(info: [VCPUInfoWire], cpumaps: [UInt8]) { self.info = info; self.cpumaps = cpumaps }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&info, max: 16384); try c.opaque(&cpumaps, max: 8_388_608) }
}

/// `remote_domain_get_security_label_ret { char label<4097>; int enforcing; }`
struct SecurityLabelResult: XDRCodable, Equatable {
    var label = ""
    var enforcing: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.charArray(&label, max: 4097); try c.int(&enforcing) }
}

/// `remote_domain_get_messages_ret { remote_nonnull_string msgs<2048>; }`
struct MessagesResult: XDRCodable, Equatable {
    var msgs: [String] = []
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.stringArray(&msgs, max: 2048) }
}

/// `remote_domain_set_memory_args` / `_set_max_memory_args`
struct SetMemoryArguments: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var memory: UInt64 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uhyper(&memory) }
}

/// `remote_domain_set_memory_flags_args`
struct SetMemoryFlagsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var memory: UInt64 = 0
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uhyper(&memory); try c.value(&flags) }
}

/// `remote_domain_set_vcpus_args`
struct SetVCPUsArguments: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var nvcpus: UInt32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uint(&nvcpus) }
}

/// `remote_domain_set_vcpus_flags_args`
struct SetVCPUsFlagsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var nvcpus: UInt32 = 0
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uint(&nvcpus); try c.value(&flags) }
}
