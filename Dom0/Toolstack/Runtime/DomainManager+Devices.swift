import ApusControl
import ApusSys

/// Changing a domain's devices and poking its hardware: attach, detach and
/// update of disks and interfaces, block resize, keys, NMI, rename.
extension DomainManager {
    /// What `attach-device`, `detach-device` and `update-device` do.
    public enum DeviceChange: Sendable { case attach, detach, update }

    /// Applies a device change to the persistent definition (`--config`)
    /// and/or the running domain (`--live`; CURRENT picks by state).
    public func changeDevice(_ uuid: DomainUUID, xml: String, _ change: DeviceChange, impact: Impact) throws(ToolstackError) {
        var d = try domain(uuid)
        let (live, config) = try resolve(impact, d)
        let device = try DomainXML.parseDevice(xml, uuid: uuid)
        if live {
            let what: String
            switch device {
            case .disk: what = "disks"
            case .interface: what = "interfaces"
            }
            throw ToolstackError(.operationUnsupported, "Operation not supported: Apus cannot \(change == .attach ? "attach" : change == .detach ? "detach" : "update") \(what) of a running domain: its virtio-mmio devices are fixed at boot; change the persistent definition (--config) and restart the domain")
        }
        guard config, var c = d.config else { return }
        switch (change, device) {
        case (.attach, .disk(let disk)):
            guard !c.disks.contains(where: { $0.target == disk.target }) else { throw .failed("target \(disk.target) already exists") }
            c.disks.append(disk)
        case (.attach, .interface(var iface, let macGiven)):
            if !macGiven { iface.mac = Self.freeMAC(for: c, uuid: uuid) }
            guard !c.interfaces.contains(where: { $0.mac == iface.mac }) else { throw .failed("MAC address '\(iface.mac)' is already in use by the domain") }
            c.interfaces.append(iface)
        case (.detach, .disk(let disk)):
            guard let i = c.disks.firstIndex(where: { $0.target == disk.target }) else { throw .failed("disk \(disk.target) not found") }
            c.disks.remove(at: i)
        case (.detach, .interface(let iface, let macGiven)):
            c.interfaces.remove(at: try Self.interfaceIndex(c, iface, macGiven: macGiven))
        case (.update, .disk(let disk)):
            guard let i = c.disks.firstIndex(where: { $0.target == disk.target }) else { throw .failed("target \(disk.target) doesn't exist") }
            c.disks[i] = disk
        case (.update, .interface(let iface, let macGiven)):
            let i = try Self.interfaceIndex(c, iface, macGiven: macGiven)
            var updated = iface
            updated.mac = c.interfaces[i].mac
            c.interfaces[i] = updated
        }
        guard c.disks.count + c.interfaces.count + c.filesystems.count <= DomainDefinition.maxDevices else {
            throw .unsupported("a domain has at most \(DomainDefinition.maxDevices) disks, interfaces and filesystems together")
        }
        try store.save(c)
        d.config = c
        domains[uuid] = d
    }

    /// The device XML of the device with libvirt alias `alias` (virtio-disk0,
    /// net1), for DETACH_DEVICE_ALIAS.
    public func deviceXML(_ uuid: DomainUUID, alias: String) throws(ToolstackError) -> String {
        let d = try domain(uuid)
        guard let def = d.live?.definition ?? d.config else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        if alias.hasPrefix("virtio-disk"), let i = Int(alias.dropFirst("virtio-disk".count)), def.disks.indices.contains(i) {
            return "<disk><target dev='\(def.disks[i].target)'/><source file='\(XMLWriter.escape(def.disks[i].source, attribute: true))'/></disk>"
        }
        if alias.hasPrefix("net"), let i = Int(alias.dropFirst("net".count)), def.interfaces.indices.contains(i) {
            return "<interface type='\(def.interfaces[i].type.rawValue)'><mac address='\(def.interfaces[i].mac)'/></interface>"
        }
        throw .invalidArgument("no device found with alias \(alias)")
    }

    /// The interface a device XML names: by MAC, or the only one.
    static func interfaceIndex(_ def: DomainDefinition, _ iface: InterfaceDefinition, macGiven: Bool) throws(ToolstackError) -> Int {
        if macGiven {
            guard let i = def.interfaces.firstIndex(where: { $0.mac == iface.mac }) else {
                throw .failed("no interface with MAC address '\(iface.mac)' found")
            }
            return i
        }
        guard def.interfaces.count == 1 else {
            throw .failed(def.interfaces.isEmpty ? "no interface found" : "multiple interfaces: give the <mac address> of the one to change")
        }
        return 0
    }

    /// A MAC for a new interface that none of the domain's use.
    static func freeMAC(for def: DomainDefinition, uuid: DomainUUID) -> String {
        var index = def.interfaces.count
        while true {
            let mac = DomainXML.defaultMAC(uuid: uuid, index: index)
            if !def.interfaces.contains(where: { $0.mac == mac }) { return mac }
            index += 1
        }
    }

    // MARK: running domains' hardware

    /// `virsh send-key`: `scancodes` (PC set 1) pressed together for `holdMilliseconds`.
    public func sendKey(_ uuid: DomainUUID, scancodes: [UInt16], holdMilliseconds: UInt32) async throws(ToolstackError) {
        _ = try await hypervisor(uuid, HypervisorControl.command(.sendKey(holdMilliseconds: holdMilliseconds, scancodes: scancodes)))
    }

    /// `virsh inject-nmi`.
    public func injectNMI(_ uuid: DomainUUID) async throws(ToolstackError) {
        _ = try await hypervisor(uuid, HypervisorControl.command(.injectNMI))
    }

    /// `virsh blockresize`: grows disk `name` (target or source path) to
    /// `bytes` (rounded up to a whole sector); the guest sees the new
    /// capacity at once (a configuration-change interrupt).
    public func blockResize(_ uuid: DomainUUID, disk name: String, bytes: UInt64) async throws(ToolstackError) {
        let (_, live) = try live(uuid)
        guard let index = live.definition.disks.firstIndex(where: { $0.target == name || $0.source == name }) else {
            throw .invalidArgument("disk '\(name)' was not found in the domain config")
        }
        let disk = live.definition.disks[index]
        guard !disk.readOnly else { throw ToolstackError(.operationUnsupported, "Operation not supported: can't resize empty or readonly disk '\(disk.target)'") }
        guard let backend = live.record.backends.first(where: { $0.kind == .disk && $0.device == disk.target }) else {
            throw .internalError("disk \(disk.target) has no backend")
        }
        let (rounded, overflow) = bytes.addingReportingOverflow(511)
        guard !overflow else { throw .invalidArgument("size \(bytes) is too large") }
        do {
            _ = try await ControlClient.shared.call(backend.control, BlockBackendControl.resize(bytes: rounded / 512 * 512))
        } catch {
            if case .refused(let why) = error { throw .failed("cannot resize \(disk.target): \(why)") }
            throw .failed("cannot reach the backend of \(disk.target): \(error)")
        }
        // Disks come first among the virtio devices, in definition order.
        _ = try await hypervisor(uuid, HypervisorControl.command(.configChanged(device: index)))
    }

    // MARK: names

    /// `virsh domrename`: an inactive persistent domain takes a new name.
    public func rename(_ uuid: DomainUUID, to newName: String) throws(ToolstackError) {
        var d = try domain(uuid)
        guard d.live == nil else { throw .invalidState("cannot rename active domain") }
        guard var c = d.config else { throw .invalidState("cannot rename a transient domain") }
        guard snapshots(of: c.name).list.isEmpty else { throw .invalidState("cannot rename domain with snapshots") }
        try DomainXML.validateName(newName)
        guard !domains.values.contains(where: { $0.name == newName && $0.uuid != uuid }) else {
            throw .failed("domain with name '\(newName)' already exists")
        }
        let oldName = c.name
        guard newName != oldName else { return }
        let autostart = d.autostart
        c.name = newName
        try store.save(c)
        store.delete(oldName)
        if autostart { store.setAutostart(newName, true) }
        publish(name: oldName, uuid: uuid, id: -1, kind: .lifecycle(event: LifecycleEvent.undefined, detail: 1))
        d.config = c
        domains[uuid] = d
        publish(name: newName, uuid: uuid, id: -1, kind: .lifecycle(event: LifecycleEvent.defined, detail: 2))
    }
}
