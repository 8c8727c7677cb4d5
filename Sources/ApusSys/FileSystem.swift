#if canImport(Glibc)
import Glibc
#endif

/// Paths on the host's filesystem: what the toolstack asks of files it
/// keeps (definitions, markers, runtime directories), without Foundation.
public enum FileSystem {
    /// Whether something exists at `path` (a dangling symlink does not).
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Whether `path` is a file this process may execute.
    public static func isExecutable(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    /// The size of a regular file, or nil.
    public static func size(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_size)
    }

    /// Removes `path`: a file, a symlink or a socket, or a directory with
    /// everything in it (symlinks are removed, never followed).
    public static func remove(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for entry in ProcessControl.directoryEntries(path) { remove(path + "/" + entry) }
            rmdir(path)
        } else {
            Glibc.unlink(path)
        }
    }

    /// Creates an empty file (or leaves an existing one); false on failure.
    @discardableResult
    public static func touch(_ path: String, mode: mode_t = 0o644) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// Where a symbolic link points.
    public static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The directory part of `path` ("/a/b/c" → "/a/b", "c" → ".").
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// What `stat` (not following a final symlink when `follow` is false) says of a path.
    public struct Status: Sendable, Equatable {
        public enum Kind: Sendable, Equatable { case file, directory, blockDevice, symbolicLink, other }
        public var kind: Kind
        public var size: Int64
        /// Bytes allocated on disk (st_blocks × 512).
        public var allocated: Int64
        public var mode: UInt32
        public var owner: UInt32
        public var group: UInt32
        /// Seconds and nanoseconds since the epoch.
        public var accessed: (Int, Int)
        public var modified: (Int, Int)
        public var changed: (Int, Int)
        public var device: UInt64
        public var inode: UInt64
        /// The device a block or character special file stands for (st_rdev).
        public var specialDevice: UInt64 = 0
        /// `specialDevice`'s major and minor numbers (glibc's encoding).
        public var specialDeviceNumbers: (major: UInt32, minor: UInt32) {
            let d = specialDevice
            return (UInt32(truncatingIfNeeded: ((d >> 8) & 0xFFF) | ((d >> 32) & ~UInt64(0xFFF))),
                    UInt32(truncatingIfNeeded: (d & 0xFF) | ((d >> 12) & ~UInt64(0xFF))))
        }

        public static func == (a: Status, b: Status) -> Bool {
            a.kind == b.kind && a.size == b.size && a.allocated == b.allocated && a.mode == b.mode && a.owner == b.owner
                && a.group == b.group && a.device == b.device && a.inode == b.inode
        }
    }

    public static func status(_ path: String, follow: Bool = true) -> Status? {
        var st = stat()
        guard (follow ? stat(path, &st) : lstat(path, &st)) == 0 else { return nil }
        let kind: Status.Kind
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        case S_IFBLK: kind = .blockDevice
        case S_IFLNK: kind = .symbolicLink
        default: kind = .other
        }
        return Status(kind: kind, size: Int64(st.st_size), allocated: Int64(st.st_blocks) * 512, mode: UInt32(st.st_mode & 0o7777),
                      owner: st.st_uid, group: st.st_gid, accessed: (st.st_atim.tv_sec, st.st_atim.tv_nsec),
                      modified: (st.st_mtim.tv_sec, st.st_mtim.tv_nsec), changed: (st.st_ctim.tv_sec, st.st_ctim.tv_nsec),
                      device: UInt64(st.st_dev), inode: UInt64(st.st_ino), specialDevice: UInt64(st.st_rdev))
    }

    /// A file system's size and free space (statvfs), in bytes.
    public static func space(_ path: String) -> (capacity: UInt64, free: UInt64, available: UInt64)? {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return nil }
        let unit = UInt64(s.f_frsize)
        return (UInt64(s.f_blocks) * unit, UInt64(s.f_bfree) * unit, UInt64(s.f_bavail) * unit)
    }

    /// Renames `from` to `to` (atomically replacing `to`).
    public static func rename(_ from: String, _ to: String) throws(Errno) {
        guard Glibc.rename(from, to) == 0 else { throw Errno.current }
    }

    /// Removes a file (not a directory).
    public static func unlink(_ path: String) throws(Errno) {
        guard Glibc.unlink(path) == 0 else { throw Errno.current }
    }

    /// Makes a symbolic link at `path` pointing to `target`.
    public static func symlink(target: String, at path: String) throws(Errno) {
        guard Glibc.symlink(target, path) == 0 else { throw Errno.current }
    }

    /// Makes a new directory `prefix` + six random characters in `parent`,
    /// mode 0700 (mkdtemp); returns its path.
    public static func makeTemporaryDirectory(in parent: String, prefix: String) throws(Errno) -> String {
        var template = Array((parent + "/" + prefix + "XXXXXX").utf8CString)
        // SAFETY: `template` is a NUL-terminated buffer that mkdtemp rewrites
        // in place (the X's only) and that outlives the call.
        let made = template.withUnsafeMutableBufferPointer { b -> Bool in
            guard let base = b.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        guard made else { throw Errno.current }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Removes an empty directory.
    public static func removeDirectory(_ path: String) throws(Errno) {
        guard rmdir(path) == 0 else { throw Errno.current }
    }

    /// Sets permission bits; owner and group when given (chown; -1 keeps one).
    public static func setPermissions(_ path: String, mode: UInt32?, owner: UInt32? = nil, group: UInt32? = nil) throws(Errno) {
        if let mode { guard chmod(path, mode_t(mode)) == 0 else { throw Errno.current } }
        if owner != nil || group != nil {
            guard chown(path, owner ?? UInt32.max, group ?? UInt32.max) == 0 else { throw Errno.current }
        }
    }

    /// The canonical absolute form of an existing path (symlinks resolved).
    public static func canonical(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// The ID of the group called `name` (/etc/group, NSS), or nil.
    public static func groupID(named name: String) -> UInt32? {
        var entry = group()
        var found: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        // SAFETY: getgrnam_r fills `entry`, whose strings point into `buffer`;
        // both outlive the call and only the numeric gr_gid is read after it.
        let rc = buffer.withUnsafeMutableBufferPointer { b in getgrnam_r(name, &entry, b.baseAddress, b.count, &found) }
        guard rc == 0, found != nil else { return nil }
        return entry.gr_gid
    }

    /// Host CPUs online (sysconf).
    public static var onlineCPUs: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
}

extension String {
    /// Without leading and trailing spaces, tabs and line ends.
    public var trimmingWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
