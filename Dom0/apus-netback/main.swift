// apus-netback: Dom0's network backend. Serves guest NICs over
// vhost-user-net, one socket per port, and switches frames among them with
// a learning L2 switch (as Xen's netback + dom0's bridge).
import ArgumentParser
import ApusSys
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
    }

    func run() throws {
        BackendLog.program = "apus-netback"
        Signals.ignoreBrokenPipe()
        let engine: SwitchEngine
        do {
            engine = try SwitchEngine(ageingSeconds: ageing)
            try engine.start()
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
        let set = PortSet(engine: engine)
        for p in ports {
            let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
            do {
                try set.add(parts[0], socket: parts[1])
            } catch {
                throw ValidationError("--port \(p): \(error)")
            }
        }
        let loop = try EventLoop()
        let signals = try SignalFD(signals: [SIGTERM, SIGINT, SIGHUP])
        let server: LineServer
        do {
            server = try LineServer(path: control, loop: loop) { line in NetControl.handle(line, ports: set) }
        } catch {
            throw ValidationError("cannot listen on \(control): \(error)")
        }
        _ = try loop.register(signals.fd) { _ in
            _ = signals.next()
            loop.stop()
        }
        try loop.run()
        server.close()
        set.removeAll()
        engine.stop()
    }
}

/// The control socket's commands.
enum NetControl {
    static func handle(_ line: String, ports: PortSet) -> String {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        func failure(_ s: String) -> String { "{\"ok\":false,\"error\":\"\(jsonEscape(s))\"}" }
        switch (words.first ?? "", words.count) {
        case ("add-port", 3):
            do {
                try ports.add(words[1], socket: words[2])
                return "{\"ok\":true}"
            } catch {
                return failure("\(error)")
            }
        case ("remove-port", 2):
            return ports.remove(words[1]) ? "{\"ok\":true}" : failure("no port '\(words[1])'")
        case ("port-stats", 2):
            guard let c = ports.engine.counters(words[1]) else { return failure("no port '\(words[1])'") }
            return c.json(name: jsonEscape(words[1]))
        case ("ports", 1):
            return "{\"ok\":true,\"ports\":[" + ports.engine.portNames.map { "\"\(jsonEscape($0))\"" }.joined(separator: ",") + "]}"
        case ("fdb", 1):
            let entries = ports.engine.forwardingTable().map { "{\"mac\":\"\($0.mac)\",\"port\":\"\(jsonEscape($0.port))\",\"age\":\($0.ageSeconds)}" }
            return "{\"ok\":true,\"fdb\":[" + entries.joined(separator: ",") + "]}"
        default:
            return failure("unknown command: \(String(line.prefix(64))) (add-port NAME SOCKET, remove-port NAME, port-stats NAME, ports, fdb)")
        }
    }
}

NetBackendCommand.main()
