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

    public init() {}

    /// The counters as a JSON object (the control socket's `stats` reply).
    public func json() -> String {
        let fields: [(String, UInt64)] = [
            ("rd_req", readRequests.load(ordering: .relaxed)), ("rd_bytes", readBytes.load(ordering: .relaxed)),
            ("rd_total_ns", readNanoseconds.load(ordering: .relaxed)),
            ("wr_req", writeRequests.load(ordering: .relaxed)), ("wr_bytes", writeBytes.load(ordering: .relaxed)),
            ("wr_total_ns", writeNanoseconds.load(ordering: .relaxed)),
            ("flush_req", flushRequests.load(ordering: .relaxed)), ("flush_total_ns", flushNanoseconds.load(ordering: .relaxed)),
            ("discard_req", discardRequests.load(ordering: .relaxed)), ("write_zeroes_req", writeZeroesRequests.load(ordering: .relaxed)),
            ("errs", errors.load(ordering: .relaxed)), ("unsupported", unsupported.load(ordering: .relaxed)),
            ("malformed_chains", malformedChains.load(ordering: .relaxed)),
        ]
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }
}
