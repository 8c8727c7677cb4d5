import ApusSys

/// libvirt domain states (virDomainState) and the reasons Apus reports.
public enum DomainState: Int32, Sendable {
    case noState = 0, running = 1, blocked = 2, paused = 3, shutdown = 4, shutoff = 5, crashed = 6, pmSuspended = 7
}

public enum StateReason {
    public static let runningBooted: Int32 = 1, runningRestored: Int32 = 3, runningUnpaused: Int32 = 5
    public static let pausedUser: Int32 = 1, pausedSave: Int32 = 3, pausedStartingUp: Int32 = 11
    public static let shutoffSaved: Int32 = 5
    public static let shutoffUnknown: Int32 = 0, shutoffShutdown: Int32 = 1, shutoffDestroyed: Int32 = 2
    public static let shutoffCrashed: Int32 = 3, shutoffFailed: Int32 = 6, shutoffDaemon: Int32 = 8
    public static let crashedPanicked: Int32 = 1
    /// A snapshot was reverted to: running, paused, shut off "from snapshot".
    public static let runningFromSnapshot: Int32 = 4, pausedFromSnapshot: Int32 = 7, shutoffFromSnapshot: Int32 = 7
}

/// Lifecycle event numbers (virDomainEventType) and details.
public enum LifecycleEvent {
    public static let defined: Int32 = 0, undefined: Int32 = 1, started: Int32 = 2, suspended: Int32 = 3
    public static let resumed: Int32 = 4, stopped: Int32 = 5, shutdown: Int32 = 6, crashed: Int32 = 8
    /// Details: started restored, suspended restored, stopped saved.
    public static let startedRestored: Int32 = 2, suspendedRestored: Int32 = 4, stoppedSaved: Int32 = 4
    /// Details: started, suspended, stopped by a snapshot's revert.
    public static let startedFromSnapshot: Int32 = 3, suspendedFromSnapshot: Int32 = 5, stoppedFromSnapshot: Int32 = 6
}

/// A domain event as the RPC layer delivers it.
public struct DomainEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case lifecycle(event: Int32, detail: Int32)
        case reboot
        /// A disk's I/O failed or its backend died: its source, its alias
        /// (virtio-disk0), what was done (VIR_DOMAIN_EVENT_IO_ERROR_NONE 0,
        /// _PAUSE 1, _REPORT 2) and why, in words.
        case ioError(source: String, alias: String, action: Int32, reason: String)
    }
    public let name: String
    public let uuid: DomainUUID
    /// The domain's id when the event was emitted (-1 if inactive).
    public let id: Int32
    public let kind: Kind
}

/// Domain events' fan-out.
public typealias EventBus = Broadcast<DomainEvent>

/// Fans events out to subscribers (one per client registration).
public final class Broadcast<Event: Sendable>: @unchecked Sendable {
    // SAFETY (Sendable): guarded by `lock`.
    private let lock = ConditionLock()
    private var subscribers: [UInt64: @Sendable (Event) -> Void] = [:]
    private var next: UInt64 = 1

    public init() {}

    public func subscribe(_ handler: @escaping @Sendable (Event) -> Void) -> UInt64 {
        lock.withLock {
            let id = next
            next += 1
            subscribers[id] = handler
            return id
        }
    }

    public func unsubscribe(_ id: UInt64) { lock.withLock { _ = subscribers.removeValue(forKey: id) } }

    public func publish(_ event: Event) {
        let handlers = lock.withLock { Array(subscribers.values) }
        for h in handlers { h(event) }
    }
}

extension OptionSet where Element == Self {
    /// One group of a virConnectListAll* filter (active/inactive,
    /// persistent/transient...): passes when neither bit is set, or the bit
    /// matching `isFirst` is. Groups are AND-ed.
    func admits(_ first: Self, _ second: Self, _ isFirst: Bool) -> Bool {
        let bits = intersection(first.union(second))
        return bits.isEmpty || (isFirst ? bits.contains(first) : bits.contains(second))
    }
}
