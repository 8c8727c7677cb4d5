import Foundation
import CApusSys

/// A child started with posix_spawn: stdout and stderr on one pipe, stdin
/// from a pipe or /dev/null, a clean signal mask and default dispositions
/// (the test runner blocks signals its children must not inherit). Waiting
/// is waitpid polling with a deadline, so no wait in a test can hang the run.
final class SpawnedChild: @unchecked Sendable {
    let pid: pid_t
    private var stdinWriter: Int32?
    let outputReader: Int32
    private let lock = NSLock()
    private var exitStatus: Int32?

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
         directory: String? = nil, stdinFromPipe: Bool) throws {
        var outFDs: [Int32] = [-1, -1]
        var inFDs: [Int32] = [-1, -1]
        guard apus_pipe_cloexec(&outFDs) == 0 else { throw TestError("pipe: \(String(cString: strerror(errno)))") }
        if stdinFromPipe {
            guard apus_pipe_cloexec(&inFDs) == 0 else {
                close(outFDs[0]); close(outFDs[1])
                throw TestError("pipe: \(String(cString: strerror(errno)))")
            }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdinFromPipe {
            posix_spawn_file_actions_adddup2(&actions, inFDs[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, outFDs[1], 2)
        if let directory { apus_spawn_actions_addchdir(&actions, directory) }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        // Its own process group, so a timeout can kill what it started too.
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let env = (environment.map { ProcessInfo.processInfo.environment.merging($0) { $1 } }
                   ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = [executable] + arguments
        var child: pid_t = 0
        let rc = withCStrings(argv) { cargv in
            withCStrings(env) { cenv in posix_spawnp(&child, executable, &actions, &attr, cargv, cenv) }
        }
        close(outFDs[1])
        if stdinFromPipe { close(inFDs[0]) }
        guard rc == 0 else {
            close(outFDs[0])
            if stdinFromPipe { close(inFDs[1]) }
            throw TestError("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        pid = child
        outputReader = outFDs[0]
        stdinWriter = stdinFromPipe ? inFDs[1] : nil
    }

    /// The exit status (128+N for a signal), or nil while it runs.
    func poll() -> Int32? {
        lock.lock(); defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            let sig = status & 0x7f
            exitStatus = sig == 0 ? (status >> 8) & 0xff : 128 + sig
        } else if r < 0 && errno == ECHILD {
            exitStatus = 255 // someone else reaped it; treat it as gone
        }
        return exitStatus
    }

    var isRunning: Bool { poll() == nil }

    /// Waits up to `timeout` seconds; nil if it is still running.
    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let s = poll() { return s }
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// SIGKILLs the child's process group and reaps it (bounded).
    func killAndReap() {
        if poll() == nil {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            _ = wait(timeout: 10)
        }
    }

    /// Writes all of `bytes` to the child's stdin (false if it is closed).
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        lock.lock(); let fd = stdinWriter; lock.unlock()
        guard let fd else { return false }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    func closeInput() {
        lock.lock(); defer { lock.unlock() }
        if let fd = stdinWriter { close(fd); stdinWriter = nil }
    }

    deinit {
        killAndReap()
        closeInput()
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
