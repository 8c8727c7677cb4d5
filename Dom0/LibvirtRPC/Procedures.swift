import Toolstack

/// REMOTE_PROGRAM procedure numbers Apus implements (libvirt's
/// remote_protocol.x numbering; the rest answer "unknown procedure: N").
public enum Proc: Int32, Sendable {
    case connectOpen = 1, connectClose = 2, connectGetType = 3, connectGetVersion = 4
    case nodeGetInfo = 6, connectGetCapabilities = 7
    case domainCreate = 9, domainCreateXML = 10, domainDefineXML = 11, domainDestroy = 12
    case domainGetXMLDesc = 14, domainGetAutostart = 15, domainGetInfo = 16, domainGetMaxVcpus = 18
    case domainGetOSType = 19, domainGetVcpus = 20, connectListDefinedDomains = 21
    case domainLookupByID = 22, domainLookupByName = 23, domainLookupByUUID = 24
    case connectNumOfDefinedDomains = 25, domainReboot = 27, domainResume = 28, domainSetAutostart = 29
    case domainSetMaxMemory = 30, domainSetMemory = 31, domainSetVcpus = 32, domainShutdown = 33
    case domainSuspend = 34, domainUndefine = 35, connectListDomains = 37, connectNumOfDomains = 51
    case domainRestore = 54, domainSave = 55, connectGetHostname = 59, connectSupportsFeature = 60
    case domainBlockStats = 64, domainInterfaceStats = 65, authList = 66
    case domainEventLifecycle = 107, connectGetURI = 110
    case domainGetSecurityLabel = 121, nodeGetSecurityModel = 122
    case connectDomainXMLFromNative = 135, connectDomainXMLToNative = 136
    case connectIsSecure = 149, domainIsActive = 150, domainIsPersistent = 151
    case connectGetLibVersion = 157, domainMemoryStats = 159
    case connectDomainEventRegisterAny = 167, connectDomainEventDeregisterAny = 168, domainEventReboot = 169
    case domainManagedSave = 182, domainHasManagedSaveImage = 183, domainSnapshotNum = 187
    case domainCreateWithFlags = 196, domainSetVcpusFlags = 199, domainGetVcpusFlags = 200
    case domainOpenConsole = 201, connectGetSysinfo = 203, domainSetMemoryFlags = 204
    case domainGetState = 212, domainUndefineFlags = 231, domainSaveFlags = 232, domainRestoreFlags = 233
    case domainDestroyFlags = 234, domainBlockStatsFlags = 243, domainReset = 245, domainShutdownFlags = 258
    case domainSetMetadata = 264, domainGetMetadata = 265, connectListAllDomains = 273, nodeGetCPUMap = 293
    case connectDomainEventCallbackRegisterAny = 316, connectDomainEventCallbackDeregisterAny = 317
    case domainEventCallbackLifecycle = 318, domainEventCallbackReboot = 319
    case connectGetDomainCapabilities = 342, domainDefineXMLFlags = 350
    case connectRegisterCloseCallback = 360, connectUnregisterCloseCallback = 361
    case domainGetMessages = 426

    /// Procedures a read-only connection may call (everything that only looks).
    var isReadOnlySafe: Bool {
        switch self {
        case .connectOpen, .connectClose, .connectGetType, .connectGetVersion, .nodeGetInfo, .connectGetCapabilities,
             .domainGetXMLDesc, .domainGetAutostart, .domainGetInfo, .domainGetMaxVcpus, .domainGetOSType, .domainGetVcpus,
             .connectListDefinedDomains, .domainLookupByID, .domainLookupByName, .domainLookupByUUID,
             .connectNumOfDefinedDomains, .connectListDomains, .connectNumOfDomains, .connectGetHostname,
             .connectSupportsFeature, .domainBlockStats, .domainInterfaceStats, .authList, .connectGetURI,
             .domainGetSecurityLabel, .nodeGetSecurityModel, .connectDomainXMLFromNative, .connectDomainXMLToNative,
             .connectIsSecure, .domainIsActive, .domainIsPersistent, .connectGetLibVersion, .domainMemoryStats,
             .connectDomainEventRegisterAny, .connectDomainEventDeregisterAny, .domainHasManagedSaveImage,
             .domainSnapshotNum, .domainGetVcpusFlags, .connectGetSysinfo, .domainGetState, .domainBlockStatsFlags,
             .domainGetMetadata, .connectListAllDomains, .nodeGetCPUMap, .connectDomainEventCallbackRegisterAny,
             .connectDomainEventCallbackDeregisterAny, .connectGetDomainCapabilities, .connectRegisterCloseCallback,
             .connectUnregisterCloseCallback, .domainGetMessages:
            return true
        default:
            return false
        }
    }

    /// The libvirt API name, for "read only access prevents virXxx".
    var apiName: String {
        let name = String(describing: self)
        return "vir" + name.prefix(1).uppercased() + name.dropFirst()
    }
}

/// Keepalive program procedures.
enum KeepaliveProc: Int32 { case ping = 1, pong = 2 }

/// VIR_DRV_FEATURE_* numbers answered by CONNECT_SUPPORTS_FEATURE.
enum DriverFeature: Int32 {
    case typedParamString = 9, programKeepalive = 10, remoteEventCallback = 14, remoteCloseCallback = 15
}

/// A remote_error payload (the message is what virsh prints).
func encodeError(_ e: ToolstackError) -> [UInt8] {
    var w = XDRWriter()
    w.int(e.code.rawValue)
    w.int(e.origin.rawValue)
    w.optionalString(e.message)
    w.int(2)                 // VIR_ERR_ERROR
    w.int(0)                 // dom: NULL
    w.optionalString(e.message)
    w.int(0)                 // str2
    w.int(0)                 // str3
    w.int(-1)
    w.int(-1)
    w.int(0)                 // net: NULL
    return w.bytes
}

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

// MARK: domain references on the wire

extension XDRWriter {
    /// remote_nonnull_domain: name, uuid, current id (-1 inactive).
    mutating func domain(_ d: DomainInfo) {
        domain(name: d.name, uuid: d.uuid, id: d.id)
    }

    mutating func domain(name: String, uuid: DomainUUID, id: Int32) {
        string(name)
        fixedOpaque(uuid.bytes)
        int(id)
    }

    /// A typed parameter of type LLONG (3).
    mutating func typedParam(_ field: String, llong value: Int64) {
        string(field)
        int(3)
        hyper(value)
    }
}

/// A remote_nonnull_domain from a call (only the UUID is trusted for lookup).
struct DomainRef {
    let name: String
    let uuid: DomainUUID
    let id: Int32
}

extension XDRReader {
    mutating func domain() throws(XDRError) -> DomainRef {
        let name = try string(max: 1024)
        guard let uuid = DomainUUID(bytes: try fixedOpaque(16)) else { throw XDRError(message: "bad uuid") }
        return DomainRef(name: name, uuid: uuid, id: try int())
    }

    mutating func optionalDomain() throws(XDRError) -> DomainRef? {
        switch try uint() {
        case 0: return nil
        case 1: return try domain()
        case let v: throw XDRError(message: "bad optional discriminant \(v)")
        }
    }
}
