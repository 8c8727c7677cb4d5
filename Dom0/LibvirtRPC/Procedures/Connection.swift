import ApusSys
import Toolstack

/// The handshake and the connection's own procedures: authentication,
/// features, open and close, what the daemon is, its capabilities, and
/// the native config formats (xl.cfg).
enum ConnectionProcedures {
    static let all: [Procedure] = [
        .call(66, "virConnectAuthList", .readOnly, XDRVoid.self, AuthListResult.self, beforeOpen: true) { _, _ in
            AuthListResult() // REMOTE_AUTH_NONE: a local socket needs no more
        },
        .call(60, "virConnectSupportsFeature", .readOnly, IntArgument.self, IntResult.self, beforeOpen: true) { a, _ in
            IntResult(DriverFeature.supported.contains(a.value))
        },
        .call(1, "virConnectOpen", .readOnly, ConnectOpenArguments.self, XDRVoid.self,
              accepts: [.readOnly, .noAliases], beforeOpen: true) { a, call throws(ToolstackError) in
            if let name = a.name, !name.isEmpty, !Dispatcher.acceptsURI(name) {
                throw ToolstackError(.noConnect, "no connection driver available for \(name)")
            }
            call.client.open(readOnly: a.flags.contains(.readOnly))
            return XDRVoid()
        },
        .call(2, "virConnectClose", .readOnly, XDRVoid.self, XDRVoid.self, beforeOpen: true) { _, _ in XDRVoid() },
        .call(360, "virConnectRegisterCloseCallback", .readOnly, XDRVoid.self, XDRVoid.self) { _, _ in XDRVoid() },
        .call(361, "virConnectUnregisterCloseCallback", .readOnly, XDRVoid.self, XDRVoid.self) { _, _ in XDRVoid() },
        .call(110, "virConnectGetURI", .readOnly, XDRVoid.self, StringResult.self) { _, call in StringResult(call.dispatcher.uri) },
        .call(149, "virConnectIsSecure", .readOnly, XDRVoid.self, IntResult.self) { _, _ in IntResult(true) }, // a local socket
        .call(148, "virConnectIsEncrypted", .readOnly, XDRVoid.self, IntResult.self) { _, _ in IntResult(false) },
        .call(3, "virConnectGetType", .readOnly, XDRVoid.self, StringResult.self) { _, _ in StringResult("APUS") },
        .call(4, "virConnectGetVersion", .readOnly, XDRVoid.self, UHyperResult.self) { _, _ in
            UHyperResult(UInt64(ApusVersion.major * 1_000_000 + ApusVersion.minor * 1000 + ApusVersion.release))
        },
        .call(157, "virConnectGetLibVersion", .readOnly, XDRVoid.self, UHyperResult.self) { _, _ in
            UHyperResult(9_000_000) // the libvirt protocol level Apus speaks
        },
        .call(59, "virConnectGetHostname", .readOnly, XDRVoid.self, StringResult.self) { _, _ in StringResult(ProcessControl.hostname()) },
        .call(203, "virConnectGetSysinfo", .readOnly, FlagsArguments<NoFlags>.self, StringResult.self, accepts: []) { _, _ in
            StringResult(HostInfo.sysinfoXML)
        },
        .call(7, "virConnectGetCapabilities", .readOnly, XDRVoid.self, StringResult.self) { _, call in
            StringResult(HostInfo.capabilitiesXML(hypervisor: call.manager.paths.binary("apus-hv")))
        },
        .call(342, "virConnectGetDomainCapabilities", .readWrite, DomainCapabilitiesArguments.self, StringResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            if let t = a.virttype, !["kvm", "apus"].contains(t) {
                throw ToolstackError.unsupported("virttype '\(t)' is not supported (kvm)")
            }
            if let arch = a.arch, arch != "x86_64" { throw ToolstackError.unsupported("architecture '\(arch)' is not supported (x86_64 only)") }
            return StringResult(HostInfo.domainCapabilitiesXML(hypervisor: call.manager.paths.binary("apus-hv")))
        },
        .call(5, "virConnectGetMaxVcpus", .readOnly, MaxVCPUsArguments.self, IntResult.self) { a, _ throws(ToolstackError) in
            if let t = a.type, !["kvm", "apus", "qemu"].contains(t.lowercased()) {
                throw .invalidArgument("unknown type '\(t)'")
            }
            return IntResult(Int32(DomainDefinition.maxVCPUs))
        },
        .call(135, "virConnectDomainXMLFromNative", .readWrite, NativeConfigArguments.self, StringResult.self,
              accepts: []) { a, _ throws(ToolstackError) in
            StringResult(try NativeConfig.toXML(format: a.format, config: a.config))
        },
        .call(136, "virConnectDomainXMLToNative", .readWrite, NativeConfigArguments.self, StringResult.self,
              accepts: []) { a, _ throws(ToolstackError) in
            StringResult(try NativeConfig.fromXML(format: a.format, xml: a.config))
        },
    ]
}

/// VIR_DRV_FEATURE_* numbers answered by CONNECT_SUPPORTS_FEATURE.
enum DriverFeature {
    static let typedParamString: Int32 = 9, programKeepalive: Int32 = 10
    static let remoteEventCallback: Int32 = 14, remoteCloseCallback: Int32 = 15
    /// VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER: NETWORK_UPDATE's
    /// command and section arrive in the wire's order (without it clients swap them).
    static let networkUpdateHasCorrectOrder: Int32 = 16
    static let supported: Set<Int32> = [typedParamString, programKeepalive, remoteEventCallback, remoteCloseCallback, networkUpdateHasCorrectOrder]
}

/// `remote_auth_list_ret { remote_auth_type types<20>; }`
struct AuthListResult: XDRCodable, Equatable {
    var types: [Int32] = [0] // REMOTE_AUTH_NONE
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.intArray(&types, max: 20) }
}

/// `remote_connect_open_args`
struct ConnectOpenArguments: FlaggedArguments, Equatable {
    var name: String?
    var flags = ConnectOpenFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.optionalString(&name); try c.value(&flags) }
}

/// `remote_connect_get_domain_capabilities_args`
struct DomainCapabilitiesArguments: FlaggedArguments, Equatable {
    var emulatorbin: String?, arch: String?, machine: String?, virttype: String?
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.optionalString(&emulatorbin); try c.optionalString(&arch); try c.optionalString(&machine)
        try c.optionalString(&virttype); try c.value(&flags)
    }
}

/// `remote_connect_get_max_vcpus_args { remote_string type; }`
struct MaxVCPUsArguments: XDRCodable, Equatable {
    var type: String?
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.optionalString(&type) }
}

/// `remote_connect_domain_xml_{from,to}_native_args`: a format name, the
/// config (or the XML), flags.
struct NativeConfigArguments: FlaggedArguments, Equatable {
    var format = ""
    var config = ""
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.string(&format, max: 64); try c.string(&config); try c.value(&flags)
    }
}
