// apus-netback: Dom0's network backend. Serves guest NICs over
// vhost-user-net, one socket per port, and switches frames among them with
// a learning L2 switch (as Xen's netback + dom0's bridge).
import ArgumentParser
import ApusControl
import ApusSys
import Sandbox
import NetBackend
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

struct NetBackendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus-netback",
        abstract: "Dom0's switch: vhost-user-net ports and a learning L2 switch between them.",
        discussion: """
        Each port is a vhost-user socket a frontend (apus-hv --net vhost-user:SOCKET, \
        QEMU's vhost-user-net-pci, apus-vhost-test net) connects to. The control \
        socket takes one command per line and answers one JSON line: \
        `add-port NAME SOCKET`, `remove-port NAME`, `port-stats NAME`, `ports`, `fdb`.
        """)

    @Option(help: "Control socket (apusd adds and removes ports through it).")
    var control: String

    @Option(name: .customLong("port"), help: "A port to serve from the start, as NAME=SOCKET (repeatable).")
    var ports: [String] = []

    @Flag(help: "Run without the seccomp filter (debugging only; apusd never passes it).")
    var noSeccomp = false

    @Option(help: "Once set up, keep only CAP_DAC_OVERRIDE (root) in a root that shows only each --jail-dir (apusd passes 'root').")
    var jailUser: String?

    @Option(help: "A directory the jail keeps visible, at its own path (repeatable: the control socket's and the ports' directories).")
    var jailDir: [String] = []

    @Option(help: "Uplink to the host: tap:IFNAME joins a TAP interface (created if missing) to the switch as port 'uplink'.")
    var uplink: String?

    @Option(help: "Seconds a learned MAC address stays in the forwarding table without traffic.")
    var ageing: UInt64 = 300

    func validate() throws {
        for p in ports where p.split(separator: "=", maxSplits: 1).count != 2 {
            throw ValidationError("--port '\(p)': expected NAME=SOCKET")
        }
        if let u = uplink, !u.hasPrefix("tap:") || u.count <= 4 {
            throw ValidationError("--uplink '\(u)': expected tap:IFNAME")
        }
        guard (1...86_400).contains(ageing) else { throw ValidationError("--ageing must be between 1 and 86400 seconds") }
        _ = try jail()
    }

    func jail() throws -> Jail? {
        guard let jailUser else {
            guard jailDir.isEmpty else { throw ValidationError("--jail-dir needs --jail-user") }
            return nil
        }
        do {
            return try Jail(owner: jailUser, visible: jailDir)
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        BackendLog.program = "apus-netback"
        Signals.ignoreBrokenPipe()
        let jail = try jail()
        if jail != nil { try Jail.detachMounts() }
        let engine: SwitchEngine
        do {
            engine = try SwitchEngine(ageingSeconds: ageing)
        } catch {
            throw ValidationError("cannot start the switch: \(error)")
        }
        if let u = uplink {
            let name = String(u.dropFirst(4))
            do {
                let tap = try TapDevice(name: name)
                _ = try engine.addUplink("uplink", tap: tap)
            } catch {
                throw ValidationError("--uplink \(u): \(error)")
            }
        }
        let loop = try EventLoop()
        let signals = try SignalFD(signals: [SIGTERM, SIGINT, SIGHUP])
        let set = PortSet(engine: engine)
        let server: ControlServer<SwitchControl.Command>
        do {
            server = try ControlServer(path: control, loop: loop) { (c) throws(ControlError) in try NetControl.handle(c, ports: set) }
        } catch {
            throw ValidationError("cannot listen on \(control): \(error)")
        }
        // The TAP is open and the control socket listens: the rest of its
        // life needs neither the host's files nor root's powers (capabilities
        // are per thread, so before the switch's threads start).
        try jail?.enter()
        do {
            try engine.start()
        } catch {
            throw ValidationError("cannot start the switch: \(error)")
        }
        for p in ports {
            let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
            do {
                try set.add(parts[0], socket: parts[1])
            } catch {
                throw ValidationError("--port \(p): \(error)")
            }
        }
        _ = try loop.register(signals.fd) { _ in
            _ = signals.next()
            loop.stop()
        }
        if !noSeccomp {
            SandboxTestHook.install()
            try NetBackendPolicy.process.install(allThreads: true)
        }
        try loop.run()
        server.close()
        set.removeAll()
        engine.stop()
    }
}

/// The control socket's commands (`SwitchControl`, shared with apusd).
enum NetControl {
    static func handle(_ command: SwitchControl.Command, ports: PortSet) throws(ControlError) -> any ControlReply {
        switch command {
        case .addPort(let name, let socket):
            do {
                try ports.add(name, socket: socket)
            } catch {
                throw .refused("\(error)")
            }
            return Acknowledged()
        case .removePort(let name):
            guard ports.remove(name) else { throw .refused("no port '\(name)'") }
            return Acknowledged()
        case .portStats(let name):
            guard let c = ports.engine.counters(name) else { throw .refused("no port '\(name)'") }
            var r = SwitchControl.PortStats()
            r.port = name
            r.rxBytes = c.rxBytes; r.rxPackets = c.rxPackets; r.rxErrors = c.rxErrors; r.rxDrops = c.rxDrops
            r.txBytes = c.txBytes; r.txPackets = c.txPackets; r.txErrors = c.txErrors; r.txDrops = c.txDrops
            return r
        case .ports:
            return SwitchControl.Ports(names: ports.engine.portNames)
        case .forwardingTable:
            return SwitchControl.ForwardingTable(entries: ports.engine.forwardingTable().map { .init(mac: $0.mac, port: $0.port, ageSeconds: $0.ageSeconds) })
        }
    }
}

NetBackendCommand.main()
