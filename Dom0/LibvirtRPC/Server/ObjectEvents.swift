import ApusSys
import Toolstack

/// A client's registrations for one kind of object event (storage pools,
/// networks): callback id → (event id, the object it is limited to), and
/// one subscription to the events' bus, made at the first registration and
/// ended with the connection.
final class ObjectEventRegistrations<Event: Sendable>: @unchecked Sendable {
    // SAFETY (Sendable): every mutable field is guarded by `lock`.
    private let lock = ConditionLock()
    private var callbacks: [Int32: (event: Int32, object: DomainUUID?)] = [:]
    private var subscription: (id: UInt64, bus: Broadcast<Event>)?
    private var closed = false

    /// Registers `callback`; the first registration subscribes `deliver` to `bus`.
    func register(_ callback: Int32, event: Int32, object: DomainUUID?, bus: Broadcast<Event>,
                  deliver: @escaping @Sendable (Event) -> Void) {
        let subscribe = lock.withLock { () -> Bool in
            guard !closed else { return false }
            callbacks[callback] = (event, object)
            return subscription == nil
        }
        guard subscribe else { return }
        let sub = bus.subscribe(deliver)
        let keep = lock.withLock { () -> Bool in
            guard subscription == nil && !closed else { return false }
            subscription = (sub, bus)
            return true
        }
        if !keep { bus.unsubscribe(sub) }
    }

    func deregister(_ callback: Int32) -> Bool {
        lock.withLock { callbacks.removeValue(forKey: callback) != nil }
    }

    /// The callbacks an `event` on object `uuid` goes to, in registration order.
    func targets(event: Int32, object uuid: DomainUUID) -> [Int32] {
        lock.withLock { callbacks.filter { $0.value.event == event && ($0.value.object == nil || $0.value.object == uuid) }.map(\.key).sorted() }
    }

    /// The connection closed: no more deliveries.
    func close() {
        let sub = lock.withLock { () -> (id: UInt64, bus: Broadcast<Event>)? in
            closed = true
            callbacks.removeAll()
            defer { subscription = nil }
            return subscription
        }
        if let sub { sub.bus.unsubscribe(sub.id) }
    }
}
