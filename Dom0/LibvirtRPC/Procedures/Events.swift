import Toolstack

/// Event registration (the callback API, and the legacy one of clients
/// that do not ask for REMOTE_EVENT_CALLBACK), and the messages events
/// travel in.
enum EventProcedures {
    static let all: [Procedure] = [
        .call(316, "virConnectDomainEventRegisterAny", .readOnly, EventCallbackRegisterArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            guard (0...EventID.last).contains(a.eventID) else { throw .invalidArgument("unsupported event ID \(a.eventID)") }
            var uuid: DomainUUID?
            if let filter = a.dom { uuid = try await call.manager.lookup(uuid: filter.uuid).uuid }
            return IntResult(call.client.registerEvent(a.eventID, domain: uuid))
        },
        .call(317, "virConnectDomainEventDeregisterAny", .readOnly, IntArgument.self, XDRVoid.self) { a, call throws(ToolstackError) in
            guard call.client.deregisterEvent(callback: a.value) else { throw .invalidArgument("callback \(a.value) not registered") }
            return XDRVoid()
        },
        .call(167, "virConnectDomainEventRegisterAny", .readOnly, IntArgument.self, XDRVoid.self) { a, call throws(ToolstackError) in
            guard (0...EventID.last).contains(a.value) else { throw .invalidArgument("unsupported event ID \(a.value)") }
            guard call.client.registerLegacyEvent(a.value) else { throw .failed("domain event \(a.value) already registered") }
            return XDRVoid()
        },
        .call(168, "virConnectDomainEventDeregisterAny", .readOnly, IntArgument.self, XDRVoid.self) { a, call throws(ToolstackError) in
            guard call.client.deregisterLegacyEvent(a.value) else { throw .failed("domain event \(a.value) not registered") }
            return XDRVoid()
        },
    ]
}

/// Domain event IDs (virDomainEventID).
enum EventID {
    static let lifecycle: Int32 = 0, reboot: Int32 = 1, ioError: Int32 = 4, ioErrorReason: Int32 = 6
    /// IDs 0...26 exist in libvirt 9.0; Apus accepts registrations for all
    /// of them and emits lifecycle, reboot and the two I/O error ones.
    static let last: Int32 = 26
}

/// Server-to-client messages (type MESSAGE): procedure numbers that are
/// never calls, for the legacy registration and for callbacks.
enum EventMessage {
    static let lifecycle: Int32 = 107, reboot: Int32 = 169, ioError: Int32 = 172, ioErrorReason: Int32 = 195
    static let callbackLifecycle: Int32 = 318, callbackReboot: Int32 = 319, callbackIOError: Int32 = 322, callbackIOErrorReason: Int32 = 324

    /// What one event is on the wire: each event ID it answers to, its
    /// legacy message, the callback message's procedure (that message is
    /// the callback's id followed by the legacy one).
    static func encodings(_ kind: DomainEvent.Kind, dom: RemoteDomain) -> [(id: Int32, legacy: Int32, callback: Int32, payload: [UInt8])] {
        switch kind {
        case .lifecycle(let event, let detail):
            return [(EventID.lifecycle, lifecycle, callbackLifecycle, LifecycleEventMessage(dom: dom, event: event, detail: detail).xdr)]
        case .reboot:
            return [(EventID.reboot, reboot, callbackReboot, RebootEventMessage(dom: dom).xdr)]
        case .ioError(let source, let alias, let action, let reason):
            let m = IOErrorEventMessage(dom: dom, srcPath: source, devAlias: alias, action: action)
            return [(EventID.ioError, ioError, callbackIOError, m.xdr),
                    (EventID.ioErrorReason, ioErrorReason, callbackIOErrorReason, IOErrorReasonEventMessage(error: m, reason: reason).xdr)]
        }
    }
}

/// `remote_domain_event_io_error_msg`
struct IOErrorEventMessage: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var srcPath = ""
    var devAlias = ""
    /// VIR_DOMAIN_EVENT_IO_ERROR_NONE 0, _PAUSE 1, _REPORT 2.
    var action: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&dom); try c.string(&srcPath); try c.string(&devAlias); try c.int(&action)
    }
}

/// `remote_domain_event_io_error_reason_msg`
struct IOErrorReasonEventMessage: XDRCodable, Equatable {
    var error = IOErrorEventMessage()
    var reason = ""
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&error); try c.string(&reason) }
}

/// `remote_connect_domain_event_callback_register_any_args`
struct EventCallbackRegisterArguments: XDRCodable, Equatable {
    var eventID: Int32 = 0
    var dom: RemoteDomain?
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&eventID); try c.optional(&dom) }
}

/// `remote_domain_event_lifecycle_msg` (and, without event and detail, the reboot one).
struct LifecycleEventMessage: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var event: Int32 = 0, detail: Int32 = 0
    init() {}
    init(dom: RemoteDomain, event: Int32, detail: Int32) { self.dom = dom; self.event = event; self.detail = detail }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&event); try c.int(&detail) }
}

/// `remote_domain_event_callback_lifecycle_msg`
struct CallbackLifecycleEventMessage: XDRCodable, Equatable {
    var callbackID: Int32 = 0
    var msg = LifecycleEventMessage()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&callbackID); try c.value(&msg) }
}

/// `remote_domain_event_reboot_msg`
struct RebootEventMessage: XDRCodable, Equatable {
    var dom = RemoteDomain()
    init() {}
    init(dom: RemoteDomain) { self.dom = dom }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom) }
}

/// `remote_domain_event_callback_reboot_msg`
struct CallbackRebootEventMessage: XDRCodable, Equatable {
    var callbackID: Int32 = 0
    var msg = RebootEventMessage()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&callbackID); try c.value(&msg) }
}
