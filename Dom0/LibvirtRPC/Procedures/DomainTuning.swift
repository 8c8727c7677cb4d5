import Toolstack

/// A domain's resource tunables as libvirt's typed parameters: `virsh
/// schedinfo` (cpu_shares and CFS bandwidth), `memtune` and `blkiotune`,
/// over the domain's cgroup (DomainManager+Tuning). Field names, types and
/// order are the qemu driver's.
enum DomainTuningProcedures {
    static let all: [Procedure] = [
        .call(56, "virDomainGetSchedulerType", .readOnly, DomainArguments.self, SchedulerTypeResult.self) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return SchedulerTypeResult(type: "posix", nparams: Int32(Scheduler.fields.count))
        },
        // The flag-less calls act on the domain's current state (AFFECT_CURRENT).
        .call(57, "virDomainGetSchedulerParameters", .readOnly, SchedulerParametersArguments.self, ParameterListResult<16>.self) { a, call throws(ToolstackError) in
            try await Scheduler.get(a.dom, nparams: a.nparams, impact: [], call: call)
        },
        .call(223, "virDomainGetSchedulerParametersFlags", .readOnly, DomainParametersArguments<DomainImpactFlags>.self, ParameterListResult<16>.self,
              accepts: [.live, .config, .typedParamStringOkay]) { a, call throws(ToolstackError) in
            try await Scheduler.get(a.dom, nparams: a.nparams, impact: impact(a.flags), call: call)
        },
        .call(58, "virDomainSetSchedulerParameters", .readWrite, SetSchedulerParametersArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await set(a.dom, a.params, impact: [], call: call, Scheduler.set)
        },
        .call(219, "virDomainSetSchedulerParametersFlags", .readWrite, DomainSetParametersArguments<DomainImpactFlags, 16>.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            try await set(a.dom, a.params, impact: impact(a.flags), call: call, Scheduler.set)
        },
        .call(198, "virDomainGetMemoryParameters", .readOnly, DomainParametersArguments<DomainImpactFlags>.self, ParametersResult<16>.self,
              accepts: [.live, .config, .typedParamStringOkay]) { a, call throws(ToolstackError) in
            try await get(a.dom, nparams: a.nparams, impact: impact(a.flags), call: call, Memory.parameters)
        },
        .call(197, "virDomainSetMemoryParameters", .readWrite, DomainSetParametersArguments<DomainImpactFlags, 16>.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            try await set(a.dom, a.params, impact: impact(a.flags), call: call, Memory.set)
        },
        .call(206, "virDomainGetBlkioParameters", .readOnly, DomainParametersArguments<DomainImpactFlags>.self, ParametersResult<16>.self,
              accepts: [.live, .config, .typedParamStringOkay]) { a, call throws(ToolstackError) in
            try await get(a.dom, nparams: a.nparams, impact: impact(a.flags), call: call, BlockIO.parameters)
        },
        .call(205, "virDomainSetBlkioParameters", .readWrite, DomainSetParametersArguments<DomainImpactFlags, 16>.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            try await set(a.dom, a.params, impact: impact(a.flags), call: call, BlockIO.set)
        },
        // No NUMA: apus-hv gives a guest one node, its memory unbound.
        .call(255, "virDomainGetNumaParameters", .readOnly, DomainParametersArguments<DomainImpactFlags>.self, ParametersResult<16>.self,
              accepts: [.live, .config, .typedParamStringOkay]) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return try reply([], nparams: a.nparams, call: call)
        },
        .call(254, "virDomainSetNumaParameters", .readWrite, DomainSetParametersArguments<DomainImpactFlags, 16>.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            if let p = a.params.first { throw ToolstackError(.argumentUnsupported, "argument unsupported: Apus applies no NUMA tunables ('\(p.field)')") }
            return XDRVoid()
        },
    ]

    static func impact(_ flags: DomainImpactFlags) -> DomainManager.Impact {
        DomainManager.Impact(rawValue: flags.rawValue & (DomainImpactFlags.live.rawValue | DomainImpactFlags.config.rawValue))
    }

    /// A `_get_*_parameters` reply: nparams 0 asks how many there are.
    static func reply(_ all: [TypedParameter], nparams: Int32, call: Call) throws(ToolstackError) -> ParametersResult<16> {
        guard nparams >= 0, nparams <= 16 else { throw .internalError("nparams too large") }
        if nparams == 0 { return ParametersResult(params: [], nparams: Int32(all.countForClient(stringsOK: call.stringsOK))) }
        return ParametersResult(params: all.forClient(wanted: Int(nparams), stringsOK: call.stringsOK), nparams: 0)
    }

    static func get(_ dom: RemoteDomain, nparams: Int32, impact: DomainManager.Impact, call: Call,
                    _ parameters: (DomainTuning, Bool) -> [TypedParameter]) async throws(ToolstackError) -> ParametersResult<16> {
        guard impact != [.live, .config] else { throw .invalidArgument("flags 'affect live' and 'affect config' are mutually exclusive") }
        let d = try await call.domain(dom)
        let (tuning, live) = try await call.manager.tuning(d.uuid, impact: impact)
        return try reply(parameters(tuning, live), nparams: nparams, call: call)
    }

    static func set(_ dom: RemoteDomain, _ params: [TypedParameter], impact: DomainManager.Impact, call: Call,
                    _ apply: @escaping @Sendable ([TypedParameter], inout DomainTuning) throws(ToolstackError) -> Void) async throws(ToolstackError) -> XDRVoid {
        let d = try await call.domain(dom)
        var seen = Set<String>()
        for p in params where !seen.insert(p.field).inserted {
            throw .invalidArgument("parameter '\(p.field)' occurs multiple times")
        }
        try await call.manager.setTuning(d.uuid, impact: impact) { (t: inout DomainTuning) throws(ToolstackError) in try apply(params, &t) }
        return XDRVoid()
    }

    /// virTypedParamsValidate's complaint about a value of the wrong type.
    static func wrongType(_ p: TypedParameter, _ expected: String) -> ToolstackError {
        .invalidArgument("invalid type '\(p.value.typeName)' for parameter '\(p.field)', expected '\(expected)'")
    }

    static func ullong(_ p: TypedParameter) throws(ToolstackError) -> UInt64 {
        guard case .ullong(let v) = p.value else { throw wrongType(p, "ullong") }
        return v
    }

    static func llong(_ p: TypedParameter) throws(ToolstackError) -> Int64 {
        guard case .llong(let v) = p.value else { throw wrongType(p, "llong") }
        return v
    }

    static func unknown(_ p: TypedParameter) -> ToolstackError {
        ToolstackError(.argumentUnsupported, "argument unsupported: parameter '\(p.field)' not supported")
    }

    /// cpu_shares and CFS bandwidth: vcpu_*, emulator_*, global_*.
    enum Scheduler {
        static let fields = ["cpu_shares", "vcpu_period", "vcpu_quota", "emulator_period", "emulator_quota", "global_period", "global_quota"]

        static func get(_ dom: RemoteDomain, nparams: Int32, impact: DomainManager.Impact, call: Call) async throws(ToolstackError) -> ParameterListResult<16> {
            // Scheduler parameters have no size probe: the client sizes its
            // array from GET_SCHEDULER_TYPE and takes at most that many.
            guard nparams >= 0, nparams <= 16 else { throw .internalError("nparams too large") }
            let d = try await call.domain(dom)
            let (t, live) = try await call.manager.tuning(d.uuid, impact: impact)
            return ParameterListResult(params: Array(parameters(t, live: live).prefix(Int(nparams))))
        }

        /// A running domain's values are the cgroup's (weight 100, period
        /// 100000 and quota -1, no limit, when unset); a definition's unset
        /// ones are 0, as libvirt shows them.
        static func parameters(_ t: DomainTuning, live: Bool) -> [TypedParameter] {
            let c = t.cpu
            func period(_ p: UInt64?) -> TypedParameter.Value { .ullong(p ?? (live ? 100_000 : 0)) }
            func quota(_ q: Int64?) -> TypedParameter.Value { .llong(q ?? (live ? -1 : 0)) }
            return [TypedParameter("cpu_shares", .ullong(c.shares ?? (live ? 100 : 0))),
                    TypedParameter("vcpu_period", period(c.period)), TypedParameter("vcpu_quota", quota(c.quota)),
                    TypedParameter("emulator_period", period(c.emulatorPeriod)), TypedParameter("emulator_quota", quota(c.emulatorQuota)),
                    TypedParameter("global_period", period(c.globalPeriod)), TypedParameter("global_quota", quota(c.globalQuota))]
        }

        /// A period or quota of 0 changes nothing (libvirt's rule); a
        /// negative quota removes the limit.
        static func set(_ params: [TypedParameter], _ t: inout DomainTuning) throws(ToolstackError) {
            for p in params {
                switch p.field {
                case "cpu_shares": t.cpu.shares = try ullong(p)
                case "vcpu_period": if case let v = try ullong(p), v != 0 { t.cpu.period = try range(p.field, v) }
                case "emulator_period": if case let v = try ullong(p), v != 0 { t.cpu.emulatorPeriod = try range(p.field, v) }
                case "global_period": if case let v = try ullong(p), v != 0 { t.cpu.globalPeriod = try range(p.field, v) }
                case "vcpu_quota": if case let v = try llong(p), v != 0 { t.cpu.quota = try range(p.field, v) }
                case "emulator_quota": if case let v = try llong(p), v != 0 { t.cpu.emulatorQuota = try range(p.field, v) }
                case "global_quota": if case let v = try llong(p), v != 0 { t.cpu.globalQuota = try range(p.field, v) }
                default: throw unknown(p)
                }
            }
        }

        static func range(_ field: String, _ v: UInt64) throws(ToolstackError) -> UInt64 {
            guard DomainTuning.periods.contains(v) else {
                throw .invalidArgument("value of '\(field)' is out of range [\(DomainTuning.periods.lowerBound), \(DomainTuning.periods.upperBound)]")
            }
            return v
        }

        static func range(_ field: String, _ v: Int64) throws(ToolstackError) -> Int64? {
            guard v > 0 else { return nil }
            guard DomainTuning.quotas.contains(v) else {
                throw .invalidArgument("value of '\(field)' is out of range [\(DomainTuning.quotas.lowerBound), \(DomainTuning.quotas.upperBound)]")
            }
            return v
        }
    }

    /// hard_limit, soft_limit, swap_hard_limit, in KiB (min_guarantee is
    /// not Linux's: refused, as the qemu driver does).
    enum Memory {
        static func parameters(_ t: DomainTuning, live: Bool) -> [TypedParameter] {
            let unlimited = DomainTuning.unlimitedKiB
            return [TypedParameter("hard_limit", .ullong(t.memory.hardLimitKiB ?? unlimited)),
                    TypedParameter("soft_limit", .ullong(t.memory.softLimitKiB ?? unlimited)),
                    TypedParameter("swap_hard_limit", .ullong(t.memory.swapHardLimitKiB ?? unlimited))]
        }

        static func set(_ params: [TypedParameter], _ t: inout DomainTuning) throws(ToolstackError) {
            for p in params {
                let v = try ullong(p)
                let kib: UInt64? = v >= DomainTuning.unlimitedKiB ? nil : v
                switch p.field {
                case "hard_limit": t.memory.hardLimitKiB = kib
                case "soft_limit": t.memory.softLimitKiB = kib
                case "swap_hard_limit": t.memory.swapHardLimitKiB = kib
                default: throw unknown(p)
                }
            }
        }
    }

    /// weight, and per host block device "PATH,VALUE,PATH,VALUE" strings.
    enum BlockIO {
        static let deviceFields = ["device_weight", "device_read_iops_sec", "device_write_iops_sec", "device_read_bytes_sec", "device_write_bytes_sec"]

        static func parameters(_ t: DomainTuning, live: Bool) -> [TypedParameter] {
            let b = t.blockIO
            func list(_ value: (DomainTuning.BlockIO.Device) -> UInt64?) -> TypedParameter.Value {
                .string(b.devices.compactMap { d in value(d).map { "\(d.path),\($0)" } }.joined(separator: ","))
            }
            return [TypedParameter("weight", .uint(b.weight ?? (live ? 100 : 0))),
                    TypedParameter("device_weight", list { $0.weight.map(UInt64.init) }),
                    TypedParameter("device_read_iops_sec", list { $0.readIOPS.map(UInt64.init) }),
                    TypedParameter("device_write_iops_sec", list { $0.writeIOPS.map(UInt64.init) }),
                    TypedParameter("device_read_bytes_sec", list(\.readBytesPerSecond)),
                    TypedParameter("device_write_bytes_sec", list(\.writeBytesPerSecond))]
        }

        static func set(_ params: [TypedParameter], _ t: inout DomainTuning) throws(ToolstackError) {
            for p in params {
                switch p.field {
                case "weight":
                    guard case .uint(let w) = p.value else { throw wrongType(p, "uint") }
                    t.blockIO.weight = w
                case let field where deviceFields.contains(field):
                    guard case .string(let text) = p.value else { throw wrongType(p, "string") }
                    let items = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                    guard !text.isEmpty, items.count % 2 == 0 else { throw .invalidArgument("unable to parse blkio device '\(text)' '\(field)'") }
                    for i in stride(from: 0, to: items.count, by: 2) {
                        let path = items[i]
                        guard let value = UInt64(items[i + 1]) else {
                            throw .invalidArgument("invalid value '\(items[i + 1])' for parameter '\(field)' of device '\(path)'")
                        }
                        var index = t.blockIO.devices.firstIndex { $0.path == path }
                        if index == nil {
                            t.blockIO.devices.append(DomainTuning.BlockIO.Device(path: path))
                            index = t.blockIO.devices.count - 1
                        }
                        guard let i = index else { continue }
                        func narrow() throws(ToolstackError) -> UInt32? {
                            guard let n = UInt32(exactly: value) else {
                                throw .invalidArgument("invalid value '\(value)' for parameter '\(field)' of device '\(path)'")
                            }
                            return n == 0 ? nil : n
                        }
                        switch field {
                        case "device_weight": t.blockIO.devices[i].weight = try narrow()
                        case "device_read_iops_sec": t.blockIO.devices[i].readIOPS = try narrow()
                        case "device_write_iops_sec": t.blockIO.devices[i].writeIOPS = try narrow()
                        case "device_read_bytes_sec": t.blockIO.devices[i].readBytesPerSecond = value == 0 ? nil : value
                        default: t.blockIO.devices[i].writeBytesPerSecond = value == 0 ? nil : value
                        }
                    }
                    // A device with nothing left set is dropped, as libvirt drops it.
                    t.blockIO.devices.removeAll { $0 == DomainTuning.BlockIO.Device(path: $0.path) }
                default: throw unknown(p)
                }
            }
        }
    }
}
