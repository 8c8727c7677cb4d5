import DiskImage
import ApusControl
import ApusSys

/// What monitoring asks of a domain: `domstats`, `domblkinfo`,
/// `domifaddr`, `cpu-stats`.
public struct StatisticsGroups: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let state = Self(rawValue: 1), cpu = Self(rawValue: 2), balloon = Self(rawValue: 4)
    public static let vcpu = Self(rawValue: 8), interface = Self(rawValue: 16), block = Self(rawValue: 32)
    public static let all: Self = [.state, .cpu, .balloon, .vcpu, .interface, .block]
}

/// A disk's sizes as `virsh domblkinfo` shows them.
public struct BlockInfo: Sendable, Equatable {
    /// Bytes the image uses on the host (a block device: its size).
    public var allocation: UInt64
    /// Bytes the guest sees.
    public var capacity: UInt64
    /// Bytes of the file or device holding it.
    public var physical: UInt64
}

/// A domain's CPU time: all of it, and its user and system parts (ns).
public struct CPUTimes: Sendable, Equatable {
    public var total: UInt64, user: UInt64, system: UInt64
}

/// One domain's statistics, each group present when asked for and available.
public struct DomainStatistics: Sendable {
    public struct Disk: Sendable {
        public var name: String
        public var path: String
        public var counters: BlockCounters?
        public var info: BlockInfo?
    }
    public struct Interface: Sendable {
        public var name: String
        public var counters: InterfaceCounters?
    }
    public struct Balloon: Sendable, Equatable {
        public var currentKiB: UInt64, maximumKiB: UInt64
        public var rssKiB: UInt64?
    }

    public var info: DomainInfo
    public var cpu: CPUTimes?
    public var balloon: Balloon?
    /// Online and maximum vCPU counts, and each vCPU (running domains).
    public var vcpuCurrent: Int?
    public var vcpuMaximum: Int?
    public var vcpus: [VCPUInfo]?
    public var interfaces: [Interface]?
    public var disks: [Disk]?
}

/// An address of a domain's interface (`virsh domifaddr`).
public struct InterfaceAddress: Sendable, Equatable {
    public var interface: String
    public var mac: String
    public var address: String
    public var prefix: UInt32
    /// VIR_IP_ADDR_TYPE_IPV4 (0) or IPV6 (1).
    public var isIPv6: Bool
}

extension DomainManager {
    // MARK: statistics

    /// Statistics of `uuids` (or of every domain `filter` admits), with the
    /// counters of every domain's processes gathered at once: a slow
    /// backend delays only its own domain's numbers.
    public func statistics(of uuids: [DomainUUID]?, filter: ListFilter, groups: StatisticsGroups) async throws(ToolstackError) -> [DomainStatistics] {
        var chosen: [(DomainInfo, DomainDefinition?, RuntimeRecord?, ProcessSampler?)] = []
        func sampler(_ record: RuntimeRecord?) -> ProcessSampler? {
            guard let pid = record?.hypervisorPid, pid > 0 else { return nil }
            if let s = samplers[pid] { return s }
            let s = ProcessSampler(pid: pid)
            samplers[pid] = s
            return s
        }
        if let uuids {
            for u in uuids {
                let info = try lookup(uuid: u)
                let d = domains[u]
                chosen.append((info, d?.live?.definition ?? d?.config, d?.live?.record, sampler(d?.live?.record)))
            }
        } else {
            for info in list(filter) {
                let d = domains[info.uuid]
                chosen.append((info, d?.live?.definition ?? d?.config, d?.live?.record, sampler(d?.live?.record)))
            }
        }
        return await withTaskGroup(of: (Int, DomainStatistics).self) { group in
            for (i, entry) in chosen.enumerated() {
                // On the global pool: the /proc reads of many domains run on every CPU.
                group.addTask(executorPreference: globalConcurrentExecutor) {
                    (i, await Self.gather(entry.0, definition: entry.1, record: entry.2, sampler: entry.3, groups: groups))
                }
            }
            var out = [DomainStatistics?](repeating: nil, count: chosen.count)
            for await (i, s) in group { out[i] = s }
            return out.compactMap { $0 }
        }
    }

    /// One domain's statistics (outside the actor: it only waits on its processes).
    static func gather(_ info: DomainInfo, definition: DomainDefinition?, record: RuntimeRecord?, sampler: ProcessSampler?,
                       groups: StatisticsGroups) async -> DomainStatistics {
        var s = DomainStatistics(info: info)
        guard let def = definition, info.uuid != .zero else { return s }
        let running = record.flatMap { $0.hypervisorPid > 0 ? $0 : nil }
        if groups.contains(.balloon) {
            // No balloon: the guest has its memory, the host pays rss for it (filled in below).
            s.balloon = .init(currentKiB: def.currentMemoryKiB, maximumKiB: def.memoryKiB, rssKiB: nil)
        }
        if groups.contains(.vcpu) {
            s.vcpuCurrent = def.onlineVCPUs
            s.vcpuMaximum = def.vcpus
        }
        if groups.contains(.block) {
            s.disks = def.disks.map { .init(name: $0.target, path: $0.source, counters: nil, info: nil) }
        }
        if groups.contains(.interface) {
            s.interfaces = def.interfaces.map { .init(name: $0.targetDevice ?? "", counters: nil) }
        }
        guard let record = running else {
            if groups.contains(.block) {
                for (i, disk) in def.disks.enumerated() { s.disks?[i].info = blockInfo(disk, capacity: nil) }
            }
            return s
        }
        let pid = record.hypervisorPid
        // CPU, vCPU and memory figures come from /proc: no call to apus-hv.
        if let sample = groups.isDisjoint(with: [.cpu, .vcpu, .balloon]) ? nil : (sampler?.sample() ?? HostInfo.sample(pid: pid)) {
            if groups.contains(.cpu) {
                s.cpu = CPUTimes(total: sample.cpuNanoseconds, user: sample.userNanoseconds, system: sample.systemNanoseconds)
            }
            if groups.contains(.balloon) { s.balloon?.rssKiB = sample.residentKiB }
            if groups.contains(.vcpu) {
                s.vcpus = sample.vcpus.keys.sorted().map { n in
                    VCPUInfo(number: n, cpuNanoseconds: sample.vcpus[n]?.cpu ?? 0, hostCPU: -1, waitNanoseconds: sample.vcpus[n]?.wait ?? 0)
                }
            }
        }
        if groups.contains(.block) {
            for (i, disk) in def.disks.enumerated() {
                guard let b = record.backends.first(where: { $0.kind == .disk && $0.device == disk.target }) else { continue }
                async let counters = try? await ControlClient.shared.call(b.control, BlockBackendControl.stats)
                async let served = try? await ControlClient.shared.call(b.control, BlockBackendControl.info)
                s.disks?[i].counters = await counters
                s.disks?[i].info = blockInfo(disk, capacity: await served?.capacity)
            }
        }
        if groups.contains(.interface) {
            let nets = record.backends.filter { $0.kind == .net }
            for (i, b) in nets.enumerated() where i < (s.interfaces?.count ?? 0) {
                s.interfaces?[i].name = b.device
                if let c = try? await ControlClient.shared.call(b.control, SwitchControl.portStats(b.device)) {
                    s.interfaces?[i].counters = InterfaceCounters(fromSwitch: c)
                }
            }
        }
        return s
    }

    // MARK: disks

    /// `virsh domblkinfo DOMAIN DISK`: `disk` is a target (vda) or a source path.
    public func blockInfo(_ uuid: DomainUUID, disk name: String) async throws(ToolstackError) -> BlockInfo {
        let d = try domain(uuid)
        guard let unresolved = d.live?.definition ?? d.config else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        let def = d.live != nil ? unresolved : try await resolveVolumes(unresolved)
        guard let disk = def.disks.first(where: { $0.target == name || $0.source == name }) else {
            throw .invalidArgument("invalid path \(name) not assigned to domain")
        }
        var capacity: UInt64?
        if let record = d.live?.record, let b = record.backends.first(where: { $0.kind == .disk && $0.device == disk.target }) {
            capacity = (try? await ControlClient.shared.call(b.control, BlockBackendControl.info))?.capacity
        }
        guard let info = Self.blockInfo(disk, capacity: capacity) else {
            throw .failed("cannot read the size of '\(disk.source)'")
        }
        return info
    }

    /// A disk's sizes from its image (and, when running, the capacity its backend serves).
    static func blockInfo(_ disk: DiskDefinition, capacity: UInt64?) -> BlockInfo? {
        guard let fd = try? FileDescriptor.open(disk.source, .readOnly) else { return nil }
        defer { fd.close() }
        guard let u = try? fd.usage() else { return nil }
        let size = UInt64(max(0, u.size))
        // A qcow2 image's capacity is its virtual size, from its header.
        let virtual = disk.format == .raw ? size : (try? DiskImages.virtualSize(disk.source, format: disk.format)) ?? size
        return BlockInfo(allocation: UInt64(max(0, u.allocated)), capacity: capacity ?? virtual, physical: size)
    }

    // MARK: CPU

    /// The domain's CPU time (all apus-hv threads) and its user/system split.
    public func cpuTimes(_ uuid: DomainUUID) throws(ToolstackError) -> CPUTimes {
        let (_, live) = try live(uuid)
        let pid = live.record.hypervisorPid
        let split = HostInfo.processCPUSplit(pid: pid)
        return CPUTimes(total: HostInfo.processCPUNanoseconds(pid: pid), user: split.user, system: split.system)
    }

    // MARK: addresses

    /// `virsh domifaddr`: the addresses the host knows for the domain's
    /// MACs. With `arp`, from the host's neighbour table; else from the DHCP
    /// leases of the networks its interfaces are on (dnsmasq's leases file).
    public func interfaceAddresses(_ uuid: DomainUUID, arp: Bool) async throws(ToolstackError) -> [InterfaceAddress] {
        let (_, live) = try live(uuid)
        let names = live.record.backends.filter { $0.kind == .net }.map(\.device)
        let table = arp ? HostInfo.neighbours() : []
        var out: [InterfaceAddress] = []
        for (i, iface) in live.definition.interfaces.enumerated() {
            let name = i < names.count ? names[i] : (iface.targetDevice ?? "")
            if arp {
                for n in table where n.mac == iface.mac {
                    out.append(InterfaceAddress(interface: name, mac: iface.mac, address: n.address, prefix: 0, isIPv6: n.address.contains(":")))
                }
                continue
            }
            guard let networks else { continue }
            let network = iface.type == .network ? iface.source : await networks.network(bridge: iface.source)
            guard let network else { continue }
            for l in await networks.leases(forMAC: iface.mac, network: network) {
                out.append(InterfaceAddress(interface: name, mac: iface.mac, address: l.ip.description, prefix: UInt32(l.prefix), isIPv6: false))
            }
        }
        return out
    }

    // MARK: definitions

    /// Whether the persistent definition changed since the domain started
    /// (it takes effect at the next start).
    public func isUpdated(_ uuid: DomainUUID) throws(ToolstackError) -> Bool {
        let d = try domain(uuid)
        guard let live = d.live, let config = d.config else { return false }
        return live.definition != config
    }
}

extension InterfaceCounters {
    /// The guest's view of a switch port: what the switch transmits, the guest receives.
    init(fromSwitch c: SwitchControl.PortStats) {
        func n(_ v: UInt64) -> Int64 { Int64(clamping: v) }
        self.init(rxBytes: n(c.txBytes), rxPackets: n(c.txPackets), rxErrors: n(c.txErrors), rxDrops: n(c.txDrops),
                  txBytes: n(c.rxBytes), txPackets: n(c.rxPackets), txErrors: n(c.rxErrors), txDrops: n(c.rxDrops))
    }
}
