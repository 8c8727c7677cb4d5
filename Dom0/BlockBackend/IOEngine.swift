import ApusSys
import GuestMemory
import IOURing

/// How a queue worker performs data I/O: io_uring when the kernel allows
/// it, otherwise synchronous positioned I/O on the worker thread. Both move
/// data directly between the image and guest memory.
protocol BlockIOEngine: AnyObject {
    /// Signalled when completions are ready (nil: completions are immediate).
    var completionEvent: EventFD? { get }
    /// How many requests may be in flight.
    var depth: Int { get }
    func transfer(write: Bool, slot: Int, fd: FileDescriptor, memory: GuestMemory, segments: [IOSegment], offset: UInt64, tag: UInt64) throws(Errno)
    func dataSync(fd: FileDescriptor, tag: UInt64) throws(Errno)
    func submit() throws(Errno)
    func reap() -> [IOURing.Completion]
    /// Whether completions are waiting, without a system call.
    var hasCompletions: Bool { get }
}

final class URingEngine: BlockIOEngine {
    let ring: IOURing
    init(depth: Int) throws(SystemCallError) { ring = try IOURing(entries: UInt32(depth)) }
    var completionEvent: EventFD? { ring.completions }
    var depth: Int { Int(ring.entries) }

    func transfer(write: Bool, slot: Int, fd: FileDescriptor, memory: GuestMemory, segments: [IOSegment], offset: UInt64, tag: UInt64) throws(Errno) {
        guard segments.count <= IOURing.maxSegments else { throw .invalidArgument }
        var host: [IOURing.Segment] = []
        host.reserveCapacity(segments.count)
        for s in segments {
            do {
                host.append(IOURing.Segment(address: try memory.hostAddress(of: s.address, length: Int(s.length)), length: Int(s.length)))
            } catch {
                throw .badAddress
            }
        }
        // Large copies go to io_uring's workers so they spread over cores;
        // small ones complete inline at submission, with no thread hop.
        let bytes = segments.reduce(0) { $0 + Int($1.length) }
        try ring.queue(write: write, slot: UInt32(slot), fd: fd, segments: host, offset: offset, tag: tag,
                       async: bytes >= Self.asyncThreshold)
    }

    /// Transfers at least this large run on io_uring's worker threads.
    static let asyncThreshold = 64 << 10
    var hasCompletions: Bool { ring.hasCompletions }

    func dataSync(fd: FileDescriptor, tag: UInt64) throws(Errno) { try ring.queueDataSync(fd: fd, tag: tag) }
    func submit() throws(Errno) { try ring.submit() }
    func reap() -> [IOURing.Completion] {
        ring.completions.drain()
        return ring.reap(max: depth)
    }
}

/// Synchronous fallback: does the I/O at once (``BlockQueue/transferNow``).
final class SyncEngine: BlockIOEngine {
    private var done: [IOURing.Completion] = []
    let depth: Int
    init(depth: Int) { self.depth = depth }
    var completionEvent: EventFD? { nil }

    func transfer(write: Bool, slot: Int, fd: FileDescriptor, memory: GuestMemory, segments: [IOSegment], offset: UInt64, tag: UInt64) throws(Errno) {
        done.append(IOURing.Completion(tag: tag, result: BlockQueue.transferNow(write: write, memory: memory, fd: fd, offset: offset, segments: segments)))
    }

    func dataSync(fd: FileDescriptor, tag: UInt64) throws(Errno) {
        do {
            try fd.dataSync()
            done.append(IOURing.Completion(tag: tag, result: 0))
        } catch {
            done.append(IOURing.Completion(tag: tag, result: -error.rawValue))
        }
    }

    func submit() throws(Errno) {}
    var hasCompletions: Bool { !done.isEmpty }
    func reap() -> [IOURing.Completion] {
        defer { done.removeAll(keepingCapacity: true) }
        return done
    }
}
