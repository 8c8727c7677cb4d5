import ApusControl
import ApusSys

/// A domain as clients see it at one instant.
public struct DomainInfo: Sendable, Equatable {
    public let name: String
    public let uuid: DomainUUID
    /// Run-time id; -1 when inactive; 0 for Domain-0.
    public let id: Int32
    public let state: DomainState
    public let reason: Int32
    public let persistent: Bool
    public let autostart: Bool
    public let maxMemoryKiB: UInt64
    public let memoryKiB: UInt64
    /// vCPUs online (what the guest runs with).
    public let vcpus: Int
    /// The most it may have.
    public let maxVCPUs: Int
    public let title: String?
    public let description: String?
    /// A `virsh managedsave` image waits for the next start.
    public var hasManagedSave = false
    public var isActive: Bool { id >= 0 }
}

/// Filters of virConnectListAllDomains (VIR_CONNECT_LIST_DOMAINS_*).
public struct ListFilter: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let active = ListFilter(rawValue: 1), inactive = ListFilter(rawValue: 2)
    public static let persistent = ListFilter(rawValue: 4), transient = ListFilter(rawValue: 8)
    public static let running = ListFilter(rawValue: 16), paused = ListFilter(rawValue: 32)
    public static let shutoff = ListFilter(rawValue: 64), other = ListFilter(rawValue: 128)
    public static let managedSave = ListFilter(rawValue: 256), noManagedSave = ListFilter(rawValue: 512)
    public static let autostart = ListFilter(rawValue: 1024), noAutostart = ListFilter(rawValue: 2048)
    public static let hasSnapshot = ListFilter(rawValue: 4096), noSnapshot = ListFilter(rawValue: 8192)
    public static let hasCheckpoint = ListFilter(rawValue: 16384), noCheckpoint = ListFilter(rawValue: 32768)

    /// Whether `d` passes: groups are AND-ed, bits within a group OR-ed.
    func admits(_ d: DomainInfo) -> Bool {
        guard admits(.active, .inactive, d.isActive), admits(.persistent, .transient, d.persistent),
              admits(.autostart, .noAutostart, d.autostart), admits(.managedSave, .noManagedSave, d.hasManagedSave),
              admits(.hasSnapshot, .noSnapshot, false), admits(.hasCheckpoint, .noCheckpoint, false) else { return false }
        let states = intersection([.running, .paused, .shutoff, .other])
        if !states.isEmpty {
            switch d.state {
            case .running: return states.contains(.running)
            case .paused: return states.contains(.paused)
            case .shutoff: return states.contains(.shutoff)
            default: return states.contains(.other)
            }
        }
        return true
    }
}

/// apusd's domains: definitions, the lifecycle state machine, the processes
/// of running domains (one apus-hv each, plus its Dom0 backends), events.
public actor DomainManager {
    public nonisolated let paths: ApusPaths
    public nonisolated let events: EventBus
    let store: DomainStore
    let hub: IOHub

    /// One domain: its persistent config (if defined) and its live instance (if running).
    struct Domain {
        var config: DomainDefinition?
        var autostart = false
        var live: Live?
        var state = DomainState.shutoff
        var reason = StateReason.shutoffUnknown
        var name: String { live?.definition.name ?? config?.name ?? "" }
        var uuid: DomainUUID { live?.definition.uuid ?? config?.uuid ?? .zero }
    }

    /// A running domain.
    struct Live {
        var definition: DomainDefinition
        var id: Int32
        var record: RuntimeRecord
        var shutdownRequested = false
        var rebootRequested = false
        var resetRequested = false
        var destroying = false
        /// Its processes are being stopped: a backend that exits now is not restarted.
        var stopping = false
        /// Disks whose backend apusd gave up restarting (`virsh domblkerror`).
        var failedDisks: Set<String> = []
        /// Port names taken while the domain starts (its record has none yet).
        var reservedPorts: [String] = []
    }

    var domains: [DomainUUID: Domain] = [:]
    var nextID: Int32 = 1
    /// Problems found loading state (reported once by apusd).
    public private(set) var warnings: [String] = []
    /// Where problems found while running go (apusd's log).
    public var report: @Sendable (String) -> Void = { _ in }
    public func setReport(_ r: @escaping @Sendable (String) -> Void) { report = r }
    /// Open /proc readers of running domains' apus-hv, by pid (statistics).
    var samplers: [Int32: ProcessSampler] = [:]
    /// Dom0's switches (apus-netback) this apusd watches, by bridge.
    var switchPids: [String: Int32] = [:]
    /// When each domain's apus-hv was last restarted by its on_crash action
    /// (at most ``crashRestartLimit`` a minute: a hypervisor that dies at
    /// once is not restarted forever).
    var crashRestarts: [DomainUUID: [ContinuousClock.Instant]] = [:]
    /// When each running domain's disk backend ("UUID/vda") was last restarted.
    var backendRestarts: [String: [ContinuousClock.Instant]] = [:]
    static let crashRestartLimit = 3
    /// Bridges whose switch this apusd is starting.
    var switchesStarting: Set<String> = []
    /// The virtual networks `<interface type='network'>` names (set by apusd).
    var networks: VirtualNetworks?

    /// Saves and restores in progress (`virsh domjobinfo`), and the last
    /// finished one of each domain (`domjobinfo --completed`).
    var runningJobs: [DomainUUID: DomainJob] = [:]
    var completedJobs: [DomainUUID: DomainJob] = [:]

    /// The storage pools volume disks resolve through (set by apusd).
    var storage: StoragePools?

    /// apusd.conf's limits on what domains may use.
    public nonisolated let limits: DaemonLimits

    public init(paths: ApusPaths, hub: IOHub, events: EventBus = EventBus(), limits: DaemonLimits = DaemonLimits()) {
        self.paths = paths
        self.limits = limits
        self.hub = hub
        self.events = events
        self.store = DomainStore(paths: paths)
    }

    // MARK: loading, restart safety, autostart

    /// Loads definitions and finds running domains again from /run/apus.
    public func load() async {
        let (defs, problems) = store.loadAll()
        warnings += problems
        for d in defs {
            domains[d.uuid] = Domain(config: d, autostart: store.isAutostart(d.name))
        }
        if let text = ProcessControl.readText(paths.runtime + "/next-id"), let n = Int32(text.trimmingWhitespace) {
            nextID = max(1, n)
        }
        for record in RuntimeRecord.loadAll(paths) {
            await adopt(record)
        }
        adoptSwitches()
    }

    /// A domain a previous apusd started: still running, or ended meanwhile.
    func adopt(_ record: RuntimeRecord) async {
        guard let uuid = DomainUUID(record.uuid), let parsed = try? DomainXML.parse(record.xml) else {
            warnings.append("ignoring unreadable runtime record for '\(record.name)'")
            return
        }
        // Volume disks' paths are not in the live XML: found again through their pools.
        let definition = (try? await resolveVolumes(parsed)) ?? parsed
        var domain = domains[uuid] ?? Domain(config: nil)
        let alive = ProcessControl.isAlive(record.hypervisorPid)
            && ProcessControl.commandLine(record.hypervisorPid).first?.hasSuffix("apus-hv") == true
        nextID = max(nextID, Int32(record.id) + 1)
        guard alive else {
            // It ended while apusd was away: tidy up; it stays defined if persistent.
            await Supervisor.stop(record, paths: paths)
            if domain.config != nil {
                domain.state = .shutoff
                domain.reason = StateReason.shutoffDaemon
                domains[uuid] = domain
            }
            return
        }
        domain.live = Live(definition: definition, id: Int32(record.id), record: record)
        domain.state = record.paused ? .paused : .running
        domain.reason = record.paused ? StateReason.pausedUser : StateReason.runningBooted
        domains[uuid] = domain
        domain.live?.record.consolePTY = hub.attachConsole(name: record.name, socket: record.console, log: paths.consoleLog(record.name))
        domain.live?.record.save(paths)
        domains[uuid] = domain
        watch(uuid, pid: record.hypervisorPid)
        watchBackends(uuid, record)
        await reconcileRunState(uuid, record)
    }

    /// apus-hv knows whether its vCPUs run: a save, snapshot or pause this
    /// apusd's predecessor did not see through (it exited meanwhile) left
    /// the record behind. A save's or snapshot's partial machine state is
    /// removed; the domain is left paused for the user to resume (which
    /// also starts rings a snapshot held) or save again.
    func reconcileRunState(_ uuid: DomainUUID, _ record: RuntimeRecord) async {
        FileSystem.remove(paths.runtimeDirectory(record.name) + "/save.state")
        FileSystem.remove(paths.runtimeDirectory(record.name) + "/snapshot.state")
        guard let status = try? await ControlClient.shared.call(record.control, HypervisorControl.status, timeoutMilliseconds: 2000),
              var d = domains[uuid], var live = d.live, live.record.hypervisorPid == record.hypervisorPid else { return }
        let paused = status.state == .paused
        guard paused != live.record.paused else { return }
        live.record.paused = paused
        live.record.save(paths)
        d.live = live
        d.state = paused ? .paused : .running
        d.reason = paused ? StateReason.pausedUser : StateReason.runningUnpaused
        domains[uuid] = d
    }

    /// Starts every persistent domain marked autostart that is not running.
    public func autostartAll() async {
        for (uuid, d) in domains where d.autostart && d.live == nil && d.config != nil {
            do {
                _ = try await start(uuid, paused: false)
            } catch {
                warnings.append("autostart of '\(d.name)' failed: \(error.message)")
            }
        }
    }

    // MARK: queries

    func info(_ d: Domain) -> DomainInfo {
        let def = d.live?.definition ?? d.config!
        var info = DomainInfo(name: def.name, uuid: def.uuid, id: d.live?.id ?? -1, state: d.state, reason: d.reason,
                              persistent: d.config != nil, autostart: d.autostart, maxMemoryKiB: def.memoryKiB,
                              memoryKiB: def.currentMemoryKiB, vcpus: def.onlineVCPUs, maxVCPUs: def.vcpus,
                              title: def.title, description: def.description)
        info.hasManagedSave = d.config != nil && FileSystem.exists(paths.managedSaveImage(def.name))
        return info
    }

    /// Domain-0, the service domain, listed as Xen's toolstack lists dom0.
    public nonisolated static var domain0: DomainInfo {
        DomainInfo(name: "Domain-0", uuid: .zero, id: 0, state: .running, reason: StateReason.runningBooted, persistent: true,
                   autostart: false, maxMemoryKiB: HostInfo.memoryKiB, memoryKiB: HostInfo.memoryKiB, vcpus: HostInfo.cpuCount,
                   maxVCPUs: HostInfo.cpuCount,
                   title: "Dom0: the Apus service domain", description: nil)
    }

    public func list(_ filter: ListFilter) -> [DomainInfo] {
        var out = domains.values.filter { $0.config != nil || $0.live != nil }.map(info)
        out.append(Self.domain0)
        return out.filter { filter.admits($0) }
    }

    public func count(active: Bool) -> Int {
        domains.values.filter { ($0.live != nil) == active && ($0.config != nil || $0.live != nil) }.count + (active ? 1 : 0)
    }

    public func lookup(name: String) throws(ToolstackError) -> DomainInfo {
        if name == "Domain-0" { return Self.domain0 }
        guard let d = domains.values.first(where: { $0.name == name }) else { throw .noDomain("no domain with matching name '\(name)'") }
        return info(d)
    }

    public func lookup(uuid: DomainUUID) throws(ToolstackError) -> DomainInfo {
        if uuid == .zero { return Self.domain0 }
        guard let d = domains[uuid] else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        return info(d)
    }

    public func lookup(id: Int32) throws(ToolstackError) -> DomainInfo {
        if id == 0 { return Self.domain0 }
        guard let d = domains.values.first(where: { $0.live?.id == id }) else { throw .noDomain("no domain with matching id \(id)") }
        return info(d)
    }

    func domain(_ uuid: DomainUUID) throws(ToolstackError) -> Domain {
        guard uuid != .zero else { throw .invalidState("Domain-0 is the service domain and is managed by the host") }
        guard let d = domains[uuid] else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        return d
    }

    /// The domain XML: the running definition, or with `inactive` the persistent one.
    public func xml(_ uuid: DomainUUID, inactive: Bool) throws(ToolstackError) -> String {
        if uuid == .zero {
            var d0 = DomainDefinition(name: "Domain-0", uuid: .zero, memoryKiB: HostInfo.memoryKiB, vcpus: HostInfo.cpuCount)
            d0.console = false
            return DomainXML.format(d0, id: 0)
        }
        let d = try domain(uuid)
        if inactive, let config = d.config { return DomainXML.format(config) }
        if let live = d.live { return DomainXML.format(live.definition, id: Int(live.id), live: live.record.liveDetails) }
        return DomainXML.format(d.config!)
    }

    /// The definition a running domain runs with (for stats paths).
    public func runtime(_ uuid: DomainUUID) throws(ToolstackError) -> (DomainDefinition, RuntimeRecord) {
        let d = try domain(uuid)
        guard let live = d.live else { throw .invalidState("domain is not running") }
        return (live.definition, live.record)
    }

    // MARK: definitions

    public func define(xml: String, strict: Bool) throws(ToolstackError) -> DomainInfo {
        let def = try DomainXML.parse(xml, strict: strict)
        if let other = domains.values.first(where: { $0.name == def.name }), other.uuid != def.uuid {
            throw .failed("domain '\(def.name)' already exists with uuid \(other.uuid)")
        }
        if let same = domains[def.uuid], same.name != def.name {
            throw .failed("domain '\(same.name)' is already defined with uuid \(def.uuid)")
        }
        var d = domains[def.uuid] ?? Domain(config: nil)
        let existed = d.config != nil || d.live != nil
        try store.save(def)
        d.config = def
        if d.live == nil { d.state = .shutoff; d.reason = StateReason.shutoffUnknown }
        domains[def.uuid] = d
        emit(d, .lifecycle(event: LifecycleEvent.defined, detail: existed ? 1 : 0))
        return info(d)
    }

    /// `virsh undefine`; a managed-save image is removed with it only when
    /// asked (`--managed-save`), as libvirt refuses otherwise.
    /// Snapshot metadata likewise goes only with `removeSnapshots` (`--snapshots-metadata`).
    public func undefine(_ uuid: DomainUUID, removeManagedSave: Bool = false, removeSnapshots: Bool = false) throws(ToolstackError) {
        var d = try domain(uuid)
        guard let config = d.config else { throw .invalidState("cannot undefine transient domain") }
        let snapshotCount = snapshots(of: config.name).list.count
        if snapshotCount > 0 {
            guard removeSnapshots else { throw .invalidState("cannot delete inactive domain with \(snapshotCount) snapshots") }
        }
        let image = paths.managedSaveImage(config.name)
        if FileSystem.exists(image) {
            guard removeManagedSave else { throw .invalidState("Refusing to undefine while domain managed save image exists") }
            FileSystem.remove(image)
        }
        store.delete(config.name)
        if removeSnapshots { removeSnapshotMetadata(config.name) }
        emit(d, .lifecycle(event: LifecycleEvent.undefined, detail: 0))
        d.config = nil
        d.autostart = false
        if d.live == nil {
            domains.removeValue(forKey: uuid)
        } else {
            // A running domain becomes transient: it vanishes when it stops.
            d.live?.record.persistent = false
            d.live?.record.save(paths)
            domains[uuid] = d
        }
    }

    public func setAutostart(_ uuid: DomainUUID, _ on: Bool) throws(ToolstackError) {
        var d = try domain(uuid)
        guard let config = d.config else { throw .invalidState("cannot set autostart for transient domain") }
        guard store.setAutostart(config.name, on) else { throw .failed("cannot write the autostart marker of '\(config.name)'") }
        d.autostart = on
        domains[uuid] = d
    }

    public func isAutostart(_ uuid: DomainUUID) throws(ToolstackError) -> Bool {
        if uuid == .zero { return false }
        return try domain(uuid).autostart
    }

    /// What `virsh desc`, `virsh metadata` and SET_METADATA change.
    public enum MetadataChange: Sendable {
        case title(String?)
        case description(String?)
        /// A custom element in namespace `uri`, written with prefix `key`; nil removes it.
        case element(uri: String, key: String, xml: String?)
    }

    /// Changes metadata in the running definition and/or the persistent one
    /// (CURRENT, LIVE, CONFIG as libvirt's flags say).
    public func updateMetadata(_ uuid: DomainUUID, _ change: MetadataChange, impact: Impact) throws(ToolstackError) {
        var d = try domain(uuid)
        let (live, config) = try resolve(impact, d)
        func apply(_ def: inout DomainDefinition) throws(ToolstackError) {
            switch change {
            case .title(let t): def.title = t
            case .description(let t): def.description = t
            case .element(let uri, let key, let xml):
                def.metadata.removeAll { DomainXML.metadataNamespace($0) == uri }
                if let xml { def.metadata.append(try DomainXML.metadataElement(xml, uri: uri, prefix: key)) }
            }
        }
        if config, var c = d.config {
            try apply(&c)
            try store.save(c)
            d.config = c
        }
        if live, var def = d.live?.definition {
            try apply(&def)
            d.live?.definition = def
            d.live?.record.xml = DomainXML.format(def)
            d.live?.record.save(paths)
        }
        domains[uuid] = d
    }

    /// The definition `impact` names (live or persistent), for GET_METADATA.
    public func definition(_ uuid: DomainUUID, impact: Impact) throws(ToolstackError) -> DomainDefinition {
        let d = try domain(uuid)
        let (live, _) = try resolve(impact, d)
        guard let def = live ? d.live?.definition : d.config else { throw .invalidState("domain is not running") }
        return def
    }

    // MARK: lifecycle

    /// `virsh create`: a transient domain, or the inactive persistent domain with the same name and uuid.
    public func create(xml: String, paused: Bool, strict: Bool) async throws(ToolstackError) -> DomainInfo {
        let def = try DomainXML.parse(xml, strict: strict)
        if let existing = domains.values.first(where: { $0.name == def.name }) {
            guard existing.uuid == def.uuid else { throw .failed("domain '\(def.name)' already exists with uuid \(existing.uuid)") }
            guard existing.live == nil else { throw .invalidState("domain '\(def.name)' is already active") }
            return try await start(def.uuid, paused: paused, definition: def)
        }
        if let same = domains[def.uuid] { throw .failed("domain '\(same.name)' is already defined with uuid \(def.uuid)") }
        domains[def.uuid] = Domain(config: nil)
        do {
            return try await start(def.uuid, paused: paused, definition: def)
        } catch {
            if domains[def.uuid]?.live == nil && domains[def.uuid]?.config == nil { domains.removeValue(forKey: def.uuid) }
            throw error
        }
    }

    /// `virsh start`: from the domain's managed-save image if it has one
    /// (unless `forceBoot`, which discards it), else a boot. `restoreFrom`:
    /// a save image to go on from (`virsh restore`), with `definition` its XML.
    /// `fromSnapshot`: a snapshot's revert starts it (states and events say so).
    public func start(_ uuid: DomainUUID, paused: Bool, definition: DomainDefinition? = nil, forceBoot: Bool = false,
                      restoreFrom: String? = nil, fromSnapshot: Bool = false) async throws(ToolstackError) -> DomainInfo {
        var d = try domain(uuid)
        guard d.live == nil else { throw .invalidState("domain is already running") }
        var definition = definition, restoreFrom = restoreFrom, managedImage: String? = nil, paused = paused
        if restoreFrom == nil, definition == nil, let config = d.config, FileSystem.exists(paths.managedSaveImage(config.name)) {
            managedImage = paths.managedSaveImage(config.name)
            if !forceBoot {
                let image = try await SaveImage.read(paths.managedSaveImage(config.name))
                definition = try DomainXML.parse(image.xml, strict: false)
                restoreFrom = managedImage
                paused = paused || image.paused
            }
            d = try domain(uuid)
            guard d.live == nil else { throw .invalidState("domain is already running") }
        }
        guard let unresolved = definition ?? d.config else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        let def = try await resolveVolumes(unresolved)
        d = try domain(uuid)
        guard d.live == nil else { throw .invalidState("domain is already running") }
        try checkLimits(def)
        let user = try allocateUser()
        let id = allocateID()
        let names = try interfaceNames(for: def)
        // Mark it starting so concurrent calls see it as active (and its port names and uid as taken).
        var placeholder = RuntimeRecord(name: def.name, uuid: def.uuid.description, id: Int(id), hypervisorPid: 0,
                                        control: "", console: "", statusFile: "", backends: [], paused: paused,
                                        persistent: d.config != nil, xml: DomainXML.format(def), startedAt: Double(Clock.realtime().seconds))
        placeholder.user = user
        d.live = Live(definition: def, id: id, record: placeholder, reservedPorts: names)
        d.state = paused ? .paused : .running
        d.reason = paused ? (fromSnapshot ? StateReason.pausedFromSnapshot : restoreFrom != nil ? StateReason.pausedSave : StateReason.pausedStartingUp)
            : (fromSnapshot ? StateReason.runningFromSnapshot : restoreFrom != nil ? StateReason.runningRestored : StateReason.runningBooted)
        domains[uuid] = d
        let record: RuntimeRecord
        do {
            var ports: [(name: String, control: String)] = []
            for (iface, name) in zip(def.interfaces, names) {
                let spec = try await switchFor(iface, port: name)
                try await ensureSwitch(spec)
                ports.append((name, spec.control))
            }
            record = try await Supervisor.launch(def, id: id, paused: paused, persistent: d.config != nil, ports: ports,
                                                 paths: paths, limits: limits, allowed: await allowedPaths(), user: user,
                                                 cgroups: cgroupPlacement, restoreFrom: restoreFrom)
        } catch {
            if var again = domains[uuid] {
                again.live = nil
                again.state = .shutoff
                again.reason = StateReason.shutoffFailed
                if again.config == nil { domains.removeValue(forKey: uuid) } else { domains[uuid] = again }
            }
            throw error
        }
        guard var now = domains[uuid], now.live != nil else {
            // Destroyed while starting.
            await Supervisor.stop(record, paths: paths)
            throw .failed("domain was destroyed while starting")
        }
        var started = record
        started.consolePTY = hub.attachConsole(name: def.name, socket: record.console, log: paths.consoleLog(def.name))
        now.live?.record = started
        domains[uuid] = now
        started.save(paths)
        watch(uuid, pid: record.hypervisorPid)
        watchBackends(uuid, started)
        let restored = restoreFrom != nil
        emit(now, .lifecycle(event: LifecycleEvent.started,
                             detail: fromSnapshot ? LifecycleEvent.startedFromSnapshot : restored ? LifecycleEvent.startedRestored : 0))
        if paused {
            emit(now, .lifecycle(event: LifecycleEvent.suspended,
                                 detail: fromSnapshot ? LifecycleEvent.suspendedFromSnapshot : restored ? LifecycleEvent.suspendedRestored : 0))
        }
        // A managed-save image is used once (or discarded by a forced boot).
        if let managedImage { FileSystem.remove(managedImage) }
        return info(now)
    }

    /// The port name of each of `def`'s interfaces on Dom0's switch: the
    /// owner's `<target dev>`, else the lowest free vnetN, as libvirt names them.
    func interfaceNames(for def: DomainDefinition) throws(ToolstackError) -> [String] {
        var taken = Set(domains.values.compactMap(\.live).flatMap { live in
            live.record.backends.filter { $0.kind == .net }.map(\.device) + live.reservedPorts
        })
        taken.insert("uplink")
        var names: [String] = []
        var next = 0
        for iface in def.interfaces {
            if let chosen = iface.targetDevice {
                guard !taken.contains(chosen) else { throw .failed("interface name '\(chosen)' is already in use on Dom0's switch") }
                names.append(chosen)
                taken.insert(chosen)
                continue
            }
            while taken.contains("vnet\(next)") { next += 1 }
            names.append("vnet\(next)")
            taken.insert("vnet\(next)")
        }
        return names
    }

    /// apusd.conf's max_running_domains, max_domain_memory_mib, max_domain_vcpus.
    func checkLimits(_ def: DomainDefinition) throws(ToolstackError) {
        let running = domains.values.filter { $0.live != nil }.count
        guard running < limits.maxRunningDomains else {
            throw .failed("\(running) domains are running, the most apusd.conf allows (max_running_domains = \(limits.maxRunningDomains))")
        }
        guard def.memoryKiB <= UInt64(limits.maxDomainMemoryMiB) << 10 else {
            throw .unsupported("memory \(def.memoryKiB >> 10) MiB is more than apusd.conf allows a domain (max_domain_memory_mib = \(limits.maxDomainMemoryMiB))")
        }
        guard def.vcpus <= limits.maxDomainVCPUs else {
            throw .unsupported("\(def.vcpus) vCPUs are more than apusd.conf allows a domain (max_domain_vcpus = \(limits.maxDomainVCPUs))")
        }
    }

    /// Whether domains' processes (and the switches) are jailed: apusd.conf
    /// asks for it (the default), and apusd is root, so it has a uid to give.
    var confinesDomains: Bool { limits.confinement.enabled && ProcessControl.isRoot }

    /// The uid (and gid) a starting domain's processes run as: the lowest
    /// in apusd.conf's domain_uid_range that no other running domain holds,
    /// so no two domains can signal, trace or read each other's processes
    /// and files. nil when confinement is off, or apusd is not root (it
    /// cannot give a uid away then).
    func allocateUser() throws(ToolstackError) -> UInt32? {
        guard confinesDomains else { return nil }
        let taken = Set(domains.values.compactMap { $0.live?.record.user })
        guard let free = limits.confinement.users.first(where: { !taken.contains($0) }) else {
            throw .failed("every uid of domain_uid_range (\(limits.confinement.users.lowerBound)-\(limits.confinement.users.upperBound)) in apusd.conf is taken by a running domain")
        }
        return free
    }

    func allocateID() -> Int32 {
        let id = nextID
        nextID += 1
        try? ProcessControl.writeFileAtomically(paths.runtime + "/next-id", "\(nextID)\n")
        return id
    }

    func live(_ uuid: DomainUUID) throws(ToolstackError) -> (Domain, Live) {
        let d = try domain(uuid)
        guard let live = d.live, live.record.hypervisorPid > 0 else { throw .invalidState("domain is not running") }
        return (d, live)
    }

    /// Sends `call` to the domain's apus-hv. A domain between an apus-hv
    /// exit and its restart (reboot, reset, on_reboot) has no hypervisor for
    /// a moment: the call waits for apusd to finish that transition and goes
    /// to the new apus-hv, so a running domain is never unreachable.
    func hypervisor<Reply: ControlReply>(_ uuid: DomainUUID, _ call: ControlCall<Reply>,
                                         timeoutMilliseconds: UInt64 = ControlClient.defaultTimeoutMilliseconds) async throws(ToolstackError) -> Reply {
        let clock = ContinuousClock()
        let deadline = clock.now + Supervisor.startTimeout
        while true {
            let (_, live) = try self.live(uuid)
            do {
                return try await ControlClient.shared.call(live.record.control, call, timeoutMilliseconds: timeoutMilliseconds)
            } catch {
                // An apus-hv only lacks its socket while it exits or starts:
                // try again until it answers, is replaced, or the domain stops.
                if case .unreachable = error, clock.now < deadline, domains[uuid]?.live?.record.hypervisorPid == live.record.hypervisorPid {
                    try? await Task.sleep(for: .milliseconds(2))
                    continue
                }
                if case .unreachable = error, clock.now < deadline, domains[uuid]?.live != nil { continue }
                switch error {
                case .refused(let why): throw .failed("\(call.words.first ?? ""): \(why)")
                default: throw .failed("cannot reach the hypervisor of '\(live.definition.name)': \(error)")
                }
            }
        }
    }

    /// `virsh shutdown`: asynchronous; the guest powers off when it wants to.
    public func shutdown(_ uuid: DomainUUID) async throws(ToolstackError) {
        let (d, _) = try live(uuid)
        guard d.state != .paused else { throw .invalidState("domain is not running") }
        // Marked first: the guest may power off before the reply arrives.
        domains[uuid]?.live?.shutdownRequested = true
        do {
            _ = try await hypervisor(uuid, HypervisorControl.command(.powerButton))
        } catch {
            domains[uuid]?.live?.shutdownRequested = false
            throw error
        }
    }

    /// `virsh reboot`: the guest shuts down, then apusd starts it again.
    public func reboot(_ uuid: DomainUUID) async throws(ToolstackError) {
        let (d, _) = try live(uuid)
        guard d.state != .paused else { throw .invalidState("domain is not running") }
        domains[uuid]?.live?.rebootRequested = true
        do {
            _ = try await hypervisor(uuid, HypervisorControl.command(.powerButton))
        } catch {
            domains[uuid]?.live?.rebootRequested = false
            throw error
        }
    }

    /// `virsh reset`: a hard reset, the guest restarts at once.
    public func reset(_ uuid: DomainUUID) async throws(ToolstackError) {
        _ = try live(uuid)
        domains[uuid]?.live?.resetRequested = true
        _ = try await hypervisor(uuid, HypervisorControl.command(.reset))
    }

    public func suspend(_ uuid: DomainUUID) async throws(ToolstackError) { try await setPaused(uuid, true) }

    public func resume(_ uuid: DomainUUID) async throws(ToolstackError) { try await setPaused(uuid, false) }

    /// Pauses or resumes every vCPU through apus-hv's control socket.
    private func setPaused(_ uuid: DomainUUID, _ paused: Bool) async throws(ToolstackError) {
        let (d, _) = try live(uuid)
        guard (d.state == .paused) != paused else {
            throw .invalidState(paused ? "domain is already paused" : "domain is not paused")
        }
        _ = try await hypervisor(uuid, HypervisorControl.command(paused ? .pause : .resume))
        // Re-read: other calls ran while this one waited for apus-hv.
        guard var now = domains[uuid], var live = now.live else { throw .invalidState("domain is not running") }
        now.state = paused ? .paused : .running
        now.reason = paused ? StateReason.pausedUser : StateReason.runningUnpaused
        live.record.paused = paused
        live.record.save(paths)
        now.live = live
        domains[uuid] = now
        emit(now, .lifecycle(event: paused ? LifecycleEvent.suspended : LifecycleEvent.resumed, detail: 0))
    }

    /// `virsh destroy`: synchronous; the domain is off when this returns.
    /// A snapshot's revert stops the domain the same way, with its own
    /// reason and event detail.
    public func destroy(_ uuid: DomainUUID, reason: Int32 = StateReason.shutoffDestroyed, detail: Int32 = 1) async throws(ToolstackError) {
        let (_, live) = try live(uuid)
        guard !live.destroying else { throw .invalidState("domain is being destroyed") }
        domains[uuid]?.live?.destroying = true
        let record = live.record
        await Supervisor.terminate(record)
        await stopped(uuid, record: record, state: .shutoff, reason: reason,
                events: [.lifecycle(event: LifecycleEvent.stopped, detail: detail)])
    }

    // MARK: process exits

    func watch(_ uuid: DomainUUID, pid: Int32) {
        let watched = hub.watchExit(pid) { [weak self] in
            Task(executorPreference: ToolstackExecutor.shared) { await self?.processExited(uuid, pid: pid) }
        }
        if !watched { Task(executorPreference: ToolstackExecutor.shared) { await self.processExited(uuid, pid: pid) } }
    }

    /// apus-hv exited: apply the domain's on_poweroff / on_reboot / on_crash.
    func processExited(_ uuid: DomainUUID, pid: Int32) async {
        guard let d = domains[uuid], let live = d.live, live.record.hypervisorPid == pid, !live.destroying else { return }
        let exit = Supervisor.exitStatus(live.record)
        let def = live.definition
        let hostRequested = live.shutdownRequested
        switch exit?.reason {
        case .poweroff:
            if live.rebootRequested || def.onPoweroff == .restart || def.onPoweroff == .renameRestart {
                await restartInPlace(uuid, reboot: live.rebootRequested)
            } else {
                await stopped(uuid, record: live.record, state: .shutoff, reason: StateReason.shutoffShutdown,
                        events: [.lifecycle(event: LifecycleEvent.shutdown, detail: hostRequested ? 2 : 1),
                                 .lifecycle(event: LifecycleEvent.stopped, detail: 0)])
            }
        case .reboot:
            if live.resetRequested || def.onReboot == .restart || def.onReboot == .renameRestart {
                await restartInPlace(uuid, reboot: true)
            } else {
                await stopped(uuid, record: live.record, state: .shutoff, reason: StateReason.shutoffShutdown,
                        events: [.lifecycle(event: LifecycleEvent.stopped, detail: 0)])
            }
        case .crash, .none:
            // No status: apus-hv was killed (SIGKILL from outside, the OOM
            // killer, its seccomp filter) or crashed itself. It is the VM,
            // so the VM crashed: on_crash applies, as for a guest that panicked.
            if exit == nil, let why = await Supervisor.seccompKill(pid, what: "apus-hv") {
                report("domain '\(def.name)': \(why)")
                Supervisor.appendLog(paths, def.name, why)
            }
            await crashed(uuid, d, live)
        default:
            await stopped(uuid, record: live.record, state: .shutoff, reason: StateReason.shutoffFailed,
                    events: [.lifecycle(event: LifecycleEvent.stopped, detail: 5)])
        }
    }

    /// The guest or its apus-hv crashed: the domain's on_crash action.
    func crashed(_ uuid: DomainUUID, _ d: Domain, _ live: Live) async {
        let action = live.definition.onCrash
        if [.restart, .renameRestart, .coredumpRestart].contains(action) {
            let now = ContinuousClock.now
            let recent = (crashRestarts[uuid] ?? []).filter { now - $0 < .seconds(60) }
            if recent.count < Self.crashRestartLimit {
                crashRestarts[uuid] = recent + [now]
                emit(d, .lifecycle(event: LifecycleEvent.crashed, detail: 0))
                await restartInPlace(uuid, reboot: false)
                return
            }
            report("domain '\(d.name)': crashed \(recent.count + 1) times within a minute; not restarted again")
            crashRestarts[uuid] = nil
        } else if action == .preserve {
            await stopped(uuid, record: live.record, state: .crashed, reason: StateReason.crashedPanicked,
                    events: [.lifecycle(event: LifecycleEvent.crashed, detail: 0)], keepListed: true)
            return
        }
        await stopped(uuid, record: live.record, state: .shutoff, reason: StateReason.shutoffCrashed,
                events: [.lifecycle(event: LifecycleEvent.crashed, detail: 0), .lifecycle(event: LifecycleEvent.stopped, detail: 2)])
    }

    /// Reboot: a new apus-hv for the same domain; the backends keep running.
    func restartInPlace(_ uuid: DomainUUID, reboot: Bool) async {
        guard var d = domains[uuid], var live = d.live else { return }
        do {
            samplers.removeValue(forKey: live.record.hypervisorPid)
            let record = try await Supervisor.relaunchHypervisor(live.record, definition: live.definition, paths: paths, allowed: await allowedPaths())
            live.record = record
            live.shutdownRequested = false
            live.rebootRequested = false
            live.resetRequested = false
            d.live = live
            d.state = .running
            d.reason = StateReason.runningBooted
            domains[uuid] = d
            // The console socket is new; the pty stays the one users know.
            hub.reconnectConsole(name: record.name)
            record.save(paths)
            watch(uuid, pid: record.hypervisorPid)
            if reboot { emit(d, .reboot) }
        } catch {
            await stopped(uuid, record: live.record, state: .shutoff, reason: StateReason.shutoffFailed,
                    events: [.lifecycle(event: LifecycleEvent.stopped, detail: 5)])
        }
    }

    /// The domain stopped: clean up its processes and state, emit events.
    func stopped(_ uuid: DomainUUID, record: RuntimeRecord, state: DomainState, reason: Int32, events kinds: [DomainEvent.Kind], keepListed: Bool = false) async {
        guard domains[uuid] != nil else { return }
        domains[uuid]?.live?.stopping = true
        for b in record.backends { backendRestarts.removeValue(forKey: "\(uuid)/\(b.device)") }
        samplers.removeValue(forKey: record.hypervisorPid)
        await Supervisor.stop(record, paths: paths)
        // Re-read after the teardown (other calls ran meanwhile).
        guard var d = domains[uuid] else { return }
        let liveID = d.live?.id ?? -1
        hub.detachConsole(name: record.name)
        d.live = nil
        d.state = state
        d.reason = reason
        for (i, k) in kinds.enumerated() {
            // Events carry the id at emission time: the last one is emitted inactive.
            publish(name: record.name, uuid: uuid, id: i + 1 == kinds.count ? -1 : liveID, kind: k)
        }
        if d.config == nil && !keepListed {
            domains.removeValue(forKey: uuid)
        } else {
            domains[uuid] = d
        }
    }

    func emit(_ d: Domain, _ kind: DomainEvent.Kind) {
        publish(name: d.name, uuid: d.uuid, id: d.live?.id ?? -1, kind: kind)
    }

    func publish(name: String, uuid: DomainUUID, id: Int32, kind: DomainEvent.Kind) {
        events.publish(DomainEvent(name: name, uuid: uuid, id: id, kind: kind))
    }

}
