import ApusSys
import Toolstack

/// Executes REMOTE_PROGRAM procedures against the toolstack. Arguments are
/// decoded from the client's XDR (every length bounded), results encoded
/// as libvirt's `_ret` structs; failures become libvirt-shaped errors.
public final class Dispatcher: Sendable {
    public let manager: DomainManager
    public let hub: IOHub
    public var events: EventBus { manager.events }
    /// What CONNECT_GET_URI answers.
    let uri: String

    /// A procedure's result: the `_ret` payload, and work to do once the
    /// reply is queued (a console stream's data must follow its reply).
    struct Reply {
        var payload: [UInt8] = []
        var afterReply: (@Sendable () -> Void)?
        init(_ w: XDRWriter = XDRWriter(), afterReply: (@Sendable () -> Void)? = nil) {
            payload = w.bytes
            self.afterReply = afterReply
        }
    }

    public init(manager: DomainManager, hub: IOHub, uri: String = "apus:///system") {
        self.manager = manager
        self.hub = hub
        self.uri = uri
    }

    func call(_ proc: Proc, _ a: inout XDRReader, client: Client, serial: UInt32) async throws(ToolstackError) -> Reply {
        do {
            return try await dispatch(proc, &a, client: client, serial: serial)
        } catch let e as ToolstackError {
            throw e
        } catch let e as XDRError {
            throw .malformed(e.message)
        } catch {
            throw .internalError("\(error)")
        }
    }

    // The procedures below decode with XDRReader (throws XDRError) and call
    // the manager (throws ToolstackError); `call` maps both.
    private func dispatch(_ proc: Proc, _ a: inout XDRReader, client: Client, serial: UInt32) async throws -> Reply {
        var w = XDRWriter()
        switch proc {
        // MARK: connection
        case .authList:
            w.uint(1)
            w.int(0) // REMOTE_AUTH_NONE
        case .connectSupportsFeature:
            let feature = try a.int()
            w.int(Self.supportedFeatures.contains(feature) ? 1 : 0)
        case .connectOpen:
            let name = try a.optionalString()
            let flags = try a.uint()
            try checkFlags(flags, allowed: 0x3, "virConnectOpen")
            if let name, !name.isEmpty, !Self.acceptsURI(name) {
                throw ToolstackError(.noConnect, "no connection driver available for \(name)")
            }
            client.open(readOnly: flags & 1 != 0)
        case .connectClose, .connectRegisterCloseCallback, .connectUnregisterCloseCallback:
            break
        case .connectGetURI:
            w.string(uri)
        case .connectIsSecure:
            w.int(1) // a local Unix socket
        case .connectGetType:
            w.string("APUS")
        case .connectGetVersion:
            w.uhyper(UInt64(ApusVersion.major * 1_000_000 + ApusVersion.minor * 1000 + ApusVersion.release))
        case .connectGetLibVersion:
            w.uhyper(9_000_000) // the libvirt protocol level Apus speaks
        case .connectGetHostname:
            w.string(ProcessControl.hostname())
        case .connectGetSysinfo:
            try checkFlags(try a.uint(), allowed: 0, "virConnectGetSysinfo")
            w.string(HostInfo.sysinfoXML)
        case .connectGetCapabilities:
            w.string(HostInfo.capabilitiesXML(hypervisor: manager.paths.binary("apus-hv")))
        case .connectGetDomainCapabilities:
            _ = try a.optionalString(); _ = try a.optionalString(); _ = try a.optionalString()
            let virttype = try a.optionalString()
            try checkFlags(try a.uint(), allowed: 0, "virConnectGetDomainCapabilities")
            if let virttype, !["kvm", "apus"].contains(virttype) {
                throw ToolstackError.unsupported("virttype '\(virttype)' is not supported (kvm)")
            }
            w.string(HostInfo.domainCapabilitiesXML(hypervisor: manager.paths.binary("apus-hv")))
        case .nodeGetInfo:
            w.fixedCharArray("x86_64", count: 32)
            w.uhyper(HostInfo.memoryKiB)
            w.int(Int32(HostInfo.cpuCount))
            w.int(HostInfo.mhz)
            w.int(1)                           // NUMA nodes
            w.int(1)                           // sockets per node
            w.int(Int32(HostInfo.cpuCount))    // cores per socket
            w.int(1)                           // threads per core
        case .nodeGetCPUMap:
            let needMap = try a.int() != 0, needOnline = try a.int() != 0
            try checkFlags(try a.uint(), allowed: 0, "virNodeGetCPUMap")
            let n = HostInfo.cpuCount
            if needMap { w.opaque(Self.allCPUs(n)) } else { w.uint(0) }
            w.uint(needOnline ? UInt32(n) : 0)
            w.int(Int32(n))
        case .nodeGetSecurityModel:
            // No sVirt: an empty model, so dominfo prints no security lines.
            w.charArray("")
            w.charArray("")
        case .domainGetSecurityLabel:
            _ = try await lookup(&a)
            w.charArray("")
            w.int(0)

        // MARK: listing and lookup
        case .connectListAllDomains:
            let needResults = try a.int() != 0
            let flags = try a.uint()
            let list = await manager.list(ListFilter(rawValue: flags))
            if needResults {
                w.uint(UInt32(list.count))
                for d in list { w.domain(d) }
            } else {
                w.uint(0)
            }
            w.uint(UInt32(list.count))
        case .connectNumOfDomains:
            w.int(Int32(await manager.count(active: true)))
        case .connectNumOfDefinedDomains:
            w.int(Int32(await manager.count(active: false)))
        case .connectListDomains:
            let max = try a.int()
            guard max >= 0, max <= 16384 else { throw ToolstackError.invalidArgument("maxids must be between 0 and 16384") }
            let ids = await manager.list(.active).map(\.id).sorted().prefix(Int(max))
            w.uint(UInt32(ids.count))
            for id in ids { w.int(id) }
        case .connectListDefinedDomains:
            let max = try a.int()
            guard max >= 0, max <= 16384 else { throw ToolstackError.invalidArgument("maxnames must be between 0 and 16384") }
            let names = await manager.list(.inactive).map(\.name).sorted().prefix(Int(max))
            w.uint(UInt32(names.count))
            for n in names { w.string(n) }
        case .domainLookupByID:
            w.domain(try await manager.lookup(id: try a.int()))
        case .domainLookupByName:
            w.domain(try await manager.lookup(name: try a.string(max: 1024)))
        case .domainLookupByUUID:
            guard let uuid = DomainUUID(bytes: try a.fixedOpaque(16)) else { throw XDRError(message: "bad uuid") }
            w.domain(try await manager.lookup(uuid: uuid))
        case .domainGetState:
            let d = try await lookup(&a)
            try checkFlags(try a.uint(), allowed: 0, "virDomainGetState")
            w.int(d.state.rawValue)
            w.int(d.reason)
        case .domainGetInfo:
            let d = try await lookup(&a)
            w.int(d.state.rawValue)                 // unsigned char: a whole int on the wire
            w.uhyper(d.maxMemoryKiB)
            w.uhyper(d.memoryKiB)
            w.int(Int32(d.vcpus))                  // unsigned short: a whole int
            w.uhyper(await manager.cpuTime(d.uuid))
        case .domainGetOSType:
            _ = try await lookup(&a)
            w.string("hvm")
        case .domainIsActive:
            w.int(try await lookup(&a).isActive ? 1 : 0)
        case .domainIsPersistent:
            w.int(try await lookup(&a).persistent ? 1 : 0)
        case .domainGetAutostart:
            w.int(try await lookup(&a).autostart ? 1 : 0)
        case .domainSetAutostart:
            let d = try await lookup(&a)
            try await manager.setAutostart(d.uuid, try a.int() != 0)
        case .domainHasManagedSaveImage, .domainSnapshotNum:
            _ = try await lookup(&a)
            try checkFlags(try a.uint(), allowed: proc == .domainSnapshotNum ? 0x3FF : 0, proc.apiName)
            w.int(0)
        case .domainGetMessages:
            _ = try await lookup(&a)
            try checkFlags(try a.uint(), allowed: 0x3, "virDomainGetMessages")
            w.uint(0)
        case .domainGetXMLDesc:
            let d = try await lookup(&a)
            let flags = try a.uint()
            try checkFlags(flags, allowed: 0xF, "virDomainGetXMLDesc")
            w.string(try await manager.xml(d.uuid, inactive: flags & 2 != 0))
        case .domainGetMetadata:
            let d = try await lookup(&a)
            let type = try a.int()
            _ = try a.optionalString()
            try checkFlags(try a.uint(), allowed: 0x3, "virDomainGetMetadata")
            let value: String?
            switch type {
            case 0: value = d.description
            case 1: value = d.title
            case 2: value = nil
            default: throw ToolstackError.invalidArgument("unknown metadata type '\(type)'")
            }
            guard let value else {
                throw ToolstackError(.noDomainMetadata, "metadata not found: Requested metadata element is not present")
            }
            w.string(value)
        case .domainSetMetadata:
            let d = try await lookup(&a)
            let type = try a.int()
            let metadata = try a.optionalString()
            _ = try a.optionalString(); _ = try a.optionalString()
            try checkFlags(try a.uint(), allowed: 0x3, "virDomainSetMetadata")
            let value = metadata.flatMap { $0.isEmpty ? nil : $0 }
            switch type {
            case 0: try await manager.updateMetadata(d.uuid, title: d.title, description: value)
            case 1:
                if let value, value.contains("\n") { throw ToolstackError.invalidArgument("title can't contain newlines") }
                try await manager.updateMetadata(d.uuid, title: value, description: d.description)
            case 2: throw ToolstackError(.argumentUnsupported, "argument unsupported: Apus keeps no custom metadata elements")
            default: throw ToolstackError.invalidArgument("unknown metadata type '\(type)'")
            }

        // MARK: vCPUs
        case .domainGetMaxVcpus:
            w.int(Int32(try await lookup(&a).vcpus))
        case .domainGetVcpusFlags:
            let d = try await lookup(&a)
            let flags = try a.uint()
            try checkFlags(flags, allowed: 0xF, "virDomainGetVcpusFlags")
            guard flags & 8 == 0 else { throw ToolstackError(.operationUnsupported, "Operation not supported: Apus has no guest agent") }
            w.int(Int32(try await manager.vcpuCount(d.uuid, impact: .init(rawValue: flags & 7))))
        case .domainGetVcpus:
            let d = try await lookup(&a)
            let maxInfo = try a.int(), mapLength = try a.int()
            guard maxInfo >= 1, maxInfo <= 16384 else { throw ToolstackError.invalidArgument("maxinfo must be between 1 and 16384") }
            guard mapLength >= 0, Int64(maxInfo) * Int64(mapLength) <= 8_388_608 else { throw ToolstackError.invalidArgument("maxinfo * maplen is too large") }
            guard d.uuid != .zero else { throw ToolstackError.invalidState("Domain-0's CPUs are the host's: see nodeinfo") }
            let vcpus = try await manager.vcpus(d.uuid).prefix(Int(maxInfo))
            w.uint(UInt32(vcpus.count))
            for v in vcpus {
                w.uint(v.number)
                w.int(1) // VIR_VCPU_RUNNING
                w.uhyper(v.cpuNanoseconds)
                w.int(v.hostCPU)
            }
            // Affinity: every host CPU (apus-hv does not pin).
            let map = Self.allCPUs(HostInfo.cpuCount, bytes: Int(mapLength))
            w.opaque(Array(repeating: map, count: vcpus.count).flatMap { $0 })

        // MARK: definitions
        case .domainDefineXML:
            w.domain(try await manager.define(xml: try a.string(), strict: false))
        case .domainDefineXMLFlags:
            let xml = try a.string()
            let flags = try a.uint()
            try checkFlags(flags, allowed: 1, "virDomainDefineXMLFlags")
            w.domain(try await manager.define(xml: xml, strict: flags & 1 != 0))
        case .domainUndefine:
            try await manager.undefine(try await lookup(&a).uuid)
        case .domainUndefineFlags:
            let d = try await lookup(&a)
            // managed-save, snapshot and checkpoint metadata, nvram, tpm: Apus has none to remove.
            try checkFlags(try a.uint(), allowed: 0x7F, "virDomainUndefineFlags")
            try await manager.undefine(d.uuid)

        // MARK: lifecycle
        case .domainCreate:
            _ = try await manager.start(try await lookup(&a).uuid, paused: false)
        case .domainCreateWithFlags:
            let d = try await lookup(&a)
            let flags = try a.uint()
            try checkFlags(flags, allowed: 0x1 | 0x8, "virDomainCreateWithFlags") // PAUSED, FORCE_BOOT
            w.domain(try await manager.start(d.uuid, paused: flags & 1 != 0))
        case .domainCreateXML:
            let xml = try a.string()
            let flags = try a.uint()
            try checkFlags(flags, allowed: 0x1 | 0x10, "virDomainCreateXML") // PAUSED, VALIDATE
            w.domain(try await manager.create(xml: xml, paused: flags & 1 != 0, strict: flags & 0x10 != 0))
        case .domainShutdown:
            try await manager.shutdown(try await lookup(&a).uuid)
        case .domainShutdownFlags, .domainReboot:
            let d = try await lookup(&a)
            let flags = try a.uint()
            // Apus signals the guest through ACPI (the power button); the
            // guest agent, initctl and signal modes need things it lacks.
            guard flags & ~UInt32(1) == 0 else {
                throw ToolstackError(.argumentUnsupported, "argument unsupported: only the ACPI power button mode is supported (flags 0x\(String(flags, radix: 16)))")
            }
            if proc == .domainReboot {
                try await manager.reboot(d.uuid)
            } else {
                try await manager.shutdown(d.uuid)
            }
        case .domainReset:
            let d = try await lookup(&a)
            try checkFlags(try a.uint(), allowed: 0, "virDomainReset")
            try await manager.reset(d.uuid)
        case .domainDestroy:
            try await manager.destroy(try await lookup(&a).uuid)
        case .domainDestroyFlags:
            let d = try await lookup(&a)
            try checkFlags(try a.uint(), allowed: 0x3, "virDomainDestroyFlags") // GRACEFUL, REMOVE_LOGS
            try await manager.destroy(d.uuid)
        case .domainSuspend:
            try await manager.suspend(try await lookup(&a).uuid)
        case .domainResume:
            try await manager.resume(try await lookup(&a).uuid)
        case .domainSave, .domainSaveFlags, .domainRestore, .domainRestoreFlags, .domainManagedSave:
            throw ToolstackError.notSupported(proc.apiName)

        // MARK: statistics and tuning
        case .domainBlockStats:
            let d = try await lookup(&a)
            let c = try await manager.blockStats(d.uuid, device: try a.string(max: 4096))
            for v in [c.readRequests, c.readBytes, c.writeRequests, c.writeBytes, c.errors] { w.hyper(Int64(clamping: v)) }
        case .domainBlockStatsFlags:
            let d = try await lookup(&a)
            let path = try a.string(max: 4096)
            let wanted = try a.int()
            try checkFlags(try a.uint(), allowed: 0x4, "virDomainBlockStatsFlags") // TYPED_PARAM_STRING_OKAY
            guard wanted >= 0, wanted <= 16 else { throw ToolstackError.invalidArgument("nparams too large") }
            let c = try await manager.blockStats(d.uuid, device: path)
            let params: [(String, Int64)] = [
                ("rd_operations", c.readRequests), ("rd_bytes", c.readBytes), ("wr_operations", c.writeRequests),
                ("wr_bytes", c.writeBytes), ("flush_operations", c.flushRequests), ("rd_total_times", c.readNanoseconds),
                ("wr_total_times", c.writeNanoseconds), ("flush_total_times", c.flushNanoseconds), ("errs", c.errors),
            ].map { ($0.0, Int64(clamping: $0.1)) }
            if wanted == 0 {
                // The size probe: no parameters, just how many there are.
                w.uint(0)
                w.int(Int32(params.count))
            } else {
                let sent = params.prefix(Int(wanted))
                w.uint(UInt32(sent.count))
                for (k, v) in sent { w.typedParam(k, llong: v) }
                w.int(Int32(sent.count))
            }
        case .domainInterfaceStats:
            let d = try await lookup(&a)
            let c = try await manager.interfaceStats(d.uuid, device: try a.string(max: 4096))
            for v in [c.rxBytes, c.rxPackets, c.rxErrors, c.rxDrops, c.txBytes, c.txPackets, c.txErrors, c.txDrops] { w.hyper(v) }
        case .domainMemoryStats:
            let d = try await lookup(&a)
            let max = try a.uint()
            try checkFlags(try a.uint(), allowed: 0, "virDomainMemoryStats")
            guard max <= 1024 else { throw ToolstackError.invalidArgument("maxStats too large") }
            let stats = try await manager.memoryStats(d.uuid).prefix(Int(max))
            w.uint(UInt32(stats.count))
            for s in stats { w.int(s.tag); w.uhyper(s.value) }
        case .domainSetMemory, .domainSetMaxMemory, .domainSetMemoryFlags:
            let d = try await lookup(&a)
            let kib = try a.uhyper()
            var impact = DomainManager.Impact.live
            switch proc {
            case .domainSetMaxMemory: impact = [.maximum]
            case .domainSetMemoryFlags:
                let flags = try a.uint()
                try checkFlags(flags, allowed: 0x7, "virDomainSetMemoryFlags")
                impact = .init(rawValue: flags)
            default: break
            }
            try await manager.setMemory(d.uuid, kib: kib, impact: impact)
        case .domainSetVcpus, .domainSetVcpusFlags:
            let d = try await lookup(&a)
            let n = try a.uint()
            var impact = DomainManager.Impact.live
            if proc == .domainSetVcpusFlags {
                let flags = try a.uint()
                try checkFlags(flags, allowed: 0x1F, "virDomainSetVcpusFlags")
                guard flags & 0x18 == 0 else { throw ToolstackError(.operationUnsupported, "Operation not supported: Apus has no guest agent or hot-pluggable vCPUs") }
                impact = .init(rawValue: flags)
            }
            try await manager.setVCPUs(d.uuid, count: Int(min(n, 65536)), impact: impact)

        // MARK: console
        case .domainOpenConsole:
            return try await openConsole(&a, client: client, serial: serial)

        // MARK: events
        case .connectDomainEventCallbackRegisterAny:
            let event = try a.int()
            let filter = try a.optionalDomain()
            guard (0...EventID.last).contains(event) else { throw ToolstackError.invalidArgument("unsupported event ID \(event)") }
            var uuid: DomainUUID?
            if let filter { uuid = try await manager.lookup(uuid: filter.uuid).uuid }
            w.int(client.registerEvent(event, domain: uuid))
        case .connectDomainEventCallbackDeregisterAny:
            let id = try a.int()
            guard client.deregisterEvent(callback: id) else {
                throw ToolstackError.invalidArgument("callback \(id) not registered")
            }
        case .connectDomainEventRegisterAny:
            let event = try a.int()
            guard (0...EventID.last).contains(event) else { throw ToolstackError.invalidArgument("unsupported event ID \(event)") }
            guard client.registerLegacyEvent(event) else { throw ToolstackError.failed("domain event \(event) already registered") }
        case .connectDomainEventDeregisterAny:
            let event = try a.int()
            guard client.deregisterLegacyEvent(event) else { throw ToolstackError.failed("domain event \(event) not registered") }

        // MARK: native config formats (xl.cfg)
        case .connectDomainXMLFromNative:
            let format = try a.string(max: 64)
            let config = try a.string()
            try checkFlags(try a.uint(), allowed: 0, "virConnectDomainXMLFromNative")
            w.string(try NativeConfig.toXML(format: format, config: config))
        case .connectDomainXMLToNative:
            let format = try a.string(max: 64)
            let xml = try a.string()
            try checkFlags(try a.uint(), allowed: 0, "virConnectDomainXMLToNative")
            w.string(try NativeConfig.fromXML(format: format, xml: xml))

        case .domainEventLifecycle, .domainEventReboot, .domainEventCallbackLifecycle, .domainEventCallbackReboot:
            // Server-to-client messages, never calls.
            throw ToolstackError.unknownProcedure(proc.rawValue)
        }
        return Reply(w)
    }

    /// Opens `virsh console`: the reply goes first, then the stream's data.
    private func openConsole(_ a: inout XDRReader, client: Client, serial: UInt32) async throws -> Reply {
        let d = try await lookup(&a)
        let device = try a.optionalString()
        let flags = try a.uint()
        try checkFlags(flags, allowed: 0x3, "virDomainOpenConsole")
        if let device, !["serial0", "console0"].contains(device) {
            throw ToolstackError.failed("cannot find character device \(device)")
        }
        let name = try await manager.consoleName(d.uuid)
        client.beginStream(serial: serial)
        let session = await hub.openSession(
            name: name, force: flags & 1 != 0,
            output: { [weak client] bytes in client?.streamOutput(bytes, serial: serial) },
            ended: { [weak client] in client?.streamEnded(serial: serial) })
        guard let session else {
            client.abandonStream(serial: serial)
            throw ToolstackError.failed("Active console session exists for this domain")
        }
        guard client.attach(session, serial: serial) else {
            session.close()
            throw ToolstackError.failed("the client went away")
        }
        return Reply(afterReply: { [weak client] in client?.streamReplied(serial: serial) })
    }

    /// Reads a remote_nonnull_domain and finds it (by UUID, as libvirtd does).
    private func lookup(_ a: inout XDRReader) async throws -> DomainInfo {
        let ref = try a.domain()
        return try await manager.lookup(uuid: ref.uuid)
    }

    private func checkFlags(_ flags: UInt32, allowed: UInt32, _ function: String) throws(ToolstackError) {
        guard flags & ~allowed == 0 else {
            throw .invalidArgument("unsupported flags (0x\(String(flags & ~allowed, radix: 16))) in function \(function)")
        }
    }

    static let supportedFeatures: Set<Int32> = [
        DriverFeature.typedParamString.rawValue, DriverFeature.programKeepalive.rawValue,
        DriverFeature.remoteEventCallback.rawValue, DriverFeature.remoteCloseCallback.rawValue,
    ]

    /// Connection URIs this daemon serves: `apus:///system` and friends.
    static func acceptsURI(_ name: String) -> Bool {
        name.hasPrefix("apus:") || name.hasPrefix("apus+")
    }

    /// A CPU bitmap with the first `n` CPUs set.
    static func allCPUs(_ n: Int, bytes: Int? = nil) -> [UInt8] {
        var map = [UInt8](repeating: 0, count: bytes ?? (n + 7) / 8)
        for cpu in 0..<n where cpu / 8 < map.count { map[cpu / 8] |= 1 << (cpu % 8) }
        return map
    }
}

