import ApusControl
import ApusSys

/// One vCPU as `virsh vcpuinfo` shows it.
public struct VCPUInfo: Sendable, Equatable {
    public let number: UInt32
    public let cpuNanoseconds: UInt64
    /// The host CPU it last ran on (-1 unknown).
    public let hostCPU: Int32
    /// Time it was runnable but waited for a host CPU (ns).
    public var waitNanoseconds: UInt64 = 0

    public init(number: UInt32, cpuNanoseconds: UInt64, hostCPU: Int32, waitNanoseconds: UInt64 = 0) {
        self.number = number; self.cpuNanoseconds = cpuNanoseconds; self.hostCPU = hostCPU; self.waitNanoseconds = waitNanoseconds
    }
}

/// Counters of one disk (`virsh domblkstat`), as apus-blkback reports them.
public typealias BlockCounters = BlockBackendControl.Stats

/// Counters of one interface (`virsh domifstat`) as the guest sees them.
public struct InterfaceCounters: Sendable, Equatable {
    public var rxBytes: Int64 = 0, rxPackets: Int64 = 0, rxErrors: Int64 = 0, rxDrops: Int64 = 0
    public var txBytes: Int64 = 0, txPackets: Int64 = 0, txErrors: Int64 = 0, txDrops: Int64 = 0
}

extension DomainManager {
    /// CPU time of the domain's hypervisor process (all threads), in ns.
    public func cpuTime(_ uuid: DomainUUID) -> UInt64 {
        guard let live = domains[uuid]?.live, live.record.hypervisorPid > 0 else { return 0 }
        return HostInfo.processCPUNanoseconds(pid: live.record.hypervisorPid)
    }

    /// Per-vCPU CPU time and placement, from apus-hv's `stats`.
    public func vcpus(_ uuid: DomainUUID) async throws(ToolstackError) -> [VCPUInfo] {
        let stats = try await hypervisor(uuid, HypervisorControl.stats)
        let pid = (try? live(uuid).1.record.hypervisorPid) ?? 0
        return stats.vcpus.map { VCPUInfo(v: $0, pid: pid) }
    }

    /// Disk counters for `device` (target name like vda, or the source
    /// path); the empty string sums every disk, as libvirt's QEMU driver does.
    public func blockStats(_ uuid: DomainUUID, device: String) async throws(ToolstackError) -> BlockCounters {
        let (_, live) = try live(uuid)
        let disks = live.definition.disks
        let chosen: [DiskDefinition]
        if device.isEmpty {
            chosen = disks
        } else if let d = disks.first(where: { $0.target == device || $0.source == device }) {
            chosen = [d]
        } else {
            throw .invalidArgument("invalid path: \(device)")
        }
        var total = BlockCounters()
        for disk in chosen {
            guard let backend = live.record.backends.first(where: { $0.kind == .disk && $0.device == disk.target }) else { continue }
            do {
                total = total + (try await ControlClient.shared.call(backend.control, BlockBackendControl.stats))
            } catch {
                throw .failed("cannot read the statistics of \(disk.target): \(error)")
            }
        }
        return total
    }

    /// Interface counters, from the domain's port on Dom0's switch; `device`
    /// is the port name (target dev) or the MAC address.
    public func interfaceStats(_ uuid: DomainUUID, device: String) async throws(ToolstackError) -> InterfaceCounters {
        let (_, live) = try live(uuid)
        let nets = live.record.backends.filter { $0.kind == .net }
        let index = Array(zip(nets, live.definition.interfaces)).firstIndex { pair in
            pair.0.device == device || pair.1.mac == device.lowercased()
        }
        guard let index else { throw .invalidArgument("'\(device)' is not a known interface") }
        let backend = nets[index]
        let c: SwitchControl.PortStats
        do {
            c = try await ControlClient.shared.call(backend.control, SwitchControl.portStats(backend.device))
        } catch {
            throw .failed("cannot read the statistics of \(device): \(error)")
        }
        return InterfaceCounters(fromSwitch: c)
    }

    /// `virsh dommemstat`: (tag, value) pairs, libvirt's VIR_DOMAIN_MEMORY_STAT_* tags.
    public func memoryStats(_ uuid: DomainUUID) throws(ToolstackError) -> [(tag: Int32, value: UInt64)] {
        let (_, live) = try live(uuid)
        // No balloon: the guest has all its memory. rss is what the domain
        // costs the host (guest pages touched plus the hypervisor).
        return [(6, live.definition.currentMemoryKiB), (7, HostInfo.residentKiB(pid: live.record.hypervisorPid)),
                (9, UInt64(Double(Clock.realtime().seconds)))]
    }

    // MARK: tuning (virDomainSetMemoryFlags, virDomainSetVcpusFlags)

    /// Impact flags of libvirt's setters.
    public struct Impact: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let live = Impact(rawValue: 1), config = Impact(rawValue: 2), maximum = Impact(rawValue: 4)
    }

    /// Resolves CURRENT (neither live nor config) against the domain's state.
    func resolve(_ impact: Impact, _ d: Domain) throws(ToolstackError) -> (live: Bool, config: Bool) {
        var live = impact.contains(.live), config = impact.contains(.config)
        if !live && !config {
            if d.live != nil { live = true } else { config = true }
        }
        if live && d.live == nil { throw .invalidState("domain is not running") }
        if config && d.config == nil { throw .invalidState("cannot change persistent config of a transient domain") }
        return (live, config)
    }

    public func setMemory(_ uuid: DomainUUID, kib: UInt64, impact: Impact) throws(ToolstackError) {
        var d = try domain(uuid)
        let (live, config) = try resolve(impact, d)
        if impact.contains(.maximum) {
            if live { throw .invalidState("cannot resize the maximum memory on an active domain") }
            guard kib >= DomainDefinition.minMemoryKiB, kib <= DomainDefinition.maxMemoryKiB else {
                throw .invalidArgument("memory must be between \(DomainDefinition.minMemoryKiB) and \(DomainDefinition.maxMemoryKiB) KiB")
            }
            d.config!.memoryKiB = kib
            d.config!.currentMemoryKiB = min(d.config!.currentMemoryKiB, kib)
        } else {
            if live {
                throw ToolstackError(.operationUnsupported, "Operation not supported: Unable to change memory of active domain without the balloon device and guest OS balloon driver")
            }
            guard kib <= d.config!.memoryKiB else { throw .invalidArgument("cannot set memory higher than max memory") }
            guard kib >= DomainDefinition.minMemoryKiB else { throw .invalidArgument("memory must be at least \(DomainDefinition.minMemoryKiB) KiB") }
            d.config!.currentMemoryKiB = kib
        }
        if config {
            try store.save(d.config!)
            domains[uuid] = d
        }
    }

    /// `setvcpus`: the online count (`current`), or with `maximum` the most
    /// the domain may have. Only the persistent definition changes: apus-hv
    /// does not hot-plug vCPUs.
    public func setVCPUs(_ uuid: DomainUUID, count: Int, impact: Impact) throws(ToolstackError) {
        var d = try domain(uuid)
        let (live, config) = try resolve(impact.subtracting(.maximum), d)
        guard count >= 1 else { throw .invalidArgument("argument unsupported: vcpu count must be at least 1") }
        guard count <= DomainDefinition.maxVCPUs else { throw .invalidArgument("requested vcpus is greater than max allowable vcpus for the domain: \(count) > \(DomainDefinition.maxVCPUs)") }
        if live {
            throw ToolstackError(.operationUnsupported, "Operation not supported: Apus does not hot-plug vCPUs; change the persistent configuration (--config) and restart")
        }
        guard config, var c = d.config else { return }
        if impact.contains(.maximum) {
            c.vcpus = count
            if let current = c.currentVCPUs { c.currentVCPUs = current < count ? current : nil }
        } else {
            guard count <= c.vcpus else {
                throw .invalidArgument("requested vcpus is greater than max allowable vcpus for the persistent domain: \(count) > \(c.vcpus)")
            }
            c.currentVCPUs = count < c.vcpus ? count : nil
        }
        try store.save(c)
        d.config = c
        domains[uuid] = d
    }

    /// vCPU counts for `virsh vcpucount` (GET_VCPUS_FLAGS): online, or with `maximum` the most.
    public func vcpuCount(_ uuid: DomainUUID, impact: Impact) throws(ToolstackError) -> Int {
        if uuid == .zero { return HostInfo.cpuCount }
        let d = try domain(uuid)
        let (live, _) = try resolve(impact.subtracting(.maximum), d)
        guard let def = live ? d.live?.definition : d.config else { throw .invalidState("domain is not running") }
        return impact.contains(.maximum) ? def.vcpus : def.onlineVCPUs
    }

    /// The name a running domain's console is known by in the IO hub.
    public func consoleName(_ uuid: DomainUUID) throws(ToolstackError) -> String {
        let (d, live) = try live(uuid)
        guard live.definition.console else { throw .failed("cannot find a character device for the console of '\(d.name)'") }
        return live.definition.name
    }
}

extension VCPUInfo {
    /// A vCPU from apus-hv's counters and its thread's /proc entries.
    /// (apus-hv names its threads by the ids its own PID namespace gives them.)
    init(v: HypervisorControl.VCPUStat, pid: Int32) {
        let host = v.threadID > 0 && pid > 0 ? HostInfo.hostThreadID(pid: pid, tid: v.threadID) : nil
        self.init(number: v.id, cpuNanoseconds: v.cpuNanoseconds, hostCPU: host.map { HostInfo.lastCPU(pid: pid, tid: $0) } ?? -1,
                  waitNanoseconds: host.map { HostInfo.threadWaitNanoseconds(pid: pid, tid: $0) } ?? 0)
    }
}
