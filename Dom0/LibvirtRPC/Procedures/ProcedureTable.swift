import ApusSys
import Toolstack

/// Who may call a procedure (libvirt's public API: the functions that call
/// virCheckReadOnlyGoto refuse read-only connections).
public enum ProcedureAccess: Sendable, Equatable {
    /// Any connection, read-only ones included: it only looks.
    case readOnly
    /// Read-write connections only: it changes something, or reaches a guest.
    case readWrite
}

/// One REMOTE_PROGRAM procedure, declared once: its number, the libvirt API
/// it serves, who may call it, the flags it accepts, its typed arguments
/// and result (their XDR is their `code`), and its handler. The dispatcher
/// knows nothing else about procedures.
public struct Procedure: Sendable {
    public let number: Int32
    /// The libvirt function, for "read only access prevents virXxx" and
    /// "unsupported flags (0x..) in function virXxx".
    public let api: String
    public let access: ProcedureAccess
    /// The flags the procedure accepts; nil when its arguments carry none.
    public let acceptedFlags: UInt32?
    /// Flags a read-only connection may not pass (GET_XML_DESC's SECURE).
    public let readOnlyDeniedFlags: UInt32
    /// Callable before CONNECT_OPEN (the handshake procedures).
    public let beforeOpen: Bool
    public let argumentType: any XDRCodable.Type
    public let resultType: any XDRCodable.Type
    let invoke: @Sendable ([UInt8], Call) async throws(ToolstackError) -> [UInt8]

    /// A procedure whose arguments carry flags: they are checked against
    /// `accepts` (and `readOnlyDenies`) before the handler runs.
    static func call<A: FlaggedArguments, R: XDRCodable>(
        _ number: Int32, _ api: String, _ access: ProcedureAccess, _ a: A.Type, _ r: R.Type,
        accepts: A.Flags, readOnlyDenies: A.Flags = [], beforeOpen: Bool = false,
        _ handler: @escaping @Sendable (A, Call) async throws(ToolstackError) -> R
    ) -> Procedure {
        let accepted = accepts.rawValue, denied = readOnlyDenies.rawValue
        return Procedure(number: number, api: api, access: access, acceptedFlags: accepted, readOnlyDeniedFlags: denied,
                         beforeOpen: beforeOpen, argumentType: A.self, resultType: R.self) { bytes, call throws(ToolstackError) in
            let args = try decodeArguments(A.self, bytes)
            let flags = args.flags.rawValue
            if call.client.readOnly && flags & denied != 0 {
                throw .denied("read only access prevents \(api) with flags 0x\(String(flags & denied, radix: 16))")
            }
            guard flags & ~accepted == 0 else {
                throw .invalidArgument("unsupported flags (0x\(String(flags & ~accepted, radix: 16))) in function \(api)")
            }
            call.flags = flags
            return try await handler(args, call).xdr
        }
    }

    /// A procedure without flags.
    static func call<A: XDRCodable, R: XDRCodable>(
        _ number: Int32, _ api: String, _ access: ProcedureAccess, _ a: A.Type, _ r: R.Type, beforeOpen: Bool = false,
        _ handler: @escaping @Sendable (A, Call) async throws(ToolstackError) -> R
    ) -> Procedure {
        Procedure(number: number, api: api, access: access, acceptedFlags: nil, readOnlyDeniedFlags: 0,
                  beforeOpen: beforeOpen, argumentType: A.self, resultType: R.self) { bytes, call throws(ToolstackError) in
            try await handler(try decodeArguments(A.self, bytes), call).xdr
        }
    }

    static func decodeArguments<A: XDRCodable>(_ type: A.Type, _ bytes: [UInt8]) throws(ToolstackError) -> A {
        do {
            return try A.decode(bytes)
        } catch {
            throw .malformed(error.message)
        }
    }
}

/// Everything a handler may use for one call.
public final class Call: @unchecked Sendable {
    // SAFETY (Sendable): `flags` is written once before the handler runs and
    // `afterReply` only by the handler, both on the call's own task.
    let client: Client
    /// The serial of the CALL packet (a console stream is named by it).
    let serial: UInt32
    let dispatcher: Dispatcher
    /// The call's flags, once checked.
    var flags: UInt32 = 0
    /// Work to do once the reply is queued (a console stream's data must follow its reply).
    var afterReply: (@Sendable () -> Void)?

    init(client: Client, serial: UInt32, dispatcher: Dispatcher) {
        self.client = client
        self.serial = serial
        self.dispatcher = dispatcher
    }

    var manager: DomainManager { dispatcher.manager }
    var storage: StoragePools { dispatcher.storage }
    var networks: VirtualNetworks { dispatcher.networks }

    /// Whether string typed parameters may be returned (VIR_TYPED_PARAM_STRING_OKAY).
    var stringsOK: Bool { flags & TypedParameterFlags.stringOkay.rawValue != 0 }

    /// Finds the domain a call names (by UUID, as libvirtd does).
    func domain(_ ref: RemoteDomain) async throws(ToolstackError) -> DomainInfo {
        try await manager.lookup(uuid: ref.uuid)
    }
}

/// Every procedure apusd serves, by number. The areas list theirs in
/// Procedures/*.swift; anything else answers "unknown procedure: N", as
/// libvirtd does for what it lacks.
public enum ProcedureTable {
    public static let all: [Procedure] =
        ConnectionProcedures.all + HostProcedures.all + DomainListProcedures.all + DomainLifecycleProcedures.all
        + DomainQueryProcedures.all + DomainTuningProcedures.all + DomainStatsProcedures.all + DomainDeviceProcedures.all + DomainSnapshotProcedures.all + EventProcedures.all
        + StorageProcedures.all + NetworkProcedures.all

    /// The table; the first declaration of a number wins (tests require each to be unique).
    public static let byNumber: [Int32: Procedure] = {
        var t: [Int32: Procedure] = [:]
        for p in all where t[p.number] == nil { t[p.number] = p }
        return t
    }()

    public static func procedure(_ number: Int32) -> Procedure? { byNumber[number] }
}
