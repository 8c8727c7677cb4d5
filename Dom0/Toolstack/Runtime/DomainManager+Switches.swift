import ApusControl
import Sandbox
import ApusSys

/// One of Dom0's switches: an apus-netback process serving the ports of
/// every interface on one bridge. `apus0` is Dom0's own switch (no host
/// interface unless apusd.conf's netback_uplink gives one, as xenbr0 is
/// Xen's); every other bridge — a virtual network's or one of the host's —
/// gets a switch of its own whose uplink TAP is a port of that host bridge.
struct SwitchSpec: Sendable, Equatable {
    /// The bridge its interfaces name.
    var bridge: String
    var control: String
    var pidFile: String
    var log: String
    /// `--uplink tap:NAME`, if any.
    var uplink: String?
    /// The host bridge the uplink TAP joins (none for `apus0`).
    var hostBridge: String?
    var uplinkTap: String? { uplink.map { String($0.dropFirst(4)) } }
}

extension DomainManager {
    /// The bridge name of Dom0's own switch.
    public nonisolated static let ownSwitch = "apus0"

    func switchSpec(_ bridge: String) -> SwitchSpec {
        if bridge == Self.ownSwitch {
            return SwitchSpec(bridge: bridge, control: paths.runtime + "/netback.ctl", pidFile: paths.runtime + "/netback.pid",
                              log: paths.logs + "/netback.log", uplink: limits.netbackUplink, hostBridge: nil)
        }
        let dir = paths.runtime + "/switches/"
        return SwitchSpec(bridge: bridge, control: dir + bridge + ".ctl", pidFile: dir + bridge + ".pid",
                          log: paths.logs + "/switch-" + bridge + ".log", uplink: "tap:" + Self.uplinkName(bridge), hostBridge: bridge)
    }

    /// The uplink TAP's name for `bridge`: libvirt's `virbr0-nic` style when
    /// it fits in an interface name, else a stable short hash.
    nonisolated static func uplinkName(_ bridge: String) -> String {
        if bridge.utf8.count <= 11 { return bridge + "-nic" }
        var h: UInt32 = 2_166_136_261
        for b in bridge.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        let hex = String(h, radix: 16)
        return "apsw" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The switch an interface's port goes on: its network's bridge, the
    /// host bridge it names, or Dom0's own switch.
    func switchFor(_ iface: InterfaceDefinition, port: String) async throws(ToolstackError) -> SwitchSpec {
        switch iface.type {
        case .network:
            guard let networks else { throw .noNetwork("no network with matching name '\(iface.source)'") }
            let net = try await networks.activeNetwork(iface.source)
            guard let bridge = net.bridge else { throw .internalError("network '\(iface.source)' has no bridge") }
            return switchSpec(bridge)
        case .bridge:
            if iface.source == Self.ownSwitch { return switchSpec(iface.source) }
            guard HostNetwork.isBridge(iface.source) else {
                throw .systemError("Unable to add bridge \(iface.source) port \(port): No such device")
            }
            return switchSpec(iface.source)
        }
    }

    /// Makes sure the switch answers on its control socket, its uplink on its host bridge.
    func ensureSwitch(_ spec: SwitchSpec) async throws(ToolstackError) {
        // Another start is bringing it up (the actor is re-entered while it waits).
        while switchesStarting.contains(spec.bridge) { try? await Task.sleep(for: .milliseconds(5)) }
        if (try? await ControlClient.shared.call(spec.control, SwitchControl.ports, timeoutMilliseconds: 2000)) != nil {
            if switchPids[spec.bridge] == nil, let pid = Self.runningSwitch(spec) {
                // Started by an earlier apusd: watch it from now on.
                switchPids[spec.bridge] = pid
                watchSwitch(spec, pid)
            }
            return
        }
        guard FileSystem.exists(paths.binary("apus-netback")) else {
            throw .unsupported("network interfaces need apus-netback next to apusd")
        }
        switchesStarting.insert(spec.bridge)
        defer { switchesStarting.remove(spec.bridge) }
        FileSystem.remove(spec.control)
        try? ProcessControl.makeDirectories(paths.runtime + "/switches", mode: 0o700)
        let log = try? FileDescriptor.open(spec.log, .log, mode: 0o600)
        defer { log?.close() }
        var args = ["--control", spec.control]
        if let uplink = spec.uplink { args += ["--uplink", uplink] }
        let pid = try Supervisor.spawn(paths.binary("apus-netback"), args, kind: .switchBackend, log: log, jail: switchJail(spec))
        try await Supervisor.waitFor(spec.control, pid: pid, what: "Dom0's switch for \(spec.bridge) (apus-netback)", log: spec.log)
        try? ProcessControl.writeFileAtomically(spec.pidFile, "\(pid)\n")
        switchPids[spec.bridge] = pid
        watchSwitch(spec, pid)
        if let tap = spec.uplinkTap, let host = spec.hostBridge {
            do {
                try await HostNetwork.join(tap, to: host, scratch: paths.runtime)
            } catch {
                ProcessControl.signal(pid, 15)
                throw error
            }
        }
    }

    /// The jail a switch enters once its TAP is open and its control socket
    /// listens (nil when domains are not confined): root with
    /// CAP_DAC_OVERRIDE alone, since it makes each port's socket in the
    /// runtime directory of the domain it serves, seeing only those
    /// directories and its own control socket's.
    func switchJail(_ spec: SwitchSpec) -> Jail? {
        guard confinesDomains else { return nil }
        let domains = paths.runtime + "/domains", control = FileSystem.directory(of: spec.control)
        return Jail(identity: .rootOverridingFilePermissions, visible: domains.hasPrefix(control + "/") ? [control] : [control, domains])
    }

    /// The pid of a running apus-netback recorded for `spec`.
    static func runningSwitch(_ spec: SwitchSpec) -> Int32? {
        guard let text = ProcessControl.readText(spec.pidFile), let pid = Int32(text.trimmingWhitespace), pid > 0,
              ProcessControl.isAlive(pid), ProcessControl.commandLine(pid).first?.hasSuffix("apus-netback") == true
        else { return nil }
        return pid
    }

    /// Watches the switches an earlier apusd started (apusd restarts).
    func adoptSwitches() {
        var bridges = [Self.ownSwitch]
        bridges += ProcessControl.directoryEntries(paths.runtime + "/switches").filter { $0.hasSuffix(".pid") }.map { String($0.dropLast(4)) }
        for b in bridges {
            let spec = switchSpec(b)
            if let pid = Self.runningSwitch(spec) {
                switchPids[b] = pid
                watchSwitch(spec, pid)
            }
        }
    }

    func watchSwitch(_ spec: SwitchSpec, _ pid: Int32) {
        _ = hub.watchExit(pid) { [weak self] in
            Task(executorPreference: ToolstackExecutor.shared) { await self?.switchExited(spec, pid) }
        }
    }

    /// Running domains' ports on a switch.
    func ports(on spec: SwitchSpec) -> [RuntimeRecord.Backend] { portsAndOwners(on: spec).map(\.port) }

    /// Each port on `spec` with the uid of the domain it belongs to.
    func portsAndOwners(on spec: SwitchSpec) -> [(port: RuntimeRecord.Backend, owner: UInt32?)] {
        domains.values.compactMap { $0.live?.record }.flatMap { r in
            r.backends.filter { $0.kind == .net && $0.control == spec.control }.map { ($0, r.user) }
        }
    }

    /// How many running domains' interfaces are on `bridge` (a network's `connections`).
    public func connections(bridge: String) -> Int { ports(on: switchSpec(bridge)).count }

    /// A switch died: start it again and give back every running domain's
    /// ports on it (their apus-hv reconnect to the new sockets).
    func switchExited(_ spec: SwitchSpec, _ pid: Int32) async {
        guard switchPids[spec.bridge] == pid else { return }
        switchPids[spec.bridge] = nil
        let ports = portsAndOwners(on: spec)
        guard !ports.isEmpty else { return }
        report("Dom0's switch for \(spec.bridge) (apus-netback, pid \(pid)) exited; starting it again with \(ports.count) port(s)")
        // A switch that dies at once is not restarted in a tight loop.
        try? await Task.sleep(for: .milliseconds(500))
        do {
            try await ensureSwitch(spec)
            for (p, owner) in ports {
                do {
                    try await NetbackPorts.add(p.device, socket: p.socket, to: spec.control, owner: owner)
                } catch {
                    report("port \(p.device) could not be given back to the switch: \(error.message)")
                }
            }
        } catch {
            report("Dom0's switch for \(spec.bridge) did not come back: \(error.message)")
        }
    }

    /// A network's bridge was made again (net-start after net-destroy): a
    /// switch still serving it joins it again. A bridge that went away
    /// takes its switch along unless domains' ports are still on it.
    public func bridgeChanged(_ bridge: String, up: Bool) async {
        let spec = switchSpec(bridge)
        guard let pid = switchPids[bridge], let tap = spec.uplinkTap, let host = spec.hostBridge else { return }
        if !up {
            guard ports(on: spec).isEmpty else { return }
            switchPids[bridge] = nil
            ProcessControl.signal(pid, 15)
            FileSystem.remove(spec.pidFile)
            return
        }
        do {
            try await HostNetwork.join(tap, to: host, scratch: paths.runtime)
        } catch {
            report("the switch for \(bridge) could not join it again: \(error.message)")
        }
    }
}

extension DomainManager {
    /// The virtual networks interfaces resolve through (set by apusd).
    public func setNetworks(_ n: VirtualNetworks) { networks = n }
}

/// A running domain's interface as a port of a network (`net-port-list`).
public struct NetworkPortInfo: Sendable, Equatable {
    /// Stable for the domain's run: derived from its UUID and the interface's index.
    public var uuid: DomainUUID
    public var domain: String
    public var domainUUID: DomainUUID
    public var mac: String
    /// The port's host-side name (vnetN).
    public var device: String
    public var bridge: String
}

extension DomainManager {
    /// The ports of running domains on `bridge`'s switch.
    public func networkPorts(bridge: String) -> [NetworkPortInfo] {
        let control = switchSpec(bridge).control
        var out: [NetworkPortInfo] = []
        for d in domains.values {
            guard let live = d.live else { continue }
            let nets = live.record.backends.filter { $0.kind == .net }
            for (i, (b, iface)) in zip(nets, live.definition.interfaces).enumerated() where b.control == control {
                var bytes = live.definition.uuid.bytes
                for k in 8..<16 { bytes[k] ^= 0xA5 ^ UInt8(truncatingIfNeeded: i + 1) }
                guard let uuid = DomainUUID(bytes: bytes) else { continue }
                out.append(NetworkPortInfo(uuid: uuid, domain: live.definition.name, domainUUID: live.definition.uuid,
                                           mac: iface.mac, device: b.device, bridge: bridge))
            }
        }
        return out.sorted { $0.uuid.description < $1.uuid.description }
    }
}
