import ApusControl
import ApusSys

/// `virsh save`, `restore` and `managedsave`: a running domain's machine
/// state into a save image (``SaveImage``) and back into a new apus-hv
/// with new backends.
extension DomainManager {
    /// How long apus-hv may take to write a machine's state.
    static let saveTimeoutMilliseconds: UInt64 = 30 * 60 * 1000

    /// Saves the running domain `uuid` into `path` and stops it. `xml`
    /// replaces the definition stored with it (the same domain, host-side
    /// changes); `startPaused` is what a restore does by default (nil: the
    /// state it had). If anything fails the domain goes on as it was.
    public func save(_ uuid: DomainUUID, to path: String, xml: String?, startPaused: Bool?) async throws(ToolstackError) {
        let (d, live) = try live(uuid)
        guard !live.destroying, !live.stopping else { throw .invalidState("domain is being stopped") }
        guard path.hasPrefix("/") else { throw .invalidArgument("the save file must be an absolute path (got '\(path)')") }
        let directory = FileSystem.directory(of: path)
        guard FileSystem.status(directory)?.kind == .directory else { throw .invalidArgument("cannot save to \(path): \(directory) is not a directory") }
        var definition = live.definition
        if let xml {
            let replacement = try DomainXML.parse(xml, strict: false)
            guard replacement.uuid == definition.uuid, replacement.name == definition.name else {
                throw .invalidArgument("the XML given is for domain '\(replacement.name)' (\(replacement.uuid)), not '\(definition.name)'")
            }
            definition = replacement
        }
        let paused = startPaused ?? (d.state == .paused)
        // apus-hv writes inside its jail (the runtime directory); apusd
        // then writes the image with the domain's XML where the user asked.
        let machineState = paths.runtimeDirectory(definition.name) + "/save.state"
        FileSystem.remove(machineState)
        defer { FileSystem.remove(machineState) }
        let wasPaused = d.state == .paused
        _ = try await hypervisor(uuid, HypervisorControl.save(machineState, then: .paused), timeoutMilliseconds: Self.saveTimeoutMilliseconds)
        do {
            try await SaveImage.write(from: machineState, xml: DomainXML.format(definition), paused: paused, to: path)
        } catch {
            // The machine is intact, paused: it goes on as it was.
            if !wasPaused { _ = try? await hypervisor(uuid, HypervisorControl.command(.resume)) }
            throw error
        }
        guard let now = domains[uuid]?.live, now.record.hypervisorPid == live.record.hypervisorPid, !now.destroying else {
            throw .failed("the domain stopped while it was being saved; \(path) holds its state")
        }
        domains[uuid]?.live?.destroying = true
        await stopped(uuid, record: now.record, state: .shutoff, reason: StateReason.shutoffSaved,
                      events: [.lifecycle(event: LifecycleEvent.stopped, detail: LifecycleEvent.stoppedSaved)])
    }

    /// `virsh restore`: a new domain (or the defined one of the same
    /// name and uuid) from a save image. `xml` replaces the image's
    /// definition (the same machine: apus-hv refuses another shape);
    /// `paused` overrides the state the image was saved to start in.
    public func restore(from path: String, xml: String?, paused: Bool?) async throws(ToolstackError) -> DomainInfo {
        guard path.hasPrefix("/") else { throw .invalidArgument("the save file must be an absolute path (got '\(path)')") }
        let image = try await SaveImage.read(path)
        let saved = try DomainXML.parse(image.xml, strict: false)
        var def = saved
        if let xml {
            def = try DomainXML.parse(xml, strict: false)
            guard def.uuid == saved.uuid else {
                throw .invalidArgument("the XML given is for domain '\(def.name)' (\(def.uuid)); the image holds '\(saved.name)' (\(saved.uuid))")
            }
        }
        if let existing = domains.values.first(where: { $0.name == def.name }), existing.uuid != def.uuid {
            throw .failed("domain '\(def.name)' already exists with uuid \(existing.uuid)")
        }
        if let same = domains[def.uuid] {
            guard same.live == nil else { throw .invalidState("domain '\(same.name)' is already active") }
        } else {
            domains[def.uuid] = Domain(config: nil)
        }
        do {
            return try await start(def.uuid, paused: paused ?? image.paused, definition: def, restoreFrom: path)
        } catch {
            if domains[def.uuid]?.live == nil && domains[def.uuid]?.config == nil { domains.removeValue(forKey: def.uuid) }
            throw error
        }
    }

    /// `virsh managedsave`: saved where `virsh start` finds it.
    public func managedSave(_ uuid: DomainUUID, startPaused: Bool?) async throws(ToolstackError) {
        let d = try domain(uuid)
        guard d.config != nil else { throw .invalidState("cannot do managed save for transient domain") }
        try await save(uuid, to: paths.managedSaveImage(d.name), xml: nil, startPaused: startPaused)
    }

    public func hasManagedSave(_ uuid: DomainUUID) throws(ToolstackError) -> Bool {
        info(try domain(uuid)).hasManagedSave
    }

    /// `virsh managedsave-remove`.
    public func removeManagedSave(_ uuid: DomainUUID) throws(ToolstackError) {
        let d = try domain(uuid)
        FileSystem.remove(paths.managedSaveImage(d.name))
    }

    /// `virsh save-image-dumpxml`.
    public func saveImageXML(_ path: String) async throws(ToolstackError) -> String {
        guard path.hasPrefix("/") else { throw .invalidArgument("the save file must be an absolute path (got '\(path)')") }
        return try await SaveImage.read(path).xml
    }

    /// `virsh save-image-define`: the image's definition replaced (the same
    /// domain), and with `startPaused` the state a restore starts in.
    public func defineSaveImageXML(_ path: String, xml: String, startPaused: Bool?) async throws(ToolstackError) {
        guard path.hasPrefix("/") else { throw .invalidArgument("the save file must be an absolute path (got '\(path)')") }
        let image = try await SaveImage.read(path)
        let old = try DomainXML.parse(image.xml, strict: false), new = try DomainXML.parse(xml, strict: false)
        guard old.uuid == new.uuid, old.name == new.name else {
            throw .invalidArgument("the XML given is for domain '\(new.name)' (\(new.uuid)); the image holds '\(old.name)' (\(old.uuid))")
        }
        try await SaveImage.write(from: path, xml: DomainXML.format(new), paused: startPaused ?? image.paused, to: path)
    }
}
