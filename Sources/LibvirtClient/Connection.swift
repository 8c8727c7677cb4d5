// A small, safe Swift face on the libvirt client library (libvirt-dev): the
// calls the apus CLI and the tests make, with libvirt's errors as values.
// Every pointer stays in this module.
import CLibvirt
import Glibc

/// An error reported by libvirt: its code and domain (virErrorNumber,
/// virErrorDomain) and the message virsh would print after "error: ".
public struct LibvirtError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let domain: Int32
    public let message: String

    public init(code: Int32, domain: Int32, message: String) {
        self.code = code
        self.domain = domain
        self.message = message
    }

    /// The calling thread's last libvirt error (or a generic one).
    static func last(_ what: String) -> LibvirtError {
        guard let e = virGetLastError() else {
            return LibvirtError(code: -1, domain: 0, message: "\(what) failed")
        }
        let message = e.pointee.message.map { String(cString: $0) } ?? "\(what) failed"
        return LibvirtError(code: e.pointee.code, domain: e.pointee.domain, message: message)
    }

    public var description: String { message }

    // virErrorNumber values the callers test for.
    public static let noDomain: Int32 = 42          // VIR_ERR_NO_DOMAIN
    public static let operationInvalid: Int32 = 55  // VIR_ERR_OPERATION_INVALID
    public static let operationDenied: Int32 = 29   // VIR_ERR_OPERATION_DENIED
    public static let xmlError: Int32 = 27          // VIR_ERR_XML_ERROR
    public static let noSupport: Int32 = 3          // VIR_ERR_NO_SUPPORT
}

/// Silences libvirt's default "print every error to stderr" handler once;
/// callers report errors themselves.
private let quietErrors: Void = {
    virSetErrorFunc(nil) { _, _ in }
}()

/// Domain states (virDomainState).
public enum DomainState: Int32, Sendable, CustomStringConvertible {
    case noState = 0, running, blocked, paused, shutdown, shutoff, crashed, pmSuspended

    /// As virsh prints it.
    public var description: String {
        switch self {
        case .noState: "no state"
        case .running: "running"
        case .blocked: "idle"
        case .paused: "paused"
        case .shutdown: "in shutdown"
        case .shutoff: "shut off"
        case .crashed: "crashed"
        case .pmSuspended: "pmsuspended"
        }
    }
}

/// What virDomainGetInfo returns.
public struct DomainInfo: Sendable, Equatable {
    public var state: DomainState
    public var maxMemoryKiB: UInt64
    public var memoryKiB: UInt64
    public var vcpus: Int
    public var cpuTimeNanoseconds: UInt64

    public init(state: DomainState, maxMemoryKiB: UInt64, memoryKiB: UInt64, vcpus: Int, cpuTimeNanoseconds: UInt64) {
        self.state = state
        self.maxMemoryKiB = maxMemoryKiB
        self.memoryKiB = memoryKiB
        self.vcpus = vcpus
        self.cpuTimeNanoseconds = cpuTimeNanoseconds
    }
}

/// A connection to a libvirt daemon (apusd), as virConnectOpen makes it.
public final class LibvirtConnection: @unchecked Sendable {
    let pointer: virConnectPtr

    /// Opens `uri` (e.g. "apus:///system"); read-only if asked.
    public init(uri: String, readOnly: Bool = false) throws(LibvirtError) {
        _ = quietErrors
        let p = readOnly ? virConnectOpenReadOnly(uri) : virConnectOpen(uri)
        guard let p else { throw LibvirtError.last("connecting to \(uri)") }
        pointer = p
    }

    deinit { virConnectClose(pointer) }

    /// The hypervisor type the daemon reports ("APUS").
    public func hypervisorType() throws(LibvirtError) -> String {
        guard let t = virConnectGetType(pointer) else { throw LibvirtError.last("virConnectGetType") }
        return String(cString: t)
    }

    /// The daemon's hypervisor version (major * 1,000,000 + minor * 1,000 + micro).
    public func hypervisorVersion() throws(LibvirtError) -> UInt {
        var v: UInt = 0
        guard virConnectGetVersion(pointer, &v) == 0 else { throw LibvirtError.last("virConnectGetVersion") }
        return v
    }

    public func hostname() throws(LibvirtError) -> String {
        guard let h = virConnectGetHostname(pointer) else { throw LibvirtError.last("virConnectGetHostname") }
        defer { free(h) }
        return String(cString: h)
    }

    /// Host CPUs and memory, as `virsh nodeinfo` shows them.
    public func nodeInfo() throws(LibvirtError) -> (model: String, memoryKiB: UInt, cpus: UInt32) {
        var info = virNodeInfo()
        guard virNodeGetInfo(pointer, &info) == 0 else { throw LibvirtError.last("virNodeGetInfo") }
        let model = withUnsafeBytes(of: info.model) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return (model, info.memory, info.cpus)
    }

    /// Every domain the daemon knows (flags: VIR_CONNECT_LIST_DOMAINS_*).
    public func allDomains(flags: UInt32 = 0) throws(LibvirtError) -> [LibvirtDomain] {
        var list: UnsafeMutablePointer<virDomainPtr?>? = nil
        let n = virConnectListAllDomains(pointer, &list, flags)
        guard n >= 0, let list else { throw LibvirtError.last("virConnectListAllDomains") }
        defer { free(list) }
        return (0..<Int(n)).compactMap { list[$0].map { LibvirtDomain(owning: $0, connection: self) } }
    }

    /// virConnectGetAllDomainStats: every domain's statistics (`stats`: the
    /// VIR_DOMAIN_STATS_* groups, 0 for all). Returns how many records came
    /// back and how many parameters they held together.
    public func allDomainStats(stats: UInt32 = 0, flags: UInt32 = 0) throws(LibvirtError) -> (records: Int, parameters: Int) {
        var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>? = nil
        let n = virConnectGetAllDomainStats(pointer, stats, &records, flags)
        guard n >= 0, let records else { throw LibvirtError.last("virConnectGetAllDomainStats") }
        // SAFETY: libvirt returned `n` records, NULL-terminated, freed below.
        defer { virDomainStatsRecordListFree(records) }
        var parameters = 0
        for i in 0..<Int(n) { parameters += Int(records[i]?.pointee.nparams ?? 0) }
        return (Int(n), parameters)
    }

    /// Defines a persistent domain from XML.
    public func define(xml: String) throws(LibvirtError) -> LibvirtDomain {
        guard let d = virDomainDefineXML(pointer, xml) else { throw LibvirtError.last("virDomainDefineXML") }
        return LibvirtDomain(owning: d, connection: self)
    }

    /// Creates and starts a transient domain from XML.
    public func create(xml: String, paused: Bool = false) throws(LibvirtError) -> LibvirtDomain {
        let flags = paused ? VIR_DOMAIN_START_PAUSED.rawValue : 0
        guard let d = virDomainCreateXML(pointer, xml, flags) else { throw LibvirtError.last("virDomainCreateXML") }
        return LibvirtDomain(owning: d, connection: self)
    }

    public func domain(named name: String) throws(LibvirtError) -> LibvirtDomain {
        guard let d = virDomainLookupByName(pointer, name) else { throw LibvirtError.last("virDomainLookupByName") }
        return LibvirtDomain(owning: d, connection: self)
    }

    public func domain(id: Int32) throws(LibvirtError) -> LibvirtDomain {
        guard let d = virDomainLookupByID(pointer, id) else { throw LibvirtError.last("virDomainLookupByID") }
        return LibvirtDomain(owning: d, connection: self)
    }

    public func domain(uuid: String) throws(LibvirtError) -> LibvirtDomain {
        guard let d = virDomainLookupByUUIDString(pointer, uuid) else { throw LibvirtError.last("virDomainLookupByUUIDString") }
        return LibvirtDomain(owning: d, connection: self)
    }

    /// Converts a native config (e.g. "xen-xl") to domain XML on the daemon.
    public func domainXML(fromNative format: String, config: String) throws(LibvirtError) -> String {
        guard let x = virConnectDomainXMLFromNative(pointer, format, config, 0) else {
            throw LibvirtError.last("virConnectDomainXMLFromNative")
        }
        defer { free(x) }
        return String(cString: x)
    }

    /// Converts domain XML to a native config format on the daemon.
    public func domainXML(toNative format: String, xml: String) throws(LibvirtError) -> String {
        guard let x = virConnectDomainXMLToNative(pointer, format, xml, 0) else {
            throw LibvirtError.last("virConnectDomainXMLToNative")
        }
        defer { free(x) }
        return String(cString: x)
    }
}
