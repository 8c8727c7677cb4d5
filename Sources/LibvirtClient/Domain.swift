import CLibvirt
import Glibc

/// One domain handle (virDomainPtr), freed with the value.
public final class LibvirtDomain: @unchecked Sendable {
    let pointer: virDomainPtr
    /// Keeps the connection open as long as its domains are in use.
    public let connection: LibvirtConnection

    init(owning pointer: virDomainPtr, connection: LibvirtConnection) {
        self.pointer = pointer
        self.connection = connection
    }

    deinit { virDomainFree(pointer) }

    public var name: String { virDomainGetName(pointer).map { String(cString: $0) } ?? "" }

    /// The domain id; nil while it is not running (libvirt's -1).
    public var id: Int32? {
        let id = virDomainGetID(pointer)
        return id == UInt32.max ? nil : Int32(bitPattern: id)
    }

    public var uuid: String {
        var buf = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        guard virDomainGetUUIDString(pointer, &buf) == 0 else { return "" }
        return String(cString: buf)
    }

    public func info() throws(LibvirtError) -> DomainInfo {
        var i = virDomainInfo()
        guard virDomainGetInfo(pointer, &i) == 0 else { throw LibvirtError.last("virDomainGetInfo") }
        return DomainInfo(state: DomainState(rawValue: Int32(i.state)) ?? .noState,
                          maxMemoryKiB: UInt64(i.maxMem), memoryKiB: UInt64(i.memory),
                          vcpus: Int(i.nrVirtCpu), cpuTimeNanoseconds: i.cpuTime)
    }

    /// State and reason (virDomainGetState).
    public func state() throws(LibvirtError) -> (state: DomainState, reason: Int32) {
        var s: Int32 = 0, r: Int32 = 0
        guard virDomainGetState(pointer, &s, &r, 0) == 0 else { throw LibvirtError.last("virDomainGetState") }
        return (DomainState(rawValue: s) ?? .noState, r)
    }

    public var isPersistent: Bool { virDomainIsPersistent(pointer) == 1 }
    public var isActive: Bool { virDomainIsActive(pointer) == 1 }

    public func autostart() throws(LibvirtError) -> Bool {
        var a: Int32 = 0
        guard virDomainGetAutostart(pointer, &a) == 0 else { throw LibvirtError.last("virDomainGetAutostart") }
        return a != 0
    }

    public func setAutostart(_ on: Bool) throws(LibvirtError) {
        try check(virDomainSetAutostart(pointer, on ? 1 : 0), "virDomainSetAutostart")
    }

    /// The domain XML (flags: VIR_DOMAIN_XML_*).
    public func xml(inactive: Bool = false) throws(LibvirtError) -> String {
        let flags = inactive ? VIR_DOMAIN_XML_INACTIVE.rawValue : 0
        guard let x = virDomainGetXMLDesc(pointer, flags) else { throw LibvirtError.last("virDomainGetXMLDesc") }
        defer { free(x) }
        return String(cString: x)
    }

    public func start(paused: Bool = false) throws(LibvirtError) {
        try check(virDomainCreateWithFlags(pointer, paused ? VIR_DOMAIN_START_PAUSED.rawValue : 0), "virDomainCreate")
    }

    public func shutdown() throws(LibvirtError) { try check(virDomainShutdown(pointer), "virDomainShutdown") }
    public func reboot() throws(LibvirtError) { try check(virDomainReboot(pointer, 0), "virDomainReboot") }
    public func reset() throws(LibvirtError) { try check(virDomainReset(pointer, 0), "virDomainReset") }
    public func destroy() throws(LibvirtError) { try check(virDomainDestroy(pointer), "virDomainDestroy") }
    public func suspend() throws(LibvirtError) { try check(virDomainSuspend(pointer), "virDomainSuspend") }
    public func resume() throws(LibvirtError) { try check(virDomainResume(pointer), "virDomainResume") }
    public func undefine() throws(LibvirtError) { try check(virDomainUndefine(pointer), "virDomainUndefine") }

    /// Block device counters for a target such as "vda".
    public func blockStats(_ target: String) throws(LibvirtError) -> (readRequests: Int64, readBytes: Int64, writeRequests: Int64, writeBytes: Int64) {
        var s = _virDomainBlockStats()
        guard virDomainBlockStats(pointer, target, &s, MemoryLayout<_virDomainBlockStats>.size) == 0 else {
            throw LibvirtError.last("virDomainBlockStats")
        }
        return (s.rd_req, s.rd_bytes, s.wr_req, s.wr_bytes)
    }

    /// Interface counters for a device name or MAC, from the guest's view.
    public func interfaceStats(_ device: String) throws(LibvirtError) -> (rxBytes: Int64, rxPackets: Int64, txBytes: Int64, txPackets: Int64) {
        var s = _virDomainInterfaceStats()
        guard virDomainInterfaceStats(pointer, device, &s, MemoryLayout<_virDomainInterfaceStats>.size) == 0 else {
            throw LibvirtError.last("virDomainInterfaceStats")
        }
        return (s.rx_bytes, s.rx_packets, s.tx_bytes, s.tx_packets)
    }

    /// Opens the domain's serial console as a byte stream.
    public func openConsole() throws(LibvirtError) -> LibvirtStream {
        guard let st = virStreamNew(connection.pointer, 0) else { throw LibvirtError.last("virStreamNew") }
        guard virDomainOpenConsole(pointer, nil, st, 0) == 0 else {
            let e = LibvirtError.last("virDomainOpenConsole")
            virStreamFree(st)
            throw e
        }
        return LibvirtStream(owning: st, connection: connection)
    }

    private func check(_ rc: Int32, _ what: String) throws(LibvirtError) {
        guard rc == 0 else { throw LibvirtError.last(what) }
    }
}

/// A blocking libvirt stream (a console).
public final class LibvirtStream: @unchecked Sendable {
    let pointer: virStreamPtr
    let connection: LibvirtConnection
    private var finished = false

    init(owning pointer: virStreamPtr, connection: LibvirtConnection) {
        self.pointer = pointer
        self.connection = connection
    }

    deinit {
        if !finished { virStreamAbort(pointer) }
        virStreamFree(pointer)
    }

    /// Receives up to `max` bytes; empty at end of stream.
    public func receive(max: Int = 4096) throws(LibvirtError) -> [UInt8] {
        var buf = [CChar](repeating: 0, count: max)
        let n = virStreamRecv(pointer, &buf, max)
        guard n >= 0 else { throw LibvirtError.last("virStreamRecv") }
        return buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }
    }

    public func send(_ bytes: [UInt8]) throws(LibvirtError) {
        var offset = 0
        while offset < bytes.count {
            let chunk = bytes[offset...].map { CChar(bitPattern: $0) }
            let n = virStreamSend(pointer, chunk, chunk.count)
            guard n > 0 else { throw LibvirtError.last("virStreamSend") }
            offset += Int(n)
        }
    }

    /// Ends the stream cleanly.
    public func finish() throws(LibvirtError) {
        finished = true
        guard virStreamFinish(pointer) == 0 else { throw LibvirtError.last("virStreamFinish") }
    }
}
