import ApusControl
import Synchronization

/// Per-device counters, as `virsh domblkstat` reports them
/// (VIR_DOMAIN_BLOCK_STATS_*): operations, bytes and total nanoseconds.
public final class BlockStats: Sendable {
    public let readRequests = Atomic<UInt64>(0)
    public let readBytes = Atomic<UInt64>(0)
    public let readNanoseconds = Atomic<UInt64>(0)
    public let writeRequests = Atomic<UInt64>(0)
    public let writeBytes = Atomic<UInt64>(0)
    public let writeNanoseconds = Atomic<UInt64>(0)
    public let flushRequests = Atomic<UInt64>(0)
    public let flushNanoseconds = Atomic<UInt64>(0)
    public let discardRequests = Atomic<UInt64>(0)
    public let writeZeroesRequests = Atomic<UInt64>(0)
    /// Requests answered IOERR.
    public let errors = Atomic<UInt64>(0)
    /// Requests answered UNSUPP.
    public let unsupported = Atomic<UInt64>(0)
    /// Malformed descriptor chains (returned with no status).
    public let malformedChains = Atomic<UInt64>(0)
    /// Large reads from an image in memory copied by the queue's thread and its helper together.
    public let parallelReads = Atomic<UInt64>(0)

    public init() {}

    /// The counters now, as the control socket reports them.
    public func snapshot() -> BlockBackendControl.Stats {
        var s = BlockBackendControl.Stats()
        s.readRequests = readRequests.load(ordering: .relaxed)
        s.readBytes = readBytes.load(ordering: .relaxed)
        s.readNanoseconds = readNanoseconds.load(ordering: .relaxed)
        s.writeRequests = writeRequests.load(ordering: .relaxed)
        s.writeBytes = writeBytes.load(ordering: .relaxed)
        s.writeNanoseconds = writeNanoseconds.load(ordering: .relaxed)
        s.flushRequests = flushRequests.load(ordering: .relaxed)
        s.flushNanoseconds = flushNanoseconds.load(ordering: .relaxed)
        s.discardRequests = discardRequests.load(ordering: .relaxed)
        s.writeZeroesRequests = writeZeroesRequests.load(ordering: .relaxed)
        s.errors = errors.load(ordering: .relaxed)
        s.unsupported = unsupported.load(ordering: .relaxed)
        s.malformedChains = malformedChains.load(ordering: .relaxed)
        s.parallelReads = parallelReads.load(ordering: .relaxed)
        return s
    }
}
