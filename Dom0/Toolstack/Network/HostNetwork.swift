import ApusSys

/// What virtual networks change on the host: bridges and their addresses
/// (through iproute2's `ip`), the firewall (nftables' `nft`), IPv4
/// forwarding. Commands run as child processes the caller awaits, so the
/// toolstack's executor never blocks on them.
public enum HostNetwork {
    /// How long one `ip` or `nft` command may take.
    static let commandTimeout: Duration = .seconds(20)

    /// A program from Debian's packages, looked up where Debian puts it.
    public static func program(_ name: String) -> String? {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where FileSystem.exists(dir + "/" + name) {
            return dir + "/" + name
        }
        return nil
    }

    /// Runs `name args` to completion; its output (stdout and stderr) is
    /// returned on success and is the error's text otherwise.
    @discardableResult
    public static func run(_ name: String, _ args: [String], scratch: String) async throws(ToolstackError) -> String {
        guard let path = program(name) else {
            throw .internalError("\(name) is not installed (virtual networks need Debian's \(name == "nft" ? "nftables" : name == "dnsmasq" ? "dnsmasq-base" : "iproute2"))")
        }
        let outputPath = scratch + "/.\(name)-\(UInt64.random(in: 0...UInt64.max)).out"
        let out: FileDescriptor
        do {
            out = try FileDescriptor.open(outputPath, [.writeOnly, .create, .truncate], mode: 0o600)
        } catch {
            throw .internalError("cannot create \(outputPath): \(error)")
        }
        defer { FileSystem.remove(outputPath) }
        let pid: Int32
        do {
            pid = try ProcessControl.spawnCommand(path, args, stdout: out, stderr: out)
        } catch {
            out.close()
            throw .internalError("cannot run \(path): \(error)")
        }
        out.close()
        let clock = ContinuousClock()
        let deadline = clock.now + commandTimeout
        var status: Int32?
        var pause = Duration.microseconds(200)
        while true {
            status = ProcessControl.exitStatus(ifEnded: pid)
            if status != nil || clock.now >= deadline { break }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(10))
        }
        let text = (ProcessControl.readText(outputPath) ?? "").trimmingWhitespace
        guard let status else {
            ProcessControl.signal(pid, 9)
            while ProcessControl.exitStatus(ifEnded: pid) == nil { try? await Task.sleep(for: .milliseconds(1)) }
            throw ToolstackError(.operationTimeout, "Timed out during operation: \(name) \(args.joined(separator: " "))")
        }
        guard status == 0 else {
            throw .failed("\(name) \(args.joined(separator: " ")) failed (exit \(status)): \(text)")
        }
        return text
    }

    // MARK: interfaces

    public static func interfaceExists(_ name: String) -> Bool { FileSystem.exists("/sys/class/net/\(name)") }
    public static func isBridge(_ name: String) -> Bool { FileSystem.exists("/sys/class/net/\(name)/bridge") }

    /// Makes bridge `name` with the network's MAC, STP, delay, MTU and IPv4
    /// and IPv6 addresses, and brings it up. With IPv6 addresses the bridge
    /// takes no router advertisements or autoconfigured addresses of its own
    /// (it is the router); without, IPv6 is off on it (as libvirt sets it).
    static func createBridge(_ d: NetworkDefinition, name: String, scratch: String) async throws(ToolstackError) {
        var add = ["link", "add", "name", name]
        if let mac = d.mac { add += ["address", mac] }
        if let mtu = d.mtu { add += ["mtu", String(mtu)] }
        add += ["type", "bridge", "stp_state", d.stp ? "1" : "0", "forward_delay", String(d.delay * 100)]
        try await run("ip", add, scratch: scratch)
        do {
            for ip in d.ips {
                try await run("ip", ["-4", "address", "add", "\(ip.address)/\(ip.prefix)", "broadcast", ip.subnet.broadcast.description, "dev", name],
                              scratch: scratch)
            }
            try setSysctl("net/ipv6/conf/\(name)/disable_ipv6", d.ipv6.isEmpty ? "1" : "0", optional: d.ipv6.isEmpty)
            if !d.ipv6.isEmpty {
                try setSysctl("net/ipv6/conf/\(name)/accept_ra", "0")
                try setSysctl("net/ipv6/conf/\(name)/autoconf", "0")
            }
            for ip in d.ipv6 {
                try await run("ip", ["-6", "address", "add", "\(ip.address)/\(ip.prefix)", "dev", name, "nodad"], scratch: scratch)
            }
            try await run("ip", ["link", "set", "dev", name, "up"], scratch: scratch)
        } catch {
            _ = try? await run("ip", ["link", "del", "dev", name], scratch: scratch)
            throw error
        }
    }

    static func deleteBridge(_ name: String, scratch: String) async {
        guard isBridge(name) else { return }
        _ = try? await run("ip", ["link", "del", "dev", name], scratch: scratch)
    }

    /// Joins `port` (a switch's uplink TAP) to `bridge` and brings it up.
    public static func join(_ port: String, to bridge: String, scratch: String) async throws(ToolstackError) {
        try await run("ip", ["link", "set", "dev", port, "master", bridge, "up"], scratch: scratch)
    }

    // MARK: routes

    /// The host's IPv4 routes (/proc/net/route of apusd's network namespace):
    /// interface and destination subnet.
    public static func routes() -> [(interface: String, subnet: IPv4Subnet)] {
        parseRoutes(ProcessControl.readText("/proc/net/route") ?? "")
    }

    static func parseRoutes(_ text: String) -> [(interface: String, subnet: IPv4Subnet)] {
        var out: [(String, IPv4Subnet)] = []
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            guard f.count >= 8, let dest = UInt32(f[1], radix: 16), let mask = UInt32(f[7], radix: 16) else { continue }
            let m = IPv4Address(mask.byteSwapped)
            guard let prefix = m.prefixLength, prefix > 0 else { continue }
            out.append((String(f[0]), IPv4Subnet(IPv4Address(dest.byteSwapped), prefix: prefix)))
        }
        return out
    }

    // MARK: firewall and forwarding

    /// Loads `script` (``NetworkFirewall/script(_:)``) with `nft -f`, keeping it as `path`.
    static func loadFirewall(_ script: String, path: String, scratch: String) async throws(ToolstackError) {
        do {
            try ProcessControl.writeFileAtomically(path, script, mode: 0o600)
        } catch {
            throw .internalError("cannot write \(path): \(error)")
        }
        try await run("nft", ["-f", path], scratch: scratch)
    }

    /// Turns on IPv4 forwarding, and IPv6 forwarding when `ipv6` (as libvirt
    /// does for nat and route networks).
    static func enableForwarding(ipv6: Bool) throws(ToolstackError) {
        try setSysctl("net/ipv4/ip_forward", "1")
        if ipv6 { try setSysctl("net/ipv6/conf/all/forwarding", "1") }
    }

    /// Writes `value` to /proc/sys/`key` unless it holds it already. An
    /// `optional` key that does not exist (IPv6 off in the kernel) is skipped.
    static func setSysctl(_ key: String, _ value: String, optional: Bool = false) throws(ToolstackError) {
        let path = "/proc/sys/" + key, name = key.split(separator: "/").joined(separator: ".")
        guard let now = ProcessControl.readText(path) else {
            if optional { return }
            throw .failed("cannot set \(name): \(path) is missing")
        }
        if now.trimmingWhitespace == value { return }
        do {
            let fd = try FileDescriptor.open(path, .writeOnly)
            defer { fd.close() }
            try fd.writeAll(value + "\n")
        } catch {
            throw .failed("cannot set \(name) (\(path)): \(error)")
        }
    }
}
