import CLibvirt
import Foundation

/// A domain lifecycle event as libvirt delivers it: the domain's name, the
/// event (virDomainEventType: 0 defined, 1 undefined, 2 started, 3 suspended,
/// 4 resumed, 5 stopped, 6 shutdown, ...) and its detail.
public struct LifecycleEvent: Sendable, Equatable {
    public let domain: String
    public let event: Int32
    public let detail: Int32
}

/// libvirt's default event loop on a background thread. Must be started
/// before the connection that registers callbacks is opened.
public enum LibvirtEventLoop {
    private static let started: Bool = {
        guard virEventRegisterDefaultImpl() == 0 else { return false }
        let t = Thread {
            while true { _ = virEventRunDefaultImpl() }
        }
        t.name = "libvirt-events"
        t.start()
        return true
    }()

    /// Starts the loop once per process; false if libvirt refused.
    @discardableResult
    public static func start() -> Bool { started }
}

/// Receives lifecycle events for every domain until deinitialized.
public final class LifecycleEventSubscription: @unchecked Sendable {
    private let connection: LibvirtConnection
    private var callbackID: Int32 = -1
    private let box: Unmanaged<Handler>

    final class Handler {
        let body: @Sendable (LifecycleEvent) -> Void
        init(_ body: @escaping @Sendable (LifecycleEvent) -> Void) { self.body = body }
    }

    /// Subscribes on `connection` (opened after `LibvirtEventLoop.start()`).
    public init(_ connection: LibvirtConnection, _ body: @escaping @Sendable (LifecycleEvent) -> Void) throws(LibvirtError) {
        self.connection = connection
        box = Unmanaged.passRetained(Handler(body))
        let callback: @convention(c) (virConnectPtr?, virDomainPtr?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = {
            _, dom, event, detail, opaque in
            guard let opaque, let dom else { return 0 }
            let handler = Unmanaged<Handler>.fromOpaque(opaque).takeUnretainedValue()
            let name = virDomainGetName(dom).map { String(cString: $0) } ?? ""
            handler.body(LifecycleEvent(domain: name, event: event, detail: detail))
            return 0
        }
        let generic = unsafeBitCast(callback, to: virConnectDomainEventGenericCallback.self)
        let id = virConnectDomainEventRegisterAny(connection.pointer, nil, Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue),
                                                  generic, box.toOpaque(), nil)
        guard id >= 0 else {
            box.release()
            throw LibvirtError.last("virConnectDomainEventRegisterAny")
        }
        callbackID = id
    }

    deinit {
        if callbackID >= 0 { virConnectDomainEventDeregisterAny(connection.pointer, callbackID) }
        box.release()
    }
}
