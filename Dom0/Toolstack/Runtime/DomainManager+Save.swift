import ApusControl
import ApusSys

/// A save or restore in progress or just finished, as `virsh domjobinfo`
/// shows it.
public struct DomainJob: Sendable {
    /// virDomainJobOperation.
    public enum Operation: Int32, Sendable { case save = 2, restore = 3 }
    public var operation: Operation
    /// When it began (monotonic nanoseconds).
    public var started: UInt64
    /// Guest RAM, the most a save writes of it.
    public var memoryBytes: UInt64
    /// Where the machine's state is being written (its size is the progress).
    var stateFile: String?
    /// Set once the job is over: how long it took and what it wrote.
    public var finished: (nanoseconds: UInt64, bytes: UInt64)?

    /// Bytes of state written so far.
    public var processed: UInt64 {
        if let finished { return finished.bytes }
        return stateFile.flatMap { FileSystem.size($0) }.map { UInt64(max(0, $0)) } ?? 0
    }
    public var elapsedNanoseconds: UInt64 { finished?.nanoseconds ?? (Clock.monotonicNanoseconds() - started) }
}

/// `virsh save`, `restore` and `managedsave`: a running domain's machine
/// state into a save image (``SaveImage``) and back into a new apus-hv
/// with new backends.
extension DomainManager {
    /// The domain's save or restore in progress, or (`completed`) the last
    /// one to finish, which `keep` leaves for the next call.
    public func job(_ uuid: DomainUUID, completed: Bool, keep: Bool) throws(ToolstackError) -> DomainJob? {
        _ = try domain(uuid)
        if !completed { return runningJobs[uuid] }
        defer { if !keep { completedJobs[uuid] = nil } }
        return completedJobs[uuid]
    }

    func beginJob(_ uuid: DomainUUID, _ operation: DomainJob.Operation, memoryBytes: UInt64, stateFile: String?) {
        runningJobs[uuid] = DomainJob(operation: operation, started: Clock.monotonicNanoseconds(), memoryBytes: memoryBytes, stateFile: stateFile)
    }

    func endJob(_ uuid: DomainUUID, succeeded: Bool) {
        guard var job = runningJobs.removeValue(forKey: uuid) else { return }
        guard succeeded else { return }
        job.finished = (Clock.monotonicNanoseconds() - job.started, job.processed)
        completedJobs[uuid] = job
    }

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
        guard runningJobs[uuid] == nil else { throw .invalidState("another job is running on domain '\(definition.name)'") }
        beginJob(uuid, .save, memoryBytes: definition.memoryKiB * 1024, stateFile: machineState)
        var saved = false
        defer { endJob(uuid, succeeded: saved) }
        _ = try await hypervisor(uuid, HypervisorControl.save(machineState, then: .paused), timeoutMilliseconds: Self.saveTimeoutMilliseconds)
        do {
            try await SaveImage.write(from: machineState, xml: DomainXML.format(definition), paused: paused, to: path)
        } catch {
            // The machine is intact, paused: it goes on as it was.
            if !wasPaused { _ = try? await hypervisor(uuid, HypervisorControl.command(.resume)) }
            throw error
        }
        runningJobs[uuid]?.stateFile = path
        saved = true
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
        beginJob(def.uuid, .restore, memoryBytes: def.memoryKiB * 1024, stateFile: nil)
        do {
            let info = try await start(def.uuid, paused: paused ?? image.paused, definition: def, restoreFrom: path)
            runningJobs[def.uuid]?.stateFile = path
            endJob(def.uuid, succeeded: true)
            return info
        } catch {
            endJob(def.uuid, succeeded: false)
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

    /// The managed-save image of `uuid`, which must have one.
    func managedSaveImage(_ uuid: DomainUUID) throws(ToolstackError) -> String {
        let d = try domain(uuid)
        let path = paths.managedSaveImage(d.name)
        guard d.config != nil, FileSystem.exists(path) else { throw .invalidArgument("domain '\(d.name)' has no managed save image") }
        return path
    }

    /// `virsh managedsave-dumpxml`.
    public func managedSaveXML(_ uuid: DomainUUID) async throws(ToolstackError) -> String {
        try await SaveImage.read(try managedSaveImage(uuid)).xml
    }

    /// `virsh managedsave-define`: nil `xml` keeps the definition and changes only the state a start goes on in.
    public func defineManagedSaveXML(_ uuid: DomainUUID, xml: String?, startPaused: Bool?) async throws(ToolstackError) {
        let path = try managedSaveImage(uuid)
        if let xml {
            try await defineSaveImageXML(path, xml: xml, startPaused: startPaused)
        } else {
            let image = try await SaveImage.read(path)
            try await SaveImage.write(from: path, xml: image.xml, paused: startPaused ?? image.paused, to: path)
        }
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
