// Helpers shared by Apus's test targets: temporary directories, files,
// child processes, and where the built binaries and guest images live.
import Foundation

public struct TestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A fresh directory under /tmp, removed when the value is deinitialized.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String
    public init(prefix: String = "apus-test", parent: String = "/tmp") throws {
        let template = "\(parent)/\(prefix)-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let p = mkdtemp(&bytes) else { throw TestError("mkdtemp failed") }
        path = String(cString: p)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

public func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

public func readFile(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

public func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// Runs a program to completion, returning its status and combined output.
public func runProcess(_ executable: String, _ arguments: [String], directory: String? = nil,
                       environment: [String: String]? = nil, input: [UInt8]? = nil,
                       timeout: TimeInterval = 120) throws -> (status: Int32, output: String) {
    let child = try SpawnedChild(executable, arguments, environment: environment, directory: directory,
                                 stdinFromPipe: input != nil)
    let collector = OutputCollector(FileHandle(fileDescriptor: child.outputReader, closeOnDealloc: true))
    if let input {
        child.write(input)
        child.closeInput()
    }
    guard let status = child.wait(timeout: timeout) else {
        child.killAndReap()
        throw TestError("\(executable) timed out after \(timeout)s; output:\n\(collector.finish(timeout: 2))")
    }
    return (status, collector.finish())
}

/// Collects a pipe's output on a background thread.
public final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private let handle: FileHandle
    private let done = DispatchSemaphore(value: 0)

    public init(_ handle: FileHandle) {
        self.handle = handle
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock(); data.append(chunk); lock.unlock()
            }
            done.signal()
        }
    }

    public var text: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits for EOF and returns everything.
    public func finish(timeout: TimeInterval = 10) -> String {
        _ = done.wait(timeout: .now() + timeout)
        return text
    }

    /// Waits until `needle` appears in the output.
    public func waitFor(_ needle: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if text.contains(needle) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return text.contains(needle)
    }
}

/// Absolute path of the package root (found from this file's location).
public let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The directory holding built products of the current configuration.
public let productsDirectory: String = {
    if let env = ProcessInfo.processInfo.environment["APUS_BIN_DIR"] { return env }
    // The test bundle sits next to the executables.
    let bundle = Bundle.main.bundleURL.deletingLastPathComponent()
    if FileManager.default.fileExists(atPath: bundle.appendingPathComponent("apus-hv").path) { return bundle.path }
    for config in ["debug", "release"] {
        let p = packageRoot + "/.build/\(config)"
        if FileManager.default.fileExists(atPath: p + "/apus-hv") { return p }
    }
    return packageRoot + "/.build/debug"
}()

/// Path of a built executable.
public func product(_ name: String) -> String { productsDirectory + "/" + name }

/// Guest images made by Deploy/guest-image (APUS_GUEST_DIR or .build/guest).
public let guestDirectory: String = ProcessInfo.processInfo.environment["APUS_GUEST_DIR"] ?? packageRoot + "/.build/guest"

/// Whether Deploy/guest-image has produced its outputs.
public var guestImagesAvailable: Bool {
    ["vmlinuz", "initramfs.cpio.gz", "stub.bzImage"].allSatisfy { fileExists(guestDirectory + "/" + $0) }
}

/// Whether /dev/kvm can be opened at all (stub-kernel tests).
public var kvmAvailable: Bool { access("/dev/kvm", R_OK | W_OK) == 0 }

/// Whether this host's KVM boots Linux (hardware VMX/SVM: a real host, or
/// inside Deploy/kvm-box). Software-assisted KVMs such as kvm_pvm run only
/// tiny guests.
public var kvmBootsLinux: Bool {
    if ProcessInfo.processInfo.environment["APUS_KVM_BOOTS_LINUX"] == "0" { return false }
    guard kvmAvailable else { return false }
    let fm = FileManager.default
    return fm.fileExists(atPath: "/sys/module/kvm_intel") || fm.fileExists(atPath: "/sys/module/kvm_amd")
}

/// The first iasl on PATH (acpica-tools), if any.
public func iaslPath() -> String? {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/iasl") {
        return dir + "/iasl"
    }
    return nil
}

/// Whether TAP devices can be made here: root, iproute2, and /dev/net/tun
/// (loading the tun module first when the node is missing, as in the box).
public var tapAvailable: Bool {
    guard getuid() == 0, ipTool != nil else { return false }
    if !fileExists("/dev/net/tun") { _ = try? runProcess("/sbin/modprobe", ["tun"]) }
    return fileExists("/dev/net/tun")
}

/// iproute2's ip, if installed.
public var ipTool: String? { ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { fileExists($0) } }

/// A network namespace for a test (deleted on deinit): the host's side of
/// an uplink lives here, so tests never touch the machine's own network.
public final class NetworkNamespace {
    public let name: String
    private let ip: String

    public init(_ name: String) throws {
        guard let ip = ipTool else { throw TestError("iproute2's ip is not installed") }
        let r = try runProcess(ip, ["netns", "add", name])
        guard r.status == 0 else { throw TestError("ip netns add \(name): \(r.output)") }
        self.ip = ip
        self.name = name
    }

    /// Moves interface `ifname` (a TAP device) in here, gives it `address`
    /// (CIDR) and brings it up.
    public func adopt(_ ifname: String, address: String) throws {
        for args in [["link", "set", ifname, "netns", name], ["-n", name, "addr", "add", address, "dev", ifname], ["-n", name, "link", "set", ifname, "up"]] {
            let r = try runProcess(ip, args)
            guard r.status == 0 else { throw TestError("ip \(args.joined(separator: " ")): \(r.output)") }
        }
    }

    /// Runs `command` inside the namespace: (exit status, output).
    @discardableResult
    public func run(_ command: [String], timeout: TimeInterval = 60) throws -> (status: Int32, output: String) {
        try runProcess(ip, ["netns", "exec", name] + command, timeout: timeout)
    }

    /// Runs `command` inside the namespace; it must succeed. Returns its output.
    @discardableResult
    public func ok(_ command: String..., timeout: TimeInterval = 60) throws -> String {
        let r = try run(command, timeout: timeout)
        guard r.status == 0 else { throw TestError("in \(name): \(command.joined(separator: " ")) failed (\(r.status)): \(r.output)") }
        return r.output
    }

    /// A veth pair: `inside` here, `peer` in namespace `other` (nil: apusd's
    /// namespace `other` by name as well), both up.
    public func veth(_ inside: String, peer: String, in other: NetworkNamespace) throws {
        for args in [["link", "add", inside, "netns", name, "type", "veth", "peer", "name", peer, "netns", other.name],
                     ["-n", name, "link", "set", inside, "up"], ["-n", other.name, "link", "set", peer, "up"]] {
            let r = try runProcess(ip, args)
            guard r.status == 0 else { throw TestError("ip \(args.joined(separator: " ")): \(r.output)") }
        }
    }

    /// `ip` inside the namespace (`ip -n NAME ARGS`), which must succeed.
    @discardableResult
    public func ip(_ args: String...) throws -> String {
        let r = try runProcess(ip, ["-n", name] + args)
        guard r.status == 0 else { throw TestError("ip -n \(name) \(args.joined(separator: " ")): \(r.output)") }
        return r.output
    }

    deinit {
        // Whatever still runs in here (a test's servers, apusd's children) goes first.
        let pids = (try? runProcess(ip, ["netns", "pids", name]).output) ?? ""
        for p in pids.split(separator: "\n") { if let pid = Int32(p) { kill(pid, SIGKILL) } }
        _ = try? runProcess(ip, ["netns", "delete", name])
    }
}

/// "The outside" of a network namespace `host`: a namespace it routes to
/// by default (host 10.99.0.1, outside 10.99.0.2) with a TCP server on port
/// 8080 that answers `PEER ADDRESS` (who it saw calling: after NAT, 10.99.0.1).
public final class OutsideNetwork {
    public let namespace: NetworkNamespace
    public let server: ChildProcess
    public static let address = "10.99.0.2", hostAddress = "10.99.0.1", port = 8080

    public init(of host: NetworkNamespace, name: String) throws {
        namespace = try NetworkNamespace(name)
        try namespace.veth("wan0", peer: "up0", in: host)
        try namespace.ip("addr", "add", Self.address + "/24", "dev", "wan0")
        try host.ip("addr", "add", Self.hostAddress + "/24", "dev", "up0")
        try host.ip("route", "add", "default", "via", Self.address)
        server = try ChildProcess(ipTool ?? "/usr/sbin/ip", ["netns", "exec", namespace.name, "/usr/bin/python3", "-c", """
            import socket
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", \(Self.port))); s.listen(4)
            print("LISTENING", flush=True)
            while True:
                c, a = s.accept(); c.sendall(("PEER " + a[0] + "\\n").encode()); c.close()
            """])
        guard server.waitFor("LISTENING", timeout: 30) else { throw TestError("the outside's server did not start: \(server.output)") }
    }
}

/// ansible-playbook of the Ansible that Deploy/install-deps puts in
/// .build/tools/ansible (PyPI's, whose community.libvirt has get_interfaces).
public var ansiblePlaybook: String? {
    let p = packageRoot + "/.build/tools/ansible/bin/ansible-playbook"
    return FileManager.default.isExecutableFile(atPath: p) ? p : nil
}

/// Runs blocking work (a synchronous client of an in-process server) on a
/// thread of its own, so it does not hold one of Swift concurrency's few
/// cooperative threads while the server it waits for needs one: on a
/// two-core machine running suites in parallel, that starved the server
/// until the client's receive timeout.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (k: CheckedContinuation<T, any Error>) in
        let t = Thread {
            do { k.resume(returning: try body()) } catch { k.resume(throwing: error) }
        }
        t.stackSize = 8 << 20
        t.start()
    }
}

/// The processes whose command line matches `pattern` (pgrep -f).
public func processIDs(matching pattern: String) -> [Int32] {
    ((try? runProcess("/usr/bin/pgrep", ["-f", pattern]).output) ?? "").split(separator: "\n").compactMap { Int32($0) }
}
