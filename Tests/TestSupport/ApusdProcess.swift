import Foundation

/// An `apusd --root TMP` for a test, driven with the real virsh.
public final class ApusdProcess: @unchecked Sendable {
    public let root: TemporaryDirectory
    public private(set) var daemon: ChildProcess?
    public var rootPath: String { root.path }
    public var socket: String { root.path + "/run/libvirt/virtapusd-sock" }
    public var readOnlySocket: String { root.path + "/run/libvirt/virtapusd-sock-ro" }
    public var uri: String { "apus+unix:///system?socket=" + socket }
    public var readOnlyURI: String { "apus+unix:///system?socket=" + readOnlySocket }

    /// The network namespace apusd runs in (its bridges, rules and dnsmasq live there), if not the test's.
    public let namespace: NetworkNamespace?

    /// `config`: the text of ROOT/etc/apus/apusd.conf, if any.
    public init(config: String? = nil, namespace: NetworkNamespace? = nil) throws {
        self.namespace = namespace
        root = try TemporaryDirectory(prefix: "apusd")
        // A network's dnsmasq drops to an unprivileged user that must reach its files under the root (as under /run).
        if namespace != nil { chmod(root.path, 0o755) }
        // A test's images are under /tmp and the build directory; a config that names allowed_paths itself keeps its own.
        var text = config ?? ""
        if !text.contains("allowed_paths") { text = Self.testAllowedPaths + "\n" + text }
        try FileManager.default.createDirectory(atPath: root.path + "/etc/apus", withIntermediateDirectories: true)
        try writeFile(root.path + "/etc/apus/apusd.conf", Array(text.utf8))
        try start()
    }

    /// apusd.conf's allowed_paths for tests: temporary directories and the build's images.
    public static let testAllowedPaths = "allowed_paths = [ \"/tmp\", \"\(packageRoot)/.build\", \"\(guestDirectory)\" ]"

    /// Starts (or restarts) the daemon and waits for its sockets.
    public func start(extra: [String] = []) throws {
        try? FileManager.default.removeItem(atPath: socket)
        let d = try namespace.map { ns in
            try ChildProcess(ipTool ?? "/usr/sbin/ip", ["netns", "exec", ns.name, product("apusd"), "--root", root.path] + extra, stdinFromPipe: false)
        } ?? ChildProcess(product("apusd"), ["--root", root.path] + extra, stdinFromPipe: false)
        daemon = d
        guard d.waitFor("listening on", timeout: 30) else { throw TestError("apusd did not start:\n\(d.output)") }
    }

    /// Stops the daemon with SIGTERM (domains keep running).
    @discardableResult
    public func stop() -> Int32? {
        guard let d = daemon else { return nil }
        d.signal(SIGTERM)
        daemon = nil
        return d.waitForExit(timeout: 20)
    }

    /// Runs virsh against this daemon: (exit status, output).
    @discardableResult
    public func virsh(_ args: [String], readOnly: Bool = false, quiet: Bool = true, timeout: TimeInterval = 60) throws -> (status: Int32, output: String) {
        try runProcess("/usr/bin/virsh", (quiet ? ["-q"] : []) + ["-c", readOnly ? readOnlyURI : uri] + args, timeout: timeout)
    }

    public func virsh(_ args: String...) throws -> (status: Int32, output: String) { try virsh(args) }

    /// virsh that must succeed; returns its output.
    public func ok(_ args: String..., file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try virsh(args)
        guard r.status == 0 else { throw TestError("virsh \(args.joined(separator: " ")) failed (\(r.status)): \(r.output)") }
        return r.output
    }

    /// virsh that must succeed, without -q: its informational messages
    /// ("Domain 'x' started") are printed too.
    public func okVerbose(_ args: String...) throws -> String {
        let r = try virsh(args, quiet: false)
        guard r.status == 0 else { throw TestError("virsh \(args.joined(separator: " ")) failed (\(r.status)): \(r.output)") }
        return r.output
    }

    /// Runs the apus CLI against this daemon: (exit status, output).
    @discardableResult
    public func apus(_ args: String..., timeout: TimeInterval = 60) throws -> (status: Int32, output: String) {
        try runProcess(product("apus"), ["-c", uri] + args, timeout: timeout)
    }

    /// The apus CLI, which must succeed; returns its output.
    public func apusOK(_ args: String..., timeout: TimeInterval = 60) throws -> String {
        let r = try runProcess(product("apus"), ["-c", uri] + args, timeout: timeout)
        guard r.status == 0 else { throw TestError("apus \(args.joined(separator: " ")) failed (\(r.status)): \(r.output)") }
        return r.output
    }

    /// `virsh console` in a pseudo-terminal (virsh needs one, as `script`
    /// provides): writes `input` (each after its delay), returns what was
    /// shown; "\u{1d}" (Ctrl-]) ends the session.
    public func console(_ domain: String, _ input: [(delay: Double, text: String)], timeout: TimeInterval = 30) throws -> String {
        var script = ""
        for (delay, text) in input {
            let escaped = text.unicodeScalars.map { String(format: "\\%03o", $0.value) }.joined()
            script += "sleep \(delay); printf '\(escaped)'; "
        }
        let command = "(\(script)) | /usr/bin/script -qfec \"/usr/bin/virsh -c '\(uri)' console \(domain)\" /dev/null"
        return try runProcess("/bin/sh", ["-c", command], timeout: timeout).output
    }

    /// A domain XML with the stub kernel.
    /// Defines a stub domain with a raw disk (`ROOT/NAME.img`, `diskSize`)
    /// on vda and a NIC on the apus0 switch; returns the disk's path.
    @discardableResult
    /// `diskFormat` qcow2: the disk is a qcow2 image qemu-img makes.
    public func defineStubWithDevices(_ name: String, vcpu: String = "<vcpu>2</vcpu>", extra: String = "", diskSize: String = "64M",
                                      mac: String = "52:54:00:77:00:01", diskFormat: String = "raw") throws -> String {
        let disk = rootPath + "/\(name).img"
        if diskFormat == "qcow2" {
            _ = try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", disk, diskSize])
        } else {
            _ = try runProcess("/usr/bin/truncate", ["-s", diskSize, disk])
        }
        let xml = """
            <domain type='kvm'>
              <name>\(name)</name>
              <memory unit='MiB'>64</memory>
              \(vcpu)
              <os><type arch='x86_64'>hvm</type><kernel>\(guestDirectory)/stub.bzImage</kernel></os>
              \(extra)
              <devices>
                <disk type='file' device='disk'><driver name='qemu' type='\(diskFormat)'/><source file='\(disk)'/><target dev='vda' bus='virtio'/></disk>
                <interface type='bridge'><mac address='\(mac)'/><source bridge='apus0'/><model type='virtio'/></interface>
                <serial type='pty'/><console type='pty'/>
              </devices>
            </domain>
            """
        _ = try ok("define", try file("\(name).xml", xml))
        return disk
    }

    public func stubDomainXML(_ name: String, uuid: String? = nil, vcpus: Int = 1, extra: String = "") -> String {
        """
        <domain type='kvm'>
          <name>\(name)</name>
          \(uuid.map { "<uuid>\($0)</uuid>" } ?? "")
          <memory unit='MiB'>64</memory>
          <vcpu>\(vcpus)</vcpu>
          <os><type arch='x86_64'>hvm</type><kernel>\(guestDirectory)/stub.bzImage</kernel></os>
          \(extra)
          <devices><serial type='pty'/><console type='pty'/></devices>
        </domain>
        """
    }

    /// Writes `xml` to a file under the root and returns its path.
    public func file(_ name: String, _ text: String) throws -> String {
        let path = root.path + "/" + name
        try writeFile(path, Array(text.utf8))
        return path
    }

    /// Polls virsh domstate until it prints `state` (e.g. "shut off").
    public func waitForState(_ domain: String, _ state: String, timeout: TimeInterval = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let r = try? virsh(["domstate", domain]), r.output.trimmingCharacters(in: .whitespacesAndNewlines) == state { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    /// Destroys everything still running under this root and stops apusd.
    deinit {
        if daemon != nil, let list = try? virsh(["list", "--name"]) {
            for name in list.output.split(separator: "\n") where name != "Domain-0" {
                _ = try? virsh(["destroy", String(name)])
            }
        }
        stop()
        // Anything left (apusd killed mid-test): kill by runtime records' processes.
        let pids = (try? runProcess("/usr/bin/pgrep", ["-f", root.path]).output) ?? ""
        for p in pids.split(separator: "\n") { if let pid = Int32(p) { kill(pid, SIGKILL) } }
    }
}

/// The rows of a virsh table with their words joined by single spaces
/// (virsh -q sizes columns to their contents, so tests compare words).
public func virshRows(_ s: String) -> [String] {
    s.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }.filter { !$0.isEmpty }
}
