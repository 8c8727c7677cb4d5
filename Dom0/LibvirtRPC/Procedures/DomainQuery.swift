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
              accepts: [.live, .config, .maximum, .guest], readOnlyDenies: .guest) { a, call throws(ToolstackError) in
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

        .call(202, "virDomainIsUpdated", .readOnly, DomainArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await call.manager.isUpdated(try await call.domain(a.dom).uuid))
        },
        .call(229, "virDomainGetControlInfo", .readOnly, DomainFlagsArguments<NoFlags>.self, ControlInfoResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            // apus-hv's control socket answers or the call waits for it: the
            // monitor is never busy or broken from the client's point of view.
            guard try await call.domain(a.dom).isActive else { throw .invalidState("domain is not running") }
            return ControlInfoResult()
        },
        // Jobs are saves and restores; their progress is the state written so far.
        .call(163, "virDomainGetJobInfo", .readOnly, DomainArguments.self, JobInfoResult.self) { a, call throws(ToolstackError) in
            guard let job = try await call.manager.job(try await call.domain(a.dom).uuid, completed: false, keep: true) else { return JobInfoResult() }
            var r = JobInfoResult()
            r.type = JobInfoResult.unbounded
            r.timeElapsed = job.elapsedNanoseconds / 1_000_000
            r.dataTotal = job.memoryBytes
            r.dataProcessed = job.processed
            r.dataRemaining = job.memoryBytes > job.processed ? job.memoryBytes - job.processed : 0
            r.memTotal = r.dataTotal; r.memProcessed = r.dataProcessed; r.memRemaining = r.dataRemaining
            return r
        },
        .call(298, "virDomainGetJobStats", .readOnly, DomainFlagsArguments<DomainJobStatsFlags>.self, JobStatsResult.self,
              accepts: [.completed, .keepCompleted]) { a, call throws(ToolstackError) in
            let completed = a.flags.contains(.completed)
            guard let job = try await call.manager.job(try await call.domain(a.dom).uuid, completed: completed,
                                                       keep: a.flags.contains(.keepCompleted)) else { return JobStatsResult() }
            var r = JobStatsResult()
            r.type = completed ? JobInfoResult.completed : JobInfoResult.unbounded
            let remaining = job.memoryBytes > job.processed ? job.memoryBytes - job.processed : 0
            r.params = [TypedParameter("operation", .int(job.operation.rawValue)),
                        TypedParameter("time_elapsed", .ullong(job.elapsedNanoseconds / 1_000_000)),
                        TypedParameter("data_total", .ullong(job.memoryBytes)), TypedParameter("data_processed", .ullong(job.processed)),
                        TypedParameter("data_remaining", .ullong(completed ? 0 : remaining)),
                        TypedParameter("memory_total", .ullong(job.memoryBytes)), TypedParameter("memory_processed", .ullong(job.processed)),
                        TypedParameter("memory_remaining", .ullong(completed ? 0 : remaining))]
            return r
        },
        .call(337, "virDomainGetTime", .readWrite, DomainFlagsArguments<NoFlags>.self, TimeResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            guard try await call.domain(a.dom).isActive else { throw .invalidState("domain is not running") }
            throw ToolstackError(.argumentUnsupported, "argument unsupported: Apus has no guest agent to read the guest's clock")
        },

        .call(230, "virDomainGetVcpuPinInfo", .readOnly, VCPUPinInfoArguments.self, PinInfoResult.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            guard a.ncpumaps >= 0, a.maplen >= 0, Int64(a.ncpumaps) * Int64(a.maplen) <= 8_388_608 else {
                throw .invalidArgument("ncpumaps * maplen is too large")
            }
            let d = try await call.domain(a.dom)
            // apus-hv does not pin: every vCPU may run on every host CPU.
            let n = min(Int(a.ncpumaps), d.maxVCPUs)
            let map = CPUMap.all(HostInfo.cpuCount, bytes: Int(a.maplen))
            return PinInfoResult(cpumaps: Array(Array(repeating: map, count: n).joined()), count: Int32(n))
        },
        .call(280, "virDomainGetEmulatorPinInfo", .readOnly, EmulatorPinInfoArguments.self, PinInfoResult.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            guard a.maplen >= 0, a.maplen <= 2048 else { throw .invalidArgument("maplen is too large") }
            _ = try await call.domain(a.dom)
            return PinInfoResult(cpumaps: CPUMap.all(HostInfo.cpuCount, bytes: Int(a.maplen)), count: 1)
        },
        .call(225, "virDomainPinVcpuFlags", .readWrite, PinVCPUFlagsArguments.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            throw ToolstackError(.operationUnsupported, "Operation not supported: Apus does not pin vCPUs to host CPUs")
        },
        .call(279, "virDomainPinEmulator", .readWrite, PinEmulatorArguments.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            throw ToolstackError(.operationUnsupported, "Operation not supported: Apus does not pin its processes to host CPUs")
        },
        .call(351, "virDomainGetIOThreadInfo", .readOnly, DomainFlagsArguments<DomainImpactFlags>.self, IOThreadInfoResult.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return IOThreadInfoResult() // disk I/O runs in Dom0's backends, not in iothreads
        },
        .call(365, "virDomainGetPerfEvents", .readOnly, DomainFlagsArguments<DomainImpactFlags>.self, ParameterListResult<64>.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return ParameterListResult()
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

/// Libvirt's tunables Apus does not apply (no cgroups yet): reading them
/// says so truthfully, setting them is refused.
/// `{ remote_typed_param params<N>; }`
struct ParameterListResult<let max: Int>: XDRCodable, Equatable {
    var params: [TypedParameter] = []
    init() {}
    init(params: [TypedParameter]) { self.params = params }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&params, max: max) }
}

/// `remote_domain_get_control_info_ret` (VIR_DOMAIN_CONTROL_OK).
struct ControlInfoResult: XDRCodable, Equatable {
    var state: UInt32 = 0, details: UInt32 = 0
    var stateTime: UInt64 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.uint(&state); try c.uint(&details); try c.uhyper(&stateTime) }
}

/// `remote_domain_get_job_info_ret`
struct JobInfoResult: XDRCodable, Equatable {
    /// virDomainJobType: NONE 0, BOUNDED 1, UNBOUNDED 2, COMPLETED 3.
    static let unbounded: Int32 = 2, completed: Int32 = 3
    var type: Int32 = 0
    var timeElapsed: UInt64 = 0, timeRemaining: UInt64 = 0
    var dataTotal: UInt64 = 0, dataProcessed: UInt64 = 0, dataRemaining: UInt64 = 0
    var memTotal: UInt64 = 0, memProcessed: UInt64 = 0, memRemaining: UInt64 = 0
    var fileTotal: UInt64 = 0, fileProcessed: UInt64 = 0, fileRemaining: UInt64 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.int(&type); try c.uhyper(&timeElapsed); try c.uhyper(&timeRemaining)
        try c.uhyper(&dataTotal); try c.uhyper(&dataProcessed); try c.uhyper(&dataRemaining)
        try c.uhyper(&memTotal); try c.uhyper(&memProcessed); try c.uhyper(&memRemaining)
        try c.uhyper(&fileTotal); try c.uhyper(&fileProcessed); try c.uhyper(&fileRemaining)
    }
}

/// `remote_domain_get_job_stats_ret`
struct JobStatsResult: XDRCodable, Equatable {
    var type: Int32 = 0
    var params: [TypedParameter] = []
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&type); try c.array(&params, max: 64) }
}

/// `remote_domain_get_time_ret`
struct TimeResult: XDRCodable, Equatable {
    var seconds: Int64 = 0
    var nseconds: UInt32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.hyper(&seconds); try c.uint(&nseconds) }
}

/// `remote_domain_get_scheduler_type_ret`
struct SchedulerTypeResult: XDRCodable, Equatable {
    var type = ""
    var nparams: Int32 = 0
    init() {}
    init(type: String, nparams: Int32) { self.type = type; self.nparams = nparams }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&type); try c.int(&nparams) }
}

/// `remote_domain_get_scheduler_parameters_args`
struct SchedulerParametersArguments: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var nparams: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&nparams) }
}

/// `remote_domain_set_scheduler_parameters_args`
struct SetSchedulerParametersArguments: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var params: [TypedParameter] = []
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.array(&params, max: 16) }
}

/// `remote_domain_get_vcpu_pin_info_args`
struct VCPUPinInfoArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var ncpumaps: Int32 = 0, maplen: Int32 = 0
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&ncpumaps); try c.int(&maplen); try c.value(&flags) }
}

/// `remote_domain_get_emulator_pin_info_args`
struct EmulatorPinInfoArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var maplen: Int32 = 0
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&maplen); try c.value(&flags) }
}

/// `remote_domain_get_{vcpu,emulator}_pin_info_ret`: the maps and how many.
struct PinInfoResult: XDRCodable, Equatable {
    var cpumaps: [UInt8] = []
    var count: Int32 = 0
    init() {}
    init(cpumaps: [UInt8], count: Int32) { self.cpumaps = cpumaps; self.count = count }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.opaque(&cpumaps, max: 8_388_608); try c.int(&count) }
}

/// `remote_domain_pin_vcpu_flags_args`
struct PinVCPUFlagsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var vcpu: UInt32 = 0
    var cpumap: [UInt8] = []
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.uint(&vcpu); try c.opaque(&cpumap, max: 2048); try c.value(&flags) }
}

/// `remote_domain_pin_emulator_args`
struct PinEmulatorArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var cpumap: [UInt8] = []
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.opaque(&cpumap, max: 2048); try c.value(&flags) }
}

/// `remote_domain_get_iothread_info_ret`
struct IOThreadInfoResult: XDRCodable, Equatable {
    struct Info: XDRCodable, Equatable {
        var id: UInt32 = 0
        var cpumap: [UInt8] = []
        mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.uint(&id); try c.opaque(&cpumap, max: 2048) }
    }
    var info: [Info] = []
    var ret: UInt32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&info, max: 16384); try c.uint(&ret) }
}
