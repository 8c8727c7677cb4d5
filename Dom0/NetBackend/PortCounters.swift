/// Per-port counters, from the switch's side: `rx` is what the switch
/// received from the port (the guest transmitted), `tx` what it sent to it.
public struct PortCounters: Sendable, Equatable {
    public var rxBytes: UInt64 = 0
    public var rxPackets: UInt64 = 0
    /// Frames from the port the switch could not take (malformed, oversized).
    public var rxErrors: UInt64 = 0
    public var rxDrops: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var txPackets: UInt64 = 0
    /// Frames for the port that could not be written (bad receive buffers).
    public var txErrors: UInt64 = 0
    /// Frames for the port dropped: not running, or no receive buffers and the backlog full.
    public var txDrops: UInt64 = 0

    public init() {}
}
