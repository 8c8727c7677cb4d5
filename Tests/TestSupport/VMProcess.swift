import ApusControl
import Foundation

/// A child process (apus-hv, a backend, apusd...) with its output collected
/// and its stdin writable: for tests that boot a guest and talk to it.
public final class ChildProcess: @unchecked Sendable {
    private let child: SpawnedChild
    private let collector: OutputCollector
    public let command: String

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                stdinFromPipe: Bool = true, directory: String? = nil) throws {
        child = try SpawnedChild(executable, arguments, environment: environment, directory: directory,
                                 stdinFromPipe: stdinFromPipe)
        command = ([executable] + arguments).joined(separator: " ")
        collector = OutputCollector(FileHandle(fileDescriptor: child.outputReader, closeOnDealloc: true))
    }

    /// Everything printed so far (stdout and stderr).
    public var output: String { collector.text }

    /// The output split into lines (serial consoles end lines with CR LF).
    public var lines: [String] { splitLines(output) }

    /// Waits until `needle` shows up in the output.
    @discardableResult
    public func waitFor(_ needle: String, timeout: TimeInterval = 30) -> Bool {
        collector.waitFor(needle, timeout: timeout)
    }

    /// Writes to the child's stdin.
    public func send(_ text: String) { child.write(Array(text.utf8)) }

    /// Closes the child's stdin.
    public func closeInput() { child.closeInput() }

    /// Waits for exit; nil on timeout (the process is then killed). A
    /// death by signal N reads as 128+N.
    public func waitForExit(timeout: TimeInterval = 30) -> Int32? {
        guard let status = child.wait(timeout: timeout) else {
            child.killAndReap()
            return nil
        }
        _ = collector.finish(timeout: 5)
        return status
    }

    /// Sends a signal.
    public func signal(_ s: Int32) { kill(child.pid, s) }

    public var pid: Int32 { child.pid }
    public var isRunning: Bool { child.isRunning }

    deinit { child.killAndReap() }
}

/// A typed control call (apus-hv, apus-blkback, apus-netback), through the
/// same client apusd uses; waits up to `timeout` for the socket to appear.
public func control<Reply: ControlReply>(_ path: String, _ call: ControlCall<Reply>, timeout: TimeInterval = 10) throws -> Reply {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        do {
            return try ControlClient.shared.callBlocking(path, call, timeoutMilliseconds: UInt64(timeout * 1000))
        } catch {
            guard case .unreachable = error, Date() < deadline else { throw error }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}

/// Sends one raw line to a control socket and returns the reply line (for
/// tests of the wire itself; everything else uses ``control(_:_:timeout:)``).
public func controlCommand(_ socketPath: String, _ line: String, timeout: TimeInterval = 10) throws -> String {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket failed") }
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(socketPath.utf8)
    withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: bytes); p[bytes.count] = 0 }
    let deadline = Date().addingTimeInterval(timeout)
    var connected = false
    while Date() < deadline {
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r == 0 { connected = true; break }
        Thread.sleep(forTimeInterval: 0.02)
    }
    guard connected else { throw TestError("cannot connect to \(socketPath)") }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let msg = Array((line + "\n").utf8)
    _ = msg.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var reply: [UInt8] = []
    var byte: UInt8 = 0
    while read(fd, &byte, 1) == 1 {
        if byte == UInt8(ascii: "\n") { break }
        reply.append(byte)
    }
    return String(decoding: reply, as: UTF8.self)
}

/// Waits until a path exists.
public func waitForPath(_ path: String, timeout: TimeInterval = 10) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if FileManager.default.fileExists(atPath: path) { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    return false
}

/// A connected Unix stream socket client that collects what it receives.
public final class SocketClient: @unchecked Sendable {
    let fd: Int32
    private let lock = NSLock()
    private var data: [UInt8] = []

    public init(path: String) throws {
        let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        fd = sock
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: bytes); p[bytes.count] = 0 }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else { close(sock); throw TestError("connect \(path) failed") }
        let fd = self.fd
        Thread.detachNewThread { [weak self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &buf, buf.count)
                if n <= 0 { break }
                guard let self else { break }
                self.lock.lock(); self.data += buf[0..<n]; self.lock.unlock()
            }
        }
    }

    public var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }

    public func send(_ s: String) { _ = s.withCString { write(fd, $0, strlen($0)) } }

    public func waitFor(_ needle: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if text.contains(needle) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    deinit { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}

/// Splits text on LF, dropping CRs (a serial console sends CR LF).
public func splitLines(_ text: String) -> [String] {
    text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map {
        String(String.UnicodeScalarView($0.filter { $0 != "\r" }))
    }
}

/// Whether this process runs inside Deploy/kvm-box.
public var insideKVMBox: Bool { ProcessInfo.processInfo.environment["APUS_IN_KVM_BOX"] == "1" }

/// How long a guest inside Deploy/kvm-box may take to reach its init
/// marker before its boot counts as wedged (a normal boot takes 15-40 s).
public let boxBootMarkerTimeout: TimeInterval = 150

/// Boots a guest with `start`. Inside Deploy/kvm-box (QEMU-TCG emulating
/// SVM), a nested guest occasionally never reaches its init: it
/// triple-faults early, or all its vCPUs halt for good waiting for a timer
/// the emulation lost. Such a boot is retried once, with a note on stderr,
/// since nothing the test asked for has happened yet. Anywhere else, or
/// once init has started, what the guest does stands.
public func bootedGuest(marker: String = "APUS-INIT: ready", _ start: () throws -> ChildProcess) throws -> ChildProcess {
    let vm = try start()
    guard insideKVMBox else { return vm }
    let deadline = Date().addingTimeInterval(boxBootMarkerTimeout)
    while Date() < deadline, vm.isRunning, !vm.output.contains(marker) { Thread.sleep(forTimeInterval: 0.2) }
    if vm.output.contains(marker) { return vm }
    FileHandle.standardError.write(Data("note: a nested guest did not reach init under emulation; booting once more:\n\(vm.output.suffix(2000))\n".utf8))
    vm.signal(SIGKILL)
    _ = vm.waitForExit(timeout: 10)
    return try start()
}

/// Boots a guest with `start` (see `bootedGuest`) and waits for it to exit.
public func bootToExit(timeout: TimeInterval, _ start: () throws -> ChildProcess) throws -> (status: Int32?, output: String) {
    let vm = try bootedGuest(start)
    let status = vm.waitForExit(timeout: timeout)
    return (status, vm.output)
}
