#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// Spawning and watching processes for the Dom0 supervisor.
public enum ProcessControl {
    /// Namespaces a child is started in, new and its own (clone(2) flags).
    public struct Namespaces: OptionSet, Sendable {
        public let rawValue: UInt
        public init(rawValue: UInt) { self.rawValue = rawValue }
        /// It is process 1 of its own PID namespace: it sees no other process.
        public static let pid = Namespaces(rawValue: APUS_CLONE_NEWPID)
        /// No System V IPC objects or POSIX message queues shared with the host.
        public static let ipc = Namespaces(rawValue: APUS_CLONE_NEWIPC)
        /// A copy of the host's mounts that the child can change alone.
        public static let mount = Namespaces(rawValue: APUS_CLONE_NEWNS)
        /// No network interfaces but a loopback that is down, and no reach
        /// to the host's abstract Unix sockets (Unix sockets bound to a path
        /// still connect: they are files).
        public static let network = Namespaces(rawValue: APUS_CLONE_NEWNET)
        /// A host name and domain name of its own.
        public static let uts = Namespaces(rawValue: APUS_CLONE_NEWUTS)
    }

    /// Starts `path` with `arguments` in a new session, so it outlives the
    /// spawner and is not hit by signals sent to its process group; in new
    /// `namespaces` when given, and in the cgroup whose `cgroup.procs` is
    /// open as `cgroup` (placed there before the program starts).
    public static func spawn(_ path: String, _ arguments: [String], environment: [String]? = nil,
                             stdin: FileDescriptor? = nil, stdout: FileDescriptor? = nil, stderr: FileDescriptor? = nil,
                             namespaces: Namespaces = [], cgroup: FileDescriptor? = nil) throws(SystemCallError) -> Int32 {
        let argv = ([path] + arguments).map { strdup($0) }
        let envStrings = environment ?? currentEnvironment()
        let envp = envStrings.map { strdup($0) }
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let pid = (argv + [nil]).withUnsafeBufferPointer { a in
            (envp + [nil]).withUnsafeBufferPointer { e in
                namespaces.isEmpty && cgroup == nil
                    ? apus_spawn(path, a.baseAddress, e.baseAddress, stdin?.rawValue ?? -1, stdout?.rawValue ?? -1, stderr?.rawValue ?? -1)
                    : apus_spawn_in_namespaces(path, a.baseAddress, e.baseAddress, stdin?.rawValue ?? -1, stdout?.rawValue ?? -1,
                                               stderr?.rawValue ?? -1, namespaces.rawValue, cgroup?.rawValue ?? -1)
            }
        }
        guard pid > 0 else { throw SystemCallError("spawn \(path)", Errno(rawValue: -pid)) }
        _ = spawned.withLock { children.insert(pid) }
        return pid
    }

    /// Starts a short-lived helper (`ip`, `nft`) whose exit status the
    /// caller collects with ``exitStatus(ifEnded:)``: it is not one of the
    /// children ``reapChildren()`` reaps, so nothing else takes its status.
    public static func spawnCommand(_ path: String, _ arguments: [String], stdout: FileDescriptor?, stderr: FileDescriptor?) throws(SystemCallError) -> Int32 {
        let argv = ([path] + arguments).map { strdup($0) }
        let environment: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
        let envp = environment.map { strdup($0) }
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let pid = (argv + [nil]).withUnsafeBufferPointer { a in
            (envp + [nil]).withUnsafeBufferPointer { e in
                apus_spawn(path, a.baseAddress, e.baseAddress, -1, stdout?.rawValue ?? -1, stderr?.rawValue ?? -1)
            }
        }
        guard pid > 0 else { throw SystemCallError("spawn \(path)", Errno(rawValue: -pid)) }
        return pid
    }

    /// The exit status of child `pid` (or 128+signal) if it has ended; it is reaped.
    public static func exitStatus(ifEnded pid: Int32) -> Int32? {
        var s: Int32 = 0
        guard apus_reap_child(pid, &s) == pid else { return nil }
        return (s & 0x7F) == 0 ? (s >> 8) & 0xFF : 128 + (s & 0x7F)
    }

    /// Children started by `spawn` and not yet reaped. Only these are
    /// reaped: other code in the process (Foundation's Process, tests) owns
    /// its own children.
    nonisolated(unsafe) private static var children: Set<Int32> = []
    private static let spawned = ConditionLock()

    /// The current environment as KEY=VALUE strings.
    public static func currentEnvironment() -> [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            out.append(String(cString: entry))
            p += 1
        }
        return out
    }

    /// A descriptor that becomes readable when `pid` exits (any process, not
    /// only children: apusd uses it after a restart).
    public static func pidFD(_ pid: Int32) throws(SystemCallError) -> OwnedDescriptor {
        let fd = apus_pidfd_open(pid)
        guard fd >= 0 else { throw SystemCallError("pidfd_open \(pid)", Errno.current) }
        _ = apus_fcntl_int(fd, F_SETFD, FD_CLOEXEC)
        return OwnedDescriptor(FileDescriptor(rawValue: fd))
    }

    /// Whether this process runs as root (effective uid 0).
    public static var isRoot: Bool { geteuid() == 0 }

    /// Whether a process with this pid exists.
    public static func isAlive(_ pid: Int32) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }

    /// Sends a signal; false if the process is gone.
    @discardableResult
    public static func signal(_ pid: Int32, _ signal: Int32) -> Bool {
        pid > 0 && kill(pid, signal) == 0
    }

    /// Reaps exited children started by `spawn` (call periodically or when
    /// one exits); returns (pid, exit status or 128+signal).
    @discardableResult
    public static func reapChildren() -> [(pid: Int32, status: Int32)] {
        spawned.withLock {
            var out: [(Int32, Int32)] = []
            for pid in children {
                var s: Int32 = 0
                let r = apus_reap_child(pid, &s)
                if r == 0 { continue }
                children.remove(pid)
                if r == pid {
                    out.append((pid, (s & 0x7F) == 0 ? (s >> 8) & 0xFF : 128 + (s & 0x7F)))
                }
            }
            return out
        }
    }

    /// The system call a seccomp filter killed process `pid` for, from the
    /// kernel's audit record of the kill in its log (/dev/kmsg: type 1326,
    /// "... pid=PID ... sig=31 ... syscall=N ..."), if the log still holds one. Reads
    /// what the log has and stops (the descriptor is non-blocking).
    public static func seccompKill(of pid: Int32) -> Int32? {
        guard let fd = try? FileDescriptor.open("/dev/kmsg", [.readOnly, .nonBlocking]) else { return nil }
        defer { fd.close() }
        var found: Int32?
        // Each read is one record; the ring holds a bounded number of them.
        for _ in 0..<200_000 {
            let record: [UInt8]
            do {
                record = try fd.read(upToCount: 8192)
            } catch .brokenPipe {
                continue // a record was overwritten while reading; go on with the next
            } catch {
                break // EAGAIN: the end of the log
            }
            if record.isEmpty { break }
            let line = String(decoding: record, as: UTF8.self)
            // sig=31: a kill (SIGSYS), not a call that was made to fail.
            guard line.contains("type=1326"), line.contains(" pid=\(pid) "), line.contains(" sig=31 ") else { continue }
            for field in line.split(separator: " ") where field.hasPrefix("syscall=") {
                found = Int32(field.dropFirst(8))
            }
        }
        return found
    }

    /// The command line of a process (from /proc), for recognizing our own after a restart.
    public static func commandLine(_ pid: Int32) -> [String] {
        guard let fd = try? FileDescriptor.open("/proc/\(pid)/cmdline", .readOnly) else { return [] }
        defer { fd.close() }
        guard let bytes = try? fd.readAll(limit: 1 << 16) else { return [] }
        return bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
    }

    /// Reads a text file of at most `limit` bytes, or nil (a larger file is
    /// nil, never a truncated text that a parser might half accept). With
    /// `follow` false a symlink at `path` is not followed (nil).
    public static func readText(_ path: String, limit: Int = 1 << 20, follow: Bool = true) -> String? {
        guard let fd = try? FileDescriptor.open(path, follow ? .readOnly : .noFollow) else { return nil }
        defer { fd.close() }
        guard let bytes = try? fd.readAll(limit: limit + 1), bytes.count <= limit else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The largest state file apusd writes and reads back (a definition
    /// accepted over RPC is at most 4 MiB of XML; its stored form adds little).
    public static let stateFileLimit = 16 << 20

    /// Reads a small file (a /proc entry) with one 4 KiB buffer; nil if it
    /// cannot be read.
    public static func readSmallFile(_ path: String) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while out.count < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { b in Glibc.read(fd, b.baseAddress, b.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
            if n < buffer.count { break } // /proc hands out small files whole
        }
        return out
    }

    /// The names in a directory (without "." and ".."); empty if it cannot be read.
    public static func directoryEntries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            // SAFETY: readdir's entry is valid until the next readdir; d_name is NUL-terminated.
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    /// Writes a file atomically (temporary file + rename).
    public static func writeFileAtomically(_ path: String, _ contents: String, mode: mode_t = 0o644) throws(SystemCallError) {
        let tmp = path + ".tmp.\(getpid())"
        // A file (or a planted symlink) already at the temporary name is
        // removed, not written through: the new one is created exclusively.
        unlink(tmp)
        let fd = try FileDescriptor.open(tmp, [.writeOnly, .create, .exclusive], mode: mode)
        do {
            try fd.writeAll(contents)
            try fd.dataSync()
        } catch {
            fd.close()
            unlink(tmp)
            throw SystemCallError("write \(tmp)", error)
        }
        fd.close()
        guard rename(tmp, path) == 0 else {
            let e = Errno.current
            unlink(tmp)
            throw SystemCallError("rename \(path)", e)
        }
    }

    /// This host's name.
    /// Raises the soft limit on open descriptors to the hard limit (a daemon
    /// holds a few per running domain: console, pty, log, pidfd); returns it.
    @discardableResult
    public static func raiseDescriptorLimit() -> UInt64 {
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0 else { return 0 }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &r)
        }
        return UInt64(r.rlim_cur)
    }

    /// Resource limits a supervisor sets on a child (prlimit): soft and hard
    /// alike, so the child cannot raise them again.
    public struct Limits: Sendable, Equatable {
        /// Core file size (0: a crash never writes guest memory to disk).
        public var coreBytes: UInt64 = 0
        /// Open descriptors (at most the supervisor's own hard limit).
        public var openFiles: UInt64
        /// The largest file it may write (nil: unlimited).
        public var fileBytes: UInt64?
        public init(openFiles: UInt64, fileBytes: UInt64? = nil) {
            self.openFiles = openFiles
            self.fileBytes = fileBytes
        }
    }

    /// Applies `limits` to process `pid`.
    public static func setLimits(_ pid: Int32, _ limits: Limits) throws(SystemCallError) {
        func set(_ resource: __rlimit_resource, _ value: UInt64, _ name: String) throws(SystemCallError) {
            let rc = apus_prlimit(pid, Int32(resource.rawValue), value)
            guard rc == 0 else { throw SystemCallError("prlimit \(name) of \(pid)", Errno(rawValue: -rc)) }
        }
        try set(RLIMIT_CORE, limits.coreBytes, "RLIMIT_CORE")
        // Never above this process's own hard limit (raising it needs CAP_SYS_RESOURCE).
        var own = rlimit()
        let ceiling = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &own) == 0 ? UInt64(own.rlim_max) : limits.openFiles
        try set(RLIMIT_NOFILE, min(limits.openFiles, ceiling), "RLIMIT_NOFILE")
        if let f = limits.fileBytes { try set(RLIMIT_FSIZE, f, "RLIMIT_FSIZE") }
    }

    /// The page size (the unit of /proc/PID/statm).
    public static let pageSize: Int = sysconf(Int32(_SC_PAGESIZE))

    /// USER_HZ: the unit of /proc/stat's CPU times.
    public static func clockTicksPerSecond() -> Int { sysconf(Int32(_SC_CLK_TCK)) }

    public static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Creates a directory and its parents (mode for the ones created).
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemCallError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SystemCallError("mkdir \(current)", Errno.current)
            }
        }
    }
}

/// The value of an environment variable of this process, if set.
public func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}
