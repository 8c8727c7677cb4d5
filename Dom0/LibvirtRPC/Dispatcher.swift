import ApusSys
import Toolstack

/// Runs REMOTE_PROGRAM calls: looks the procedure up in the table, applies
/// its rules (handshake, read-only, flags), decodes its typed arguments,
/// calls its handler and encodes its result. Everything about a particular
/// procedure lives in its declaration (Procedures/).
public final class Dispatcher: Sendable {
    public let manager: DomainManager
    public let hub: IOHub
    public let storage: StoragePools
    public let networks: VirtualNetworks
    public var events: EventBus { manager.events }
    /// What CONNECT_GET_URI answers.
    let uri: String

    public init(manager: DomainManager, hub: IOHub, storage: StoragePools? = nil, networks: VirtualNetworks? = nil, uri: String = "apus:///system") {
        self.manager = manager
        self.storage = storage ?? StoragePools(paths: manager.paths)
        self.networks = networks ?? VirtualNetworks(paths: manager.paths)
        self.hub = hub
        self.uri = uri
    }

    /// A procedure's result: the `_ret` payload, and work to do once the
    /// reply is queued.
    struct Reply {
        var payload: [UInt8]
        var afterReply: (@Sendable () -> Void)?
    }

    /// Checks whether `number` may be called now, before its arguments are
    /// even decoded: unknown procedures, calls before CONNECT_OPEN, and
    /// changes through a read-only connection are refused here.
    func admit(_ number: Int32, opened: Bool, readOnly: Bool) throws(ToolstackError) -> Procedure {
        guard let p = ProcedureTable.procedure(number) else { throw .unknownProcedure(number) }
        if !opened && !p.beforeOpen { throw .internalError("hypervisor connection not open") }
        if readOnly && p.access == .readWrite { throw .denied("read only access prevents \(p.api)") }
        return p
    }

    /// Runs an admitted procedure.
    func call(_ p: Procedure, _ payload: [UInt8], client: Client, serial: UInt32) async throws(ToolstackError) -> Reply {
        let call = Call(client: client, serial: serial, dispatcher: self)
        let bytes = try await p.invoke(payload, call)
        return Reply(payload: bytes, afterReply: call.afterReply)
    }

    /// Connection URIs this daemon serves: `apus:///system` and friends.
    static func acceptsURI(_ name: String) -> Bool {
        name.hasPrefix("apus:") || name.hasPrefix("apus+")
    }
}

/// Keepalive program procedures.
enum KeepaliveProc: Int32 { case ping = 1, pong = 2 }

/// A remote_error payload (the message is what virsh prints).
func encodeError(_ e: ToolstackError) -> [UInt8] { RemoteError(e).xdr }

extension ToolstackError {
    /// libvirtd's answer for a procedure it does not implement; the client
    /// turns it into VIR_ERR_NO_SUPPORT, which triggers virsh's fallbacks.
    static func unknownProcedure(_ n: Int32) -> ToolstackError {
        ToolstackError(.rpc, "unknown procedure: \(n)", origin: .rpc)
    }

    static func notSupported(_ api: String) -> ToolstackError {
        ToolstackError(.noSupport, "this function is not supported by the connection driver: \(api)")
    }

    static func malformed(_ detail: String) -> ToolstackError {
        ToolstackError(.rpc, "Unable to decode message payload: \(detail)", origin: .rpc)
    }
}
