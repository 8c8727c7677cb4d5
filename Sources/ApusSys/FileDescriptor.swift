#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CApusSys

/// A raw file descriptor. It does not close itself: owners (``OwnedDescriptor``
/// and the typed wrappers built on it) decide its lifetime.
public struct FileDescriptor: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The kernel's descriptor number.
    public let rawValue: Int32

    /// Wraps a descriptor number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Standard input.
    public static let standardInput = FileDescriptor(rawValue: 0)
    /// Standard output.
    public static let standardOutput = FileDescriptor(rawValue: 1)
    /// Standard error.
    public static let standardError = FileDescriptor(rawValue: 2)

    public var description: String { "fd \(rawValue)" }

    /// Access modes and creation flags for ``open(_:_:mode:)``.
    public struct OpenOptions: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// Open for reading only.
        public static let readOnly = OpenOptions([])
        /// Open for writing only.
        public static let writeOnly = OpenOptions(rawValue: O_WRONLY)
        /// Open for reading and writing.
        public static let readWrite = OpenOptions(rawValue: O_RDWR)
        /// Create the file if it does not exist.
        public static let create = OpenOptions(rawValue: O_CREAT)
        /// Truncate the file to zero length.
        public static let truncate = OpenOptions(rawValue: O_TRUNC)
        /// Append on every write.
        public static let append = OpenOptions(rawValue: O_APPEND)
        /// Fail if the last component is a symlink (ELOOP) instead of following it.
        public static let noFollow = OpenOptions(rawValue: O_NOFOLLOW)
        /// Appending to a log apusd keeps in a directory of its own: created
        /// if missing, never through a symlink planted there.
        public static let log: OpenOptions = [.writeOnly, .create, .append, .noFollow]
        /// Fail if the file exists (with `create`).
        public static let exclusive = OpenOptions(rawValue: O_EXCL)
        /// Non-blocking I/O.
        public static let nonBlocking = OpenOptions(rawValue: O_NONBLOCK)
        /// Bypass the page cache.
        public static let direct = OpenOptions(rawValue: 0o40000)
        /// Do not make the file the controlling terminal.
        public static let noControllingTerminal = OpenOptions(rawValue: O_NOCTTY)
        /// Close on exec (always added by ``FileDescriptor/open(_:_:mode:)``).
        public static let closeOnExec = OpenOptions(rawValue: O_CLOEXEC)
    }

    /// Opens `path`; descriptors are always close-on-exec.
    public static func open(_ path: String, _ options: OpenOptions, mode: mode_t = 0o644) throws(SystemCallError) -> FileDescriptor {
        let flags = options.union(.closeOnExec).rawValue
        do {
            let fd = try retryOnInterrupt { Glibc.open(path, flags, mode) }
            return FileDescriptor(rawValue: fd)
        } catch {
            throw SystemCallError("open \(path)", error)
        }
    }

    /// Closes the descriptor, ignoring errors (there is nothing to do about them).
    public func close() {
        _ = Glibc.close(rawValue)
    }

    /// Reads up to `buffer.count` bytes; returns 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try retryOnInterrupt { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes up to `buffer.count` bytes; returns how many were written.
    public func write(_ buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try retryOnInterrupt { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads at a file offset.
    public func read(into buffer: UnsafeMutableRawBufferPointer, atOffset offset: Int64) throws(Errno) -> Int {
        try retryOnInterrupt { Glibc.pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Writes at a file offset.
    public func write(_ buffer: UnsafeRawBufferPointer, atOffset offset: Int64) throws(Errno) -> Int {
        try retryOnInterrupt { Glibc.pwrite(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Reads up to `count` bytes into a new array (shorter at end of file).
    public func read(upToCount count: Int) throws(Errno) -> [UInt8] {
        guard count > 0 else { return [] }
        var failure: Errno?
        let fd = rawValue
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            // SAFETY: read(2) writes at most `count` bytes into the buffer's
            // `count` bytes of capacity; only the bytes it wrote are counted
            // as initialized (none on failure).
            do throws(Errno) {
                initialized = try retryOnInterrupt { Glibc.read(fd, buffer.baseAddress, count) }
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Writes all of `bytes`, looping over short writes. Blocks on a
    /// blocking descriptor; throws `wouldBlock` on a non-blocking one that is full.
    public func writeAll(_ bytes: some Collection<UInt8>) throws(Errno) {
        let array = Array(bytes)
        var done = 0
        while done < array.count {
            let n = array.withUnsafeBytes { b in Glibc.write(rawValue, b.baseAddress! + done, b.count - done) }
            if n < 0 {
                let e = Errno.current
                if e == .interrupted { continue }
                throw e
            }
            done += n
        }
    }

    /// Writes a string as UTF-8.
    public func writeAll(_ string: String) throws(Errno) {
        try writeAll(Array(string.utf8))
    }

    /// Reads the whole file from offset 0 (for small files such as /proc entries).
    public func readAll(limit: Int = 64 << 20) throws(Errno) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < limit {
            let n = chunk.withUnsafeMutableBytes { b in Glibc.read(rawValue, b.baseAddress, b.count) }
            if n < 0 {
                let e = Errno.current
                if e == .interrupted { continue }
                throw e
            }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }

    /// The file's size in bytes (for block devices, the device size).
    public func size() throws(Errno) -> Int64 {
        var st = stat()
        guard fstat(rawValue, &st) == 0 else { throw Errno.current }
        if (st.st_mode & S_IFMT) == S_IFBLK {
            var bytes: UInt64 = 0
            // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
            let blkGetSize64: UInt = 0x8008_1272
            guard apus_ioctl_ptr(rawValue, blkGetSize64, &bytes) == 0 else { throw Errno.current }
            return Int64(bytes)
        }
        return Int64(st.st_size)
    }

    /// Size and on-disk usage: what `stat` says, with a block device's size
    /// from the device.
    public func usage() throws(Errno) -> (size: Int64, allocated: Int64, isBlockDevice: Bool) {
        var st = stat()
        guard fstat(rawValue, &st) == 0 else { throw Errno.current }
        let block = (st.st_mode & S_IFMT) == S_IFBLK
        let size = block ? try self.size() : Int64(st.st_size)
        return (size, block ? size : Int64(st.st_blocks) * 512, block)
    }

    /// Whether this is a block device.
    public func isBlockDevice() throws(Errno) -> Bool {
        var st = stat()
        guard fstat(rawValue, &st) == 0 else { throw Errno.current }
        return (st.st_mode & S_IFMT) == S_IFBLK
    }

    /// File seals (memfd): F_SEAL_SEAL 1, F_SEAL_SHRINK 2, F_SEAL_GROW 4.
    public struct Seals: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let seal = Seals(rawValue: 1), shrink = Seals(rawValue: 2), grow = Seals(rawValue: 4)
    }

    /// Adds seals (F_ADD_SEALS): a sealed size cannot change, so a peer
    /// that maps the file cannot be made to fault by shrinking it.
    public func addSeals(_ seals: Seals) throws(Errno) {
        let fAddSeals: Int32 = 1033
        guard apus_fcntl_int(rawValue, fAddSeals, seals.rawValue) >= 0 else { throw Errno.current }
    }

    /// The file's seals (F_GET_SEALS); empty for a file that cannot be sealed.
    public func seals() -> Seals {
        let fGetSeals: Int32 = 1034
        let v = apus_fcntl_int(rawValue, fGetSeals, 0)
        return v < 0 ? [] : Seals(rawValue: v)
    }

    /// Sets the file size.
    public func truncate(to size: Int64) throws(Errno) {
        _ = try retryOnInterrupt { ftruncate(rawValue, off_t(size)) }
    }

    /// Flushes file data (not metadata unless needed) to stable storage.
    public func dataSync() throws(Errno) {
        _ = try retryOnInterrupt { fdatasync(rawValue) }
    }

    /// Whether the file lives in memory (tmpfs or ramfs): I/O on it copies
    /// pages and never waits for a device, so it cannot block for long.
    public var isInMemory: Bool {
        let tmpfs = 0x0102_1994, ramfs = 0x8584_58f6
        let type = apus_fs_type(rawValue)
        return type == tmpfs || type == ramfs
    }

    /// Sets or clears O_NONBLOCK.
    public func setNonBlocking(_ on: Bool = true) throws(Errno) {
        let flags = apus_fcntl_int(rawValue, F_GETFL, 0)
        guard flags >= 0 else { throw Errno.current }
        let newFlags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        guard apus_fcntl_int(rawValue, F_SETFL, newFlags) >= 0 else { throw Errno.current }
    }

    /// Sets or clears FD_CLOEXEC.
    public func setCloseOnExec(_ on: Bool) throws(Errno) {
        let flags = apus_fcntl_int(rawValue, F_GETFD, 0)
        guard flags >= 0 else { throw Errno.current }
        let newFlags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC
        guard apus_fcntl_int(rawValue, F_SETFD, newFlags) >= 0 else { throw Errno.current }
    }

    /// Duplicates the descriptor (close-on-exec).
    public func duplicate() throws(Errno) -> FileDescriptor {
        let fd = apus_fcntl_int(rawValue, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw Errno.current }
        return FileDescriptor(rawValue: fd)
    }

    /// Whether the descriptor refers to a terminal.
    public var isTerminal: Bool { isatty(rawValue) == 1 }

    /// The next offset at or after `offset` that holds data (SEEK_DATA), or
    /// nil when only a hole follows up to the end of the file.
    public func nextData(from offset: Int64) throws(Errno) -> Int64? {
        let r = lseek(rawValue, off_t(offset), 3) // SEEK_DATA
        if r < 0 {
            if errno == ENXIO { return nil }
            throw Errno.current
        }
        return Int64(r)
    }

    /// The next hole at or after `offset` (SEEK_HOLE; the end of the file counts as one).
    public func nextHole(from offset: Int64) throws(Errno) -> Int64 {
        let r = lseek(rawValue, off_t(offset), 4) // SEEK_HOLE
        guard r >= 0 else { throw Errno.current }
        return Int64(r)
    }

    /// Punches a hole (discard) or zeroes a range with fallocate(2).
    public func fallocate(mode: Int32, offset: Int64, length: Int64) throws(Errno) {
        guard apus_fallocate(rawValue, mode, offset, length) == 0 else { throw Errno.current }
    }

    /// fallocate's mode bits (linux/falloc.h).
    public enum FallocateMode {
        public static let keepSize: Int32 = 0x01
        public static let punchHole: Int32 = 0x02
        public static let zeroRange: Int32 = 0x10
    }

    /// Frees `[offset, offset + length)`: it reads as zeroes, the file keeps its size.
    public func punchHole(offset: Int64, length: Int64) throws(Errno) {
        try fallocate(mode: FallocateMode.punchHole | FallocateMode.keepSize, offset: offset, length: length)
    }
}

/// A file descriptor that closes itself when the last reference goes away.
public final class OwnedDescriptor: @unchecked Sendable {
    // SAFETY (Sendable): the descriptor number is immutable; the kernel object
    // behind it is safe to use from any thread.
    /// The descriptor.
    public let fd: FileDescriptor

    /// Takes ownership of `fd`.
    public init(_ fd: FileDescriptor) { self.fd = fd }

    deinit { fd.close() }
}

extension FileDescriptor {
    /// A block-device ioctl taking a `uint64_t[2]` range (BLKDISCARD, BLKZEROOUT).
    public func ioctlRange(request: UInt, offset: UInt64, length: UInt64) throws(Errno) {
        var range: (UInt64, UInt64) = (offset, length)
        guard apus_ioctl_ptr(rawValue, request, &range) == 0 else { throw Errno.current }
    }
}

extension FileDescriptor {
    /// Writes all of `bytes` at a file offset (pwrite, looping over short writes).
    public func writeAll(_ bytes: some Collection<UInt8>, atOffset offset: Int64) throws(Errno) {
        let array = Array(bytes)
        var done = 0
        while done < array.count {
            let n = array.withUnsafeBytes { b in Glibc.pwrite(rawValue, b.baseAddress! + done, b.count - done, off_t(offset) + off_t(done)) }
            if n < 0 {
                let e = Errno.current
                if e == .interrupted { continue }
                throw e
            }
            done += n
        }
    }

    /// Reads exactly `count` bytes at a file offset (fewer only at end of file).
    public func read(count: Int, atOffset offset: Int64) throws(Errno) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { b in Glibc.pread(rawValue, b.baseAddress! + done, b.count - done, off_t(offset) + off_t(done)) }
            if n < 0 {
                let e = Errno.current
                if e == .interrupted { continue }
                throw e
            }
            if n == 0 { break }
            done += n
        }
        out.removeLast(count - done)
        return out
    }
}
