import ApusSys

/// A virtual network as clients see it at one instant.
public struct NetworkInfo: Sendable, Equatable {
    public var definition: NetworkDefinition
    public var active: Bool
    public var persistent: Bool
    public var autostart: Bool
    public var name: String { definition.name }
    public var uuid: DomainUUID { definition.uuid }
}

/// virNetworkEventLifecycleType.
public enum NetworkLifecycle {
    public static let defined: Int32 = 0, undefined: Int32 = 1, started: Int32 = 2, stopped: Int32 = 3
}

/// A network event as the RPC layer delivers it.
public struct NetworkEvent: Sendable, Equatable {
    public let name: String
    public let uuid: DomainUUID
    public let event: Int32
    public let detail: Int32
}

/// Filters of virConnectListAllNetworks (VIR_CONNECT_LIST_NETWORKS_*).
public struct NetworkFilter: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let inactive = Self(rawValue: 1), active = Self(rawValue: 2)
    public static let persistent = Self(rawValue: 4), transient = Self(rawValue: 8)
    public static let autostart = Self(rawValue: 16), noAutostart = Self(rawValue: 32)

    func admits(_ n: NetworkInfo) -> Bool {
        admits(.active, .inactive, n.active) && admits(.persistent, .transient, n.persistent) && admits(.autostart, .noAutostart, n.autostart)
    }
}

/// A DHCP lease as `net-dhcp-leases` shows it.
public struct NetworkLease: Sendable, Equatable {
    /// The network's bridge.
    public var interface: String
    public var expiry: Int64
    public var mac: String
    public var ip: IPv4Address
    public var prefix: Int
    public var hostname: String?
    public var clientID: String?
}

/// apusd's virtual networks, as libvirt's network driver keeps them:
/// definitions in /var/lib/apus/networks/NAME.xml (autostart markers
/// beside them), active networks in /run/apus/networks (their live XML, the
/// dnsmasq files and pid), so a restarted apusd finds running networks again.
/// A network that Apus manages is a Linux bridge carrying the network's
/// gateway address, a dnsmasq bound to it, and rules in Apus's nftables
/// table; its guests reach the bridge through a Dom0 switch whose uplink TAP
/// is a port of the bridge (DomainManager starts that switch).
public actor VirtualNetworks {
    public nonisolated let paths: ApusPaths
    public nonisolated let events = Broadcast<NetworkEvent>()

    struct Network {
        var config: NetworkDefinition?
        /// What it runs with, when active (its bridge, MAC filled in).
        var live: NetworkDefinition?
        var autostart = false
        var dnsmasqPid: Int32 = 0
        var definition: NetworkDefinition? { live ?? config }
    }
    var networks: [DomainUUID: Network] = [:]
    /// Names with a start or stop in progress (the actor is re-entered while commands run).
    var changing: Set<String> = []
    public private(set) var warnings: [String] = []
    /// Called when a network's bridge comes up (a switch still serving it
    /// joins it again) or goes away (an idle switch stops).
    var bridgeChanged: @Sendable (_ bridge: String, _ up: Bool) async -> Void = { _, _ in }
    /// How many interfaces of running domains are on a network, by name.
    var connections: @Sendable (String) async -> Int = { _ in 0 }
    /// Where problems found while running go (apusd's log).
    var report: @Sendable (String) -> Void = { _ in }

    public init(paths: ApusPaths) { self.paths = paths }

    public func setHooks(bridgeChanged: @escaping @Sendable (String, Bool) async -> Void, connections: @escaping @Sendable (String) async -> Int,
                         report: @escaping @Sendable (String) -> Void) {
        self.bridgeChanged = bridgeChanged
        self.connections = connections
        self.report = report
    }

    // MARK: files

    var configDirectory: String { paths.state + "/networks" }
    var autostartDirectory: String { paths.state + "/networks/autostart" }
    public nonisolated var activeDirectory: String { paths.runtime + "/networks" }
    var firewallFile: String { activeDirectory + "/apus.nft" }
    /// dnsmasq's files: readable by the unprivileged user dnsmasq becomes (nothing in them is secret).
    var dnsmasqDirectory: String { activeDirectory + "/dnsmasq" }
    func files(_ name: String) -> Dnsmasq.Files { Dnsmasq.Files(directory: dnsmasqDirectory, network: name) }
    func liveFile(_ name: String) -> String { activeDirectory + "/" + name + ".xml" }
    func pidFile(_ name: String) -> String { activeDirectory + "/" + name + ".pid" }

    func makeDirectories() throws(ToolstackError) {
        let modes: [(String, UInt32)] = [(configDirectory, 0o700), (autostartDirectory, 0o700), (activeDirectory, 0o755), (dnsmasqDirectory, 0o755)]
        for (d, mode) in modes {
            do {
                try ProcessControl.makeDirectories(d, mode: .init(mode))
                try FileSystem.setPermissions(d, mode: mode)
            } catch {
                throw .failed("cannot create \(d): \(error)")
            }
        }
    }

    /// Loads definitions and finds active networks again: one whose bridge
    /// is gone (a reboot, someone deleted it) is tidied up and inactive.
    public func load() async {
        do { try makeDirectories() } catch { warnings.append(error.message) }
        for file in ProcessControl.directoryEntries(configDirectory).sorted() where file.hasSuffix(".xml") {
            let path = configDirectory + "/" + file
            guard let text = ProcessControl.readText(path, limit: ProcessControl.stateFileLimit) else { continue }
            do {
                let def = try NetworkXML.parse(text)
                networks[def.uuid] = Network(config: def, autostart: FileSystem.exists(autostartDirectory + "/" + def.name))
            } catch {
                warnings.append("\(path): \(error.message)")
            }
        }
        var staleRules = false
        for file in ProcessControl.directoryEntries(activeDirectory).sorted() where file.hasSuffix(".xml") {
            guard let text = ProcessControl.readText(activeDirectory + "/" + file, limit: ProcessControl.stateFileLimit), let def = try? NetworkXML.parse(text),
                  let bridge = def.bridge else { continue }
            guard HostNetwork.isBridge(bridge) else {
                warnings.append("network '\(def.name)' was active but its bridge \(bridge) is gone; it is inactive now")
                await teardown(def)
                staleRules = true
                continue
            }
            var n = networks[def.uuid] ?? Network()
            n.live = def
            if let text = ProcessControl.readText(pidFile(def.name)), let pid = Int32(text.trimmingWhitespace),
               ProcessControl.isAlive(pid), ProcessControl.commandLine(pid).first?.hasSuffix("dnsmasq") == true {
                n.dnsmasqPid = pid
            }
            networks[def.uuid] = n
            if def.managesBridge && n.dnsmasqPid == 0 && (def.dnsEnabled || def.dhcpIP != nil) {
                do {
                    try startDnsmasq(def)
                } catch {
                    warnings.append("network '\(def.name)': dnsmasq could not be started again: \(error.message)")
                }
            }
        }
        // A network that went away while apusd was down takes its rules along.
        if staleRules {
            do { try await applyFirewall() } catch { warnings.append("the firewall rules of gone networks could not be removed: \(error.message)") }
        }
    }

    /// Starts every autostart network that is not active.
    public func autostartAll() async {
        for (uuid, n) in networks where n.autostart && n.live == nil {
            do {
                try await start(uuid)
            } catch {
                warnings.append("autostart of network '\(n.config?.name ?? "")' failed: \(error.message)")
            }
        }
    }

    // MARK: queries

    func info(_ n: Network) -> NetworkInfo? {
        guard let def = n.definition else { return nil }
        return NetworkInfo(definition: def, active: n.live != nil, persistent: n.config != nil, autostart: n.autostart)
    }

    public func list(_ filter: NetworkFilter = []) -> [NetworkInfo] {
        networks.values.compactMap(info).filter { filter.admits($0) }.sorted { $0.name < $1.name }
    }

    public func lookup(name: String) throws(ToolstackError) -> NetworkInfo {
        guard let n = networks.values.first(where: { $0.definition?.name == name }), let i = info(n) else {
            throw .noNetwork("no network with matching name '\(name)'")
        }
        return i
    }

    public func lookup(uuid: DomainUUID) throws(ToolstackError) -> NetworkInfo {
        guard let n = networks[uuid], let i = info(n) else { throw .noNetwork("no network with matching uuid '\(uuid)'") }
        return i
    }

    public func xml(_ uuid: DomainUUID, inactive: Bool) async throws(ToolstackError) -> String {
        guard let n = networks[uuid] else { throw .noNetwork("no network with matching uuid '\(uuid)'") }
        if inactive, let c = n.config { return NetworkXML.format(c) }
        guard let def = n.definition else { throw .noNetwork("no network with matching uuid '\(uuid)'") }
        return NetworkXML.format(def, connections: n.live != nil ? await connections(def.name) : 0)
    }

    public func bridgeName(_ uuid: DomainUUID) throws(ToolstackError) -> String {
        let i = try lookup(uuid: uuid)
        guard let b = i.definition.bridge else { throw .internalError("network '\(i.name)' does not have a bridge name.") }
        return b
    }

    /// The active network a domain's `<interface type='network'>` names.
    public func activeNetwork(_ name: String) throws(ToolstackError) -> NetworkDefinition {
        guard let n = networks.values.first(where: { $0.definition?.name == name }) else {
            throw .noNetwork("no network with matching name '\(name)'")
        }
        guard let live = n.live else { throw .invalidState("network '\(name)' is not active") }
        return live
    }

    /// The name of the active network whose bridge is `bridge`, if any.
    public func network(bridge: String) -> String? {
        networks.values.first { $0.live?.bridge == bridge }?.live?.name
    }

    // MARK: definitions

    /// `net-define`: a new network, or a new definition of an existing one
    /// (an active network keeps running with what it started with).
    public func define(xml: String) throws(ToolstackError) -> NetworkInfo {
        var def = try NetworkXML.parse(xml)
        let existing = try checkConflicts(def)
        try makeDirectories()
        fillIn(&def, keeping: existing.flatMap { networks[$0]?.definition })
        let path = configDirectory + "/" + def.name + ".xml"
        do {
            try ProcessControl.writeFileAtomically(path, NetworkXML.format(def), mode: 0o600)
        } catch {
            throw .failed("cannot write \(path): \(error)")
        }
        var n = networks[def.uuid] ?? Network()
        n.config = def
        networks[def.uuid] = n
        emit(def, NetworkLifecycle.defined)
        return NetworkInfo(definition: n.live ?? def, active: n.live != nil, persistent: true, autostart: n.autostart)
    }

    /// `net-create`: a transient network, started at once.
    public func create(xml: String) async throws(ToolstackError) -> NetworkInfo {
        var def = try NetworkXML.parse(xml)
        if try checkConflicts(def) != nil {
            if networks[def.uuid]?.live != nil { throw .invalidState("network is already active as '\(def.name)'") }
            throw .failed("network '\(def.name)' already exists with uuid \(def.uuid)")
        }
        fillIn(&def, keeping: nil)
        networks[def.uuid] = Network()
        do {
            try await bringUp(def)
        } catch {
            networks.removeValue(forKey: def.uuid)
            throw error
        }
        return try lookup(uuid: def.uuid)
    }

    /// The uuid of the network `def` redefines, if any; refuses libvirt's conflicts.
    func checkConflicts(_ def: NetworkDefinition) throws(ToolstackError) -> DomainUUID? {
        if let same = networks[def.uuid], let old = same.definition, old.name != def.name {
            throw .failed("network '\(old.name)' is already defined with uuid \(def.uuid)")
        }
        if let other = networks.values.compactMap(\.definition).first(where: { $0.name == def.name && $0.uuid != def.uuid }) {
            throw .failed("network '\(other.name)' already exists with uuid \(other.uuid)")
        }
        if let b = def.bridge, def.managesBridge,
           networks.values.compactMap(\.definition).contains(where: { $0.uuid != def.uuid && $0.bridge == b && $0.managesBridge }) {
            throw .internalError("bridge name '\(b)' already in use.")
        }
        return networks[def.uuid] != nil ? def.uuid : nil
    }

    /// Assigns what libvirt assigns at define: a bridge name (the lowest
    /// free virbrN) and a MAC for it, kept from the old definition if any.
    func fillIn(_ def: inout NetworkDefinition, keeping old: NetworkDefinition?) {
        guard def.managesBridge else { return }
        if def.bridge == nil {
            if let b = old?.bridge {
                def.bridge = b
            } else {
                let taken = Set(networks.values.compactMap(\.definition?.bridge))
                var i = 0
                while taken.contains("virbr\(i)") || HostNetwork.interfaceExists("virbr\(i)") { i += 1 }
                def.bridge = "virbr\(i)"
            }
        }
        if def.mac == nil {
            def.mac = old?.mac ?? DomainXML.formatMAC([0x52, 0x54, 0x00] + (0..<3).map { _ in UInt8.random(in: 0...255) })
        }
    }

    /// `net-undefine`: an active network stays up, transient, until destroyed.
    public func undefine(_ uuid: DomainUUID) throws(ToolstackError) {
        guard var n = networks[uuid], let def = n.config else {
            if networks[uuid] != nil { throw .invalidState("can't undefine transient network") }
            throw .noNetwork("no network with matching uuid '\(uuid)'")
        }
        FileSystem.remove(configDirectory + "/" + def.name + ".xml")
        FileSystem.remove(autostartDirectory + "/" + def.name)
        n.config = nil
        n.autostart = false
        if n.live == nil { networks.removeValue(forKey: uuid) } else { networks[uuid] = n }
        emit(def, NetworkLifecycle.undefined)
    }

    public func setAutostart(_ uuid: DomainUUID, _ on: Bool) throws(ToolstackError) {
        guard var n = networks[uuid], let def = n.config else {
            if networks[uuid] != nil { throw .invalidState("cannot set autostart for transient network") }
            throw .noNetwork("no network with matching uuid '\(uuid)'")
        }
        try makeDirectories()
        let marker = autostartDirectory + "/" + def.name
        if on {
            do {
                try ProcessControl.writeFileAtomically(marker, "", mode: 0o600)
            } catch {
                throw .failed("cannot create autostart marker \(marker): \(error)")
            }
        } else {
            FileSystem.remove(marker)
        }
        n.autostart = on
        networks[uuid] = n
    }

    // MARK: starting and stopping

    /// `net-start`.
    public func start(_ uuid: DomainUUID) async throws(ToolstackError) {
        guard let n = networks[uuid], let def = n.config else { throw .noNetwork("no network with matching uuid '\(uuid)'") }
        guard n.live == nil else { throw .invalidState("network is already active") }
        try await bringUp(def)
    }

    /// Checks the host, then makes the bridge, its address, the firewall
    /// rules and dnsmasq; anything that fails undoes what was done.
    func bringUp(_ def: NetworkDefinition) async throws(ToolstackError) {
        guard !changing.contains(def.name) else { throw .invalidState("network '\(def.name)' is being started or stopped") }
        changing.insert(def.name)
        defer { changing.remove(def.name) }
        try makeDirectories()
        guard let bridge = def.bridge else { throw .internalError("network '\(def.name)' has no bridge name") }
        if def.managesBridge {
            if HostNetwork.interfaceExists(bridge) {
                throw .systemError("error creating bridge interface \(bridge): File exists")
            }
            try checkRoutes(def)
        } else {
            guard HostNetwork.isBridge(bridge) else {
                throw .systemError("Cannot get interface MTU on '\(bridge)': No such device")
            }
        }
        if def.managesBridge {
            try await HostNetwork.createBridge(def, name: bridge, scratch: activeDirectory)
        }
        do {
            try writeLive(def)
            var n = networks[def.uuid] ?? Network()
            n.live = def
            networks[def.uuid] = n
            if def.managesBridge {
                try await applyFirewall()
                if NetworkFirewall.needsForwarding([.init(def)]) { try HostNetwork.enableForwarding(ipv6: !def.ipv6.isEmpty) }
                if def.dnsEnabled || def.dhcpIP != nil { try startDnsmasq(def) }
            }
        } catch {
            networks[def.uuid]?.live = nil
            if networks[def.uuid]?.config == nil { networks.removeValue(forKey: def.uuid) }
            await teardown(def)
            try? await applyFirewall()
            throw error
        }
        emit(def, NetworkLifecycle.started)
        await bridgeChanged(bridge, true)
    }

    /// libvirt's networkCheckRouteCollision: a subnet some host interface
    /// already routes is refused (another network's bridge counts too).
    func checkRoutes(_ def: NetworkDefinition) throws(ToolstackError) {
        let routes = HostNetwork.routes()
        for ip in def.ips {
            for r in routes where r.subnet.prefix == ip.prefix && r.subnet.network == ip.subnet.network {
                throw .internalError("Network is already in use by interface \(r.interface)")
            }
        }
        for other in networks.values.compactMap(\.live) where other.uuid != def.uuid {
            for a in other.ips {
                for b in def.ips where a.subnet.overlaps(b.subnet) {
                    throw .internalError("Network is already in use by interface \(other.bridge ?? other.name)")
                }
            }
            for a in other.ipv6 {
                for b in def.ipv6 where a.subnet.overlaps(b.subnet) {
                    throw .internalError("Network is already in use by interface \(other.bridge ?? other.name)")
                }
            }
        }
    }

    func writeLive(_ def: NetworkDefinition) throws(ToolstackError) {
        do {
            try ProcessControl.writeFileAtomically(liveFile(def.name), NetworkXML.format(def), mode: 0o600)
        } catch {
            throw .failed("cannot write \(liveFile(def.name)): \(error)")
        }
    }

    func startDnsmasq(_ def: NetworkDefinition) throws(ToolstackError) {
        guard let program = HostNetwork.program("dnsmasq") else {
            throw .internalError("dnsmasq is not installed (virtual networks need Debian's dnsmasq-base)")
        }
        let f = files(def.name)
        // dnsmasq drops to an unprivileged user before it reads its hosts files.
        var dir = dnsmasqDirectory
        while !dir.isEmpty {
            if let st = FileSystem.status(dir), st.mode & 0o001 == 0 {
                throw .failed("dnsmasq cannot reach \(dnsmasqDirectory) once it drops its privileges: \(dir) is not searchable by others (mode \(String(st.mode, radix: 8)))")
            }
            dir = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
        }
        do {
            try ProcessControl.writeFileAtomically(f.hostsFile, Dnsmasq.hostsFile(def), mode: 0o644)
            try ProcessControl.writeFileAtomically(f.additionalHosts, Dnsmasq.additionalHosts(def), mode: 0o644)
            try ProcessControl.writeFileAtomically(f.configuration, Dnsmasq.configuration(def, files: f), mode: 0o644)
            if !FileSystem.exists(f.leases) { try ProcessControl.writeFileAtomically(f.leases, "", mode: 0o644) }
        } catch {
            throw .failed("cannot write dnsmasq's files for network '\(def.name)': \(error)")
        }
        let log = try? FileDescriptor.open(f.log, .log, mode: 0o600)
        defer { log?.close() }
        let pid: Int32
        do {
            pid = try ProcessControl.spawn(program, Dnsmasq.arguments(f), stdout: log, stderr: log)
        } catch {
            throw .internalError("cannot start dnsmasq: \(error)")
        }
        try? ProcessControl.writeFileAtomically(pidFile(def.name), "\(pid)\n")
        networks[def.uuid]?.dnsmasqPid = pid
    }

    /// `net-destroy`: the bridge, its rules and dnsmasq go away.
    public func destroy(_ uuid: DomainUUID) async throws(ToolstackError) {
        guard let n = networks[uuid], let live = n.live else {
            if let d = networks[uuid]?.definition { throw .invalidState("network '\(d.name)' is not active") }
            throw .noNetwork("no network with matching uuid '\(uuid)'")
        }
        guard !changing.contains(live.name) else { throw .invalidState("network '\(live.name)' is being started or stopped") }
        changing.insert(live.name)
        defer { changing.remove(live.name) }
        if n.dnsmasqPid > 0 { ProcessControl.signal(n.dnsmasqPid, 15) }
        networks[uuid]?.live = nil
        networks[uuid]?.dnsmasqPid = 0
        await teardown(live)
        do {
            try await applyFirewall()
        } catch {
            report("network '\(live.name)': its firewall rules could not be removed: \(error.message)")
        }
        if networks[uuid]?.config == nil { networks.removeValue(forKey: uuid) }
        emit(live, NetworkLifecycle.stopped)
        if let b = live.bridge, live.managesBridge { await bridgeChanged(b, false) }
    }

    /// Removes what an active network had on the host (its rules are
    /// dropped by the next ``applyFirewall()``).
    func teardown(_ def: NetworkDefinition) async {
        if let text = ProcessControl.readText(pidFile(def.name)), let pid = Int32(text.trimmingWhitespace),
           ProcessControl.isAlive(pid), ProcessControl.commandLine(pid).first?.hasSuffix("dnsmasq") == true {
            ProcessControl.signal(pid, 15)
        }
        if def.managesBridge, let b = def.bridge { await HostNetwork.deleteBridge(b, scratch: activeDirectory) }
        let f = files(def.name)
        // The leases stay: a network started again gives its guests the same addresses.
        for p in [f.configuration, f.hostsFile, f.additionalHosts, pidFile(def.name), liveFile(def.name)] { FileSystem.remove(p) }
        _ = ProcessControl.reapChildren()
    }

    /// Loads Apus's nftables table with the rules of every active network.
    func applyFirewall() async throws(ToolstackError) {
        let active = networks.values.compactMap(\.live).filter(\.managesBridge).sorted { $0.name < $1.name }
        try await HostNetwork.loadFirewall(NetworkFirewall.script(active.map(NetworkFirewall.Network.init)), path: firewallFile,
                                           scratch: activeDirectory)
    }

    // MARK: updates

    /// virNetworkUpdateCommand and virNetworkUpdateSection values Apus handles.
    public enum UpdateCommand: UInt32, Sendable { case modify = 1, delete = 2, addLast = 3, addFirst = 4 }
    public enum UpdateSection: UInt32, Sendable { case dhcpHost = 4, dnsHost = 10 }
    static let sectionNames: [UInt32: String] = [1: "bridge", 2: "domain", 3: "ip", 4: "ip-dhcp-host", 5: "ip-dhcp-range", 6: "forward",
                                                 7: "forward-interface", 8: "forward-pf", 9: "portgroup", 10: "dns-host", 11: "dns-txt", 12: "dns-srv"]

    /// `net-update`: adds, changes or removes one `<dhcp><host>` or `<dns><host>`
    /// in the live network (dnsmasq re-reads its hosts files on SIGHUP), the
    /// persistent definition, or both.
    public func update(_ uuid: DomainUUID, command: UInt32, section: UInt32, xml: String, live wantLive: Bool, config wantConfig: Bool) throws(ToolstackError) {
        guard var n = networks[uuid], let current = n.definition else { throw .noNetwork("no network with matching uuid '\(uuid)'") }
        guard let cmd = UpdateCommand(rawValue: command) else { throw .invalidArgument("unrecognized network update command code \(command)") }
        guard let sec = UpdateSection(rawValue: section) else {
            guard let name = Self.sectionNames[section] else { throw .invalidArgument("unrecognized network update section code \(section)") }
            throw ToolstackError(.noSupport, "this function is not supported by the connection driver: can't update '\(name)' section of network '\(current.name)'")
        }
        // VIR_NETWORK_UPDATE_AFFECT_CURRENT: the live network if active, else the definition.
        let live = wantLive || (!wantConfig && n.live != nil)
        let config = wantConfig || (!wantLive && n.live == nil)
        if live && n.live == nil { throw .invalidState("network '\(current.name)' is not active") }
        if config && n.config == nil { throw .invalidState("cannot change persistent config of a transient network") }
        let snippet: XMLElement
        do {
            snippet = try XMLParser.parse(xml)
        } catch {
            throw .xml("(network_update):\(error.line): \(error.message)")
        }
        guard snippet.name == "host" else { throw .xml("unexpected element <\(snippet.name)>, expecting <host>, while updating \(Self.sectionNames[section] ?? "") section of network '\(current.name)'") }
        func apply(_ def: NetworkDefinition) throws(ToolstackError) -> NetworkDefinition {
            var d = def
            switch sec {
            case .dhcpHost:
                guard let i = d.ips.firstIndex(where: { $0.dhcp }) ?? d.ips.indices.first else {
                    throw .invalidState("can't update 'ip-dhcp-host' section of network '\(d.name)': it has no IPv4 address")
                }
                let host = try NetworkXML.dhcpHost(snippet, network: d.name)
                let same = d.ips[i].hosts.firstIndex { ($0.mac != nil && $0.mac == host.mac) || ($0.mac == nil && $0.name != nil && $0.name == host.name) }
                switch cmd {
                case .addFirst, .addLast:
                    if same != nil || d.ips[i].hosts.contains(where: { $0.ip == host.ip }) {
                        throw .invalidArgument("there is an existing dhcp host entry in network '\(d.name)' that matches \"\(XMLWriter.write(snippet))\"")
                    }
                    if cmd == .addFirst { d.ips[i].hosts.insert(host, at: 0) } else { d.ips[i].hosts.append(host) }
                case .modify, .delete:
                    guard let j = same else {
                        throw .invalidArgument("couldn't locate an existing dhcp host entry with \"mac='\(host.mac ?? "")'\" in network '\(d.name)'")
                    }
                    if cmd == .modify { d.ips[i].hosts[j] = host } else { d.ips[i].hosts.remove(at: j) }
                }
            case .dnsHost:
                let host = try NetworkXML.dnsHost(snippet, network: d.name)
                let same = d.dnsHosts.firstIndex { $0.ip == host.ip }
                switch cmd {
                case .addFirst, .addLast:
                    if same != nil { throw .invalidArgument("there is already at least one DNS HOST record with a matching field in network \(d.name)") }
                    if cmd == .addFirst { d.dnsHosts.insert(host, at: 0) } else { d.dnsHosts.append(host) }
                case .delete:
                    guard let j = same else { throw .invalidArgument("couldn't locate a matching DNS HOST record in network \(d.name)") }
                    d.dnsHosts.remove(at: j)
                case .modify:
                    throw ToolstackError(.noSupport, "this function is not supported by the connection driver: DNS HOST records cannot be modified, only added or deleted")
                }
            }
            try NetworkXML.validate(d)
            return d
        }
        // Both are checked before either changes.
        let newLive = try live ? n.live.map(apply) : nil
        let newConfig = try config ? n.config.map(apply) : nil
        if let c = newConfig {
            let path = configDirectory + "/" + c.name + ".xml"
            do {
                try ProcessControl.writeFileAtomically(path, NetworkXML.format(c), mode: 0o600)
            } catch {
                throw .failed("cannot write \(path): \(error)")
            }
            n.config = c
        }
        if let l = newLive {
            n.live = l
            try writeLive(l)
            let f = files(l.name)
            do {
                try ProcessControl.writeFileAtomically(f.hostsFile, Dnsmasq.hostsFile(l), mode: 0o644)
                try ProcessControl.writeFileAtomically(f.additionalHosts, Dnsmasq.additionalHosts(l), mode: 0o644)
            } catch {
                throw .failed("cannot write dnsmasq's hosts files for network '\(l.name)': \(error)")
            }
            if n.dnsmasqPid > 0 { ProcessControl.signal(n.dnsmasqPid, 1) }
        }
        networks[uuid] = n
    }

    // MARK: leases

    /// `net-dhcp-leases`: dnsmasq's current leases (expired ones left out), optionally for one MAC.
    public func leases(_ uuid: DomainUUID, mac: String? = nil) throws(ToolstackError) -> [NetworkLease] {
        guard let n = networks[uuid], n.definition != nil else { throw .noNetwork("no network with matching uuid '\(uuid)'") }
        guard let live = n.live else { return [] }
        return leases(of: live, mac: mac)
    }

    func leases(of live: NetworkDefinition, mac: String?) -> [NetworkLease] {
        guard let ip = live.dhcpIP, let text = ProcessControl.readText(files(live.name).leases) else { return [] }
        let now = Int64(Clock.realtime().seconds)
        return Dnsmasq.parseLeases(text).filter { ($0.expiry == 0 || $0.expiry > now) && (mac == nil || $0.mac == mac) }.map {
            NetworkLease(interface: live.bridge ?? "", expiry: $0.expiry, mac: $0.mac, ip: $0.ip, prefix: ip.prefix,
                         hostname: $0.hostname, clientID: $0.clientID)
        }
    }

    /// The leases of `mac` on whichever active network has one (`domifaddr`).
    public func leases(forMAC mac: String, network: String?) -> [NetworkLease] {
        networks.values.compactMap(\.live).filter { network == nil || $0.name == network }.flatMap { leases(of: $0, mac: mac) }
    }

    func emit(_ def: NetworkDefinition, _ event: Int32) {
        events.publish(NetworkEvent(name: def.name, uuid: def.uuid, event: event, detail: 0))
    }
}

