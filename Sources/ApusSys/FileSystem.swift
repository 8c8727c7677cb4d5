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
            unlink(path)
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
