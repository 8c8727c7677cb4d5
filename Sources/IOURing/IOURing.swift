import ApusSys
import CURing

/// Asynchronous file I/O through io_uring (liburing): the block backend's
/// engine. Reads and writes go straight between the image and guest memory
/// (host addresses of checked guest ranges), completions signal an eventfd.
/// Not thread-safe: one ring per queue worker.
public final class IOURing: @unchecked Sendable {
    // SAFETY (Sendable): owned by one worker thread; the pointer is private.
    private let ring: OpaquePointer
    /// Submission slots; also the number of requests that may be in flight.
    public let entries: UInt32
    /// Signalled when completions are ready.
    public let completions: EventFD
    /// The most segments one read or write may have.
    public static var maxSegments: Int { Int(apus_uring_max_segments()) }

    public init(entries: UInt32) throws(SystemCallError) {
        var error: Int32 = 0
        guard let r = apus_uring_create(entries, &error) else {
            throw SystemCallError("io_uring_queue_init", Errno(rawValue: error))
        }
        ring = r
        self.entries = entries
        do {
            completions = try EventFD()
        } catch {
            apus_uring_destroy(r)
            throw error
        }
        let rc = apus_uring_register_eventfd(r, completions.fd.rawValue)
        guard rc == 0 else {
            apus_uring_destroy(r)
            throw SystemCallError("io_uring_register_eventfd", Errno(rawValue: -rc))
        }
    }

    /// An I/O segment: a host address (of checked guest memory) and a length.
    public struct Segment: Sendable {
        public var address: UInt
        public var length: Int
        public init(address: UInt, length: Int) { self.address = address; self.length = length }
    }

    /// Queues a read (`write == false`) or write of `segments` at `offset`.
    /// `slot` (below `entries`) owns the iovec storage until completion.
    /// With `async`, the transfer runs on io_uring's worker threads rather
    /// than inline at submission (large copies then use other cores).
    public func queue(write: Bool, slot: UInt32, fd: FileDescriptor, segments: [Segment], offset: UInt64, tag: UInt64, async: Bool = false) throws(Errno) {
        let segs = segments.map { apus_segment(base: UInt64($0.address), len: UInt64($0.length)) }
        let a: Int32 = async ? 1 : 0
        let rc = segs.withUnsafeBufferPointer { p in
            write ? apus_uring_writev(ring, slot, fd.rawValue, p.baseAddress, UInt32(p.count), offset, tag, a)
                  : apus_uring_readv(ring, slot, fd.rawValue, p.baseAddress, UInt32(p.count), offset, tag, a)
        }
        guard rc == 0 else { throw Errno(rawValue: -rc) }
    }

    /// Queues fdatasync.
    public func queueDataSync(fd: FileDescriptor, tag: UInt64) throws(Errno) {
        let rc = apus_uring_fdatasync(ring, fd.rawValue, tag)
        guard rc == 0 else { throw Errno(rawValue: -rc) }
    }

    /// Queues fallocate (punch hole, zero range).
    public func queueFallocate(fd: FileDescriptor, mode: Int32, offset: UInt64, length: UInt64, tag: UInt64) throws(Errno) {
        let rc = apus_uring_fallocate(ring, fd.rawValue, mode, offset, length, tag)
        guard rc == 0 else { throw Errno(rawValue: -rc) }
    }

    /// Submits everything queued.
    @discardableResult
    public func submit() throws(Errno) -> Int {
        let rc = apus_uring_submit(ring)
        guard rc >= 0 else { throw Errno(rawValue: -rc) }
        return Int(rc)
    }

    /// One completion: the tag given at submission and the result (bytes or -errno).
    public struct Completion: Sendable {
        public let tag: UInt64
        public let result: Int32
        public init(tag: UInt64, result: Int32) { self.tag = tag; self.result = result }
    }

    /// Whether completions are waiting (no system call).
    public var hasCompletions: Bool { apus_uring_ready(ring) > 0 }

    /// Takes the completions that are ready.
    public func reap(max: Int = 64) -> [Completion] {
        var tags = [UInt64](repeating: 0, count: max)
        var results = [Int32](repeating: 0, count: max)
        let n = apus_uring_reap(ring, &tags, &results, Int32(max))
        return (0..<Int(n)).map { Completion(tag: tags[$0], result: results[$0]) }
    }

    deinit { apus_uring_destroy(ring) }
}
