import ApusControl
import ApusSys
import DiskImage

/// `virsh snapshot-*`: internal snapshots. Each qcow2 disk keeps the
/// disk's state in its own snapshot table (`qemu-img snapshot -l` lists
/// it, by the snapshot's name); a running or paused domain's memory state
/// is a save image beside the snapshot's metadata (libvirt's layout:
/// one directory per domain, `NAME.xml`, and here `NAME.save`).
///
/// A running domain is held while its disks are taken: apus-hv pauses the
/// vCPUs, stops every ring once its backend completed what it took, and
/// writes the memory state; each apus-blkback then snapshots its image;
/// then the rings and vCPUs go on. Stopped domains' images are changed by
/// apusd directly (no backend has them open).
extension DomainManager {
    /// What a snapshot operation may change: the flags virsh passes, named.
    public struct SnapshotCreateOptions: Sendable {
        public var halt = false
        public var diskOnly = false
        public var noMetadata = false
        public var redefine = false
        /// With `redefine`: the snapshot becomes the current one.
        public var current = false
        public init() {}
    }

    public enum SnapshotRevertTarget: Sendable { case asTaken, running, paused }

    public enum SnapshotDeleteScope: Sendable { case itself, withChildren, childrenOnly }

    // MARK: the store

    /// The domain's snapshots (oldest first) and the current one's name.
    func snapshots(of name: String) -> (list: [DomainSnapshot], current: String?) {
        let dir = paths.snapshotDirectory(name)
        var list: [DomainSnapshot] = []
        var current: String?
        for file in ProcessControl.directoryEntries(dir) where file.hasSuffix(".xml") {
            guard let text = ProcessControl.readText(dir + "/" + file, limit: ProcessControl.stateFileLimit),
                  let (s, isCurrent) = try? DomainSnapshot.parseStored(text) else {
                report("ignoring unreadable snapshot metadata \(dir)/\(file)")
                continue
            }
            list.append(s)
            if isCurrent { current = s.name }
        }
        list.sort { ($0.creationTime, $0.name) < ($1.creationTime, $1.name) }
        return (list, current)
    }

    func storeSnapshot(_ domain: String, _ s: DomainSnapshot, current: Bool) throws(ToolstackError) {
        let dir = paths.snapshotDirectory(domain)
        do {
            try ProcessControl.makeDirectories(dir)
            try ProcessControl.writeFileAtomically(dir + "/" + s.name + ".xml", s.format(current: current), mode: 0o600)
        } catch {
            throw .failed("cannot write the metadata of snapshot '\(s.name)': \(error)")
        }
    }

    /// Keeps a snapshot just taken as the current one; `previous` (the
    /// current one until now) no longer is.
    func storeNewCurrent(_ domain: String, _ s: DomainSnapshot, previous: DomainSnapshot?) throws(ToolstackError) {
        try storeSnapshot(domain, s, current: true)
        if let previous { try storeSnapshot(domain, previous, current: false) }
    }

    /// Marks `name` (or nothing) as the current snapshot.
    func setCurrentSnapshot(_ domain: String, _ name: String?) throws(ToolstackError) {
        let (list, current) = snapshots(of: domain)
        guard current != name else { return }
        for s in list where s.name == current || s.name == name { try storeSnapshot(domain, s, current: s.name == name) }
    }

    func memoryStateFile(_ domain: String, _ snapshot: String) -> String { paths.snapshotDirectory(domain) + "/" + snapshot + ".save" }

    func snapshot(_ uuid: DomainUUID, _ name: String) throws(ToolstackError) -> (Domain, DomainSnapshot, current: Bool) {
        let d = try domain(uuid)
        let (list, current) = snapshots(of: d.name)
        guard let s = list.first(where: { $0.name == name }) else {
            throw .noSnapshot("no domain snapshot with matching name '\(name)'")
        }
        return (d, s, s.name == current)
    }

    // MARK: queries

    /// Names of `uuid`'s snapshots, oldest first, as the filter admits them.
    public func snapshotNames(_ uuid: DomainUUID, filter: SnapshotFilter) throws(ToolstackError) -> [String] {
        let d = try domain(uuid)
        let (list, _) = snapshots(of: d.name)
        return list.filter { filter.admits($0, in: list) }.map(\.name)
    }

    /// Names of the children (or with `descendants`, all descendants) of a snapshot.
    public func snapshotChildren(_ uuid: DomainUUID, of name: String, descendants: Bool, filter: SnapshotFilter) throws(ToolstackError) -> [String] {
        let (d, _, _) = try snapshot(uuid, name)
        let (list, _) = snapshots(of: d.name)
        var found: Set<String> = []
        var frontier = [name]
        while let next = frontier.popLast() {
            // A set, so metadata whose parents loop cannot loop this.
            for s in list where s.parent == next && s.name != name && found.insert(s.name).inserted {
                if descendants { frontier.append(s.name) }
            }
        }
        return list.filter { found.contains($0.name) && filter.admits($0, in: list) }.map(\.name)
    }

    public func snapshotXML(_ uuid: DomainUUID, _ name: String) throws(ToolstackError) -> String {
        try snapshot(uuid, name).1.format()
    }

    public func snapshotParent(_ uuid: DomainUUID, _ name: String) throws(ToolstackError) -> String {
        guard let parent = try snapshot(uuid, name).1.parent else {
            throw .noSnapshot("snapshot '\(name)' does not have a parent")
        }
        return parent
    }

    public func currentSnapshot(_ uuid: DomainUUID) throws(ToolstackError) -> String? {
        snapshots(of: try domain(uuid).name).current
    }

    public func isCurrentSnapshot(_ uuid: DomainUUID, _ name: String) throws(ToolstackError) -> Bool {
        try snapshot(uuid, name).current
    }

    public func snapshotExists(_ uuid: DomainUUID, _ name: String) throws(ToolstackError) {
        _ = try snapshot(uuid, name)
    }

    // MARK: create

    /// SNAPSHOT_CREATE_XML: a new snapshot from the client's
    /// `<domainsnapshot>`; returns its name.
    public func createSnapshot(_ uuid: DomainUUID, xml: String, options: SnapshotCreateOptions) async throws(ToolstackError) -> String {
        if options.redefine { return try redefineSnapshot(uuid, xml: xml, current: options.current) }
        guard !options.noMetadata else { throw .unsupportedOperation("snapshots without metadata are not supported") }
        let d = try domain(uuid)
        var (request, memoryMode) = try DomainSnapshot.parseRequest(xml)
        if request.name.isEmpty { request.name = String(Clock.realtime().seconds) }
        let (list, current) = snapshots(of: d.name)
        guard !list.contains(where: { $0.name == request.name }) else {
            throw .invalidState("domain snapshot '\(request.name)' already exists")
        }
        guard d.config != nil || d.live != nil else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        if options.diskOnly {
            var s = try await takeExternal(uuid, request)
            s.parent = current
            try storeNewCurrent(d.name, s, previous: list.first { $0.name == current })
            return s.name
        }
        let live = d.live
        let running = live != nil
        guard running || memoryMode != .internal else { throw .invalidArgument("a memory snapshot needs a running domain") }
        if running, memoryMode == .no { throw .unsupportedOperation("a running domain's internal snapshot includes its memory (memory snapshot='no' needs --disk-only)") }
        if memoryMode == .external { throw .unsupportedOperation("external memory snapshots are not supported") }
        guard let unresolved = live?.definition ?? d.config else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        let def = try await resolveVolumes(unresolved)
        // Which disks: every qcow2 disk, unless the request says otherwise.
        var disks: [DomainSnapshot.Disk] = []
        for disk in def.disks {
            let asked = request.disks.first { $0.target == disk.target }?.mode
            let mode = asked ?? (disk.readOnly ? .no : .internal)
            if mode == .external { throw .unsupportedOperation("external snapshot of disk \(disk.target) needs --disk-only (no memory state)") }
            if mode == .internal, disk.format != .qcow2 {
                throw .unsupportedOperation("internal snapshot for disk \(disk.target) unsupported for storage type \(disk.format.rawValue)")
            }
            disks.append(.init(target: disk.target, mode: mode))
        }
        for asked in request.disks where !def.disks.contains(where: { $0.target == asked.target }) {
            throw .invalidArgument("no disk named '\(asked.target)'")
        }
        var s = request
        s.disks = disks
        s.parent = current
        s.creationTime = Int64(Clock.realtime().seconds)
        s.domain = unresolved
        s.memory = running
        let taking = disks.filter { $0.mode == .internal }
        if let live {
            s.state = d.state == .paused ? .paused : .running
            try await takeLive(uuid, d.name, live, snapshot: s, disks: taking, halt: options.halt)
        } else {
            s.state = .shutoff
            try await takeOffline(def, name: s.name, disks: taking)
        }
        try storeNewCurrent(d.name, s, previous: list.first { $0.name == current })
        return s.name
    }

    /// REDEFINE: what `virsh snapshot-current DOMAIN NAME` sends (the
    /// snapshot's own XML, with CURRENT) to make a snapshot the current one.
    /// Metadata for a snapshot apusd did not take is refused: the disks
    /// would not hold it.
    private func redefineSnapshot(_ uuid: DomainUUID, xml: String, current: Bool) throws(ToolstackError) -> String {
        let (request, _) = try DomainSnapshot.parseRequest(xml)
        let (d, _, _) = try snapshot(uuid, request.name)
        if current { try setCurrentSnapshot(d.name, request.name) }
        return request.name
    }

    /// A running domain: held, memory and disks taken, then on as it was (or stopped, with `halt`).
    private func takeLive(_ uuid: DomainUUID, _ name: String, _ live: Live, snapshot s: DomainSnapshot,
                          disks: [DomainSnapshot.Disk], halt: Bool) async throws(ToolstackError) {
        let machineState = paths.runtimeDirectory(name) + "/snapshot.state"
        FileSystem.remove(machineState)
        defer { FileSystem.remove(machineState) }
        let wasPaused = s.state == .paused
        _ = try await hypervisor(uuid, HypervisorControl.save(machineState, then: .held), timeoutMilliseconds: Self.saveTimeoutMilliseconds)
        var taken: [String] = []
        var failure: ToolstackError?
        for disk in disks {
            guard let backend = live.record.backends.first(where: { $0.kind == .disk && $0.device == disk.target }) else {
                failure = .failed("disk \(disk.target) has no backend"); break
            }
            do {
                _ = try await ControlClient.shared.call(backend.control, BlockBackendControl.snapshotCreate(s.name, seconds: UInt32(truncatingIfNeeded: s.creationTime)),
                                                        timeoutMilliseconds: Self.saveTimeoutMilliseconds)
                taken.append(backend.control)
            } catch {
                failure = .failed("snapshot of disk \(disk.target): \(error)"); break
            }
        }
        if failure != nil { await Self.deleteDiskSnapshots(taken, s.name) }
        // The rings go on (and the vCPUs, if they ran) before the memory state is copied.
        _ = try? await hypervisor(uuid, HypervisorControl.command(wasPaused ? .release : .resume))
        if let failure { throw failure }
        try? ProcessControl.makeDirectories(paths.snapshotDirectory(name))
        do {
            try await SaveImage.write(from: machineState, xml: DomainXML.format(live.definition), paused: wasPaused,
                                      to: memoryStateFile(name, s.name))
        } catch {
            await Self.deleteDiskSnapshots(taken, s.name)
            throw error
        }
        if halt { try await destroy(uuid) }
    }

    /// Undoes a snapshot the backends at `controls` took (best effort).
    private static func deleteDiskSnapshots(_ controls: [String], _ name: String) async {
        for control in controls { _ = try? await ControlClient.shared.call(control, BlockBackendControl.snapshotDelete(name)) }
    }

    /// `--disk-only`: each disk goes on in a new qcow2 image whose backing
    /// file is the one it had, which stays as the snapshot. A running
    /// domain is held meanwhile; its disk's apus-blkback is replaced by one
    /// serving the new image, which apus-hv connects to while the rings
    /// are stopped, so the guest sees no change. The running and the
    /// persistent definitions name the new images afterwards.
    private func takeExternal(_ uuid: DomainUUID, _ request: DomainSnapshot) async throws(ToolstackError) -> DomainSnapshot {
        let d = try domain(uuid)
        guard let unresolved = d.live?.definition ?? d.config else { throw .noDomain("no domain with matching uuid '\(uuid)'") }
        let def = try await resolveVolumes(unresolved)
        for asked in request.disks where !def.disks.contains(where: { $0.target == asked.target }) {
            throw .invalidArgument("no disk named '\(asked.target)'")
        }
        var s = request
        s.disks = []
        let allowed = await allowedPaths()
        var overlays: [(disk: DiskDefinition, overlay: String)] = []
        for disk in def.disks {
            let asked = request.disks.first { $0.target == disk.target }
            let mode = asked?.mode ?? (disk.readOnly ? .no : .external)
            guard mode != .internal else { throw .unsupportedOperation("a disk-only snapshot cannot also take disk \(disk.target) internally") }
            guard mode == .external else { s.disks.append(.init(target: disk.target, mode: .no)); continue }
            let overlay = asked?.source ?? Self.overlayName(disk.source, snapshot: s.name)
            guard !FileSystem.exists(overlay) else { throw .invalidArgument("the snapshot file \(overlay) for disk \(disk.target) already exists") }
            if case .failure(let why) = allowed.resolve(FileSystem.directory(of: overlay), "snapshot file's directory", kind: .directory) {
                throw .denied(why.description)
            }
            overlays.append((disk, overlay))
            s.disks.append(.init(target: disk.target, mode: .external, source: overlay))
        }
        guard !overlays.isEmpty else { throw .invalidArgument("a disk-only snapshot needs at least one disk") }
        s.state = .diskSnapshot
        s.memory = false
        s.creationTime = Int64(Clock.realtime().seconds)
        s.domain = unresolved
        let live = d.live
        let wasPaused = d.state == .paused
        if live != nil { _ = try await hypervisor(uuid, HypervisorControl.command(.hold)) }
        var failure: ToolstackError?
        var made: [String] = []
        do {
            let work = overlays
            try await Blocking.run("apus-snapshot") { () throws(ToolstackError) in
                for (disk, overlay) in work {
                    do {
                        let size = try DiskImages.virtualSize(disk.source, format: disk.format)
                        try Qcow2Image.create(path: overlay, size: size, backingFile: disk.source, backingFormat: disk.format)
                    } catch {
                        throw .failed("cannot create \(overlay) over \(disk.source): \(error)")
                    }
                }
            }
            made = overlays.map(\.overlay)
            if live != nil {
                for (disk, overlay) in overlays { try await switchDiskBackend(uuid, target: disk.target, to: overlay) }
            }
        } catch {
            failure = error
        }
        if live != nil { _ = try? await hypervisor(uuid, HypervisorControl.command(wasPaused ? .release : .resume)) }
        if let failure {
            // Images no backend took are removed; a switched disk stays on its new image.
            let inUse = Set(domains[uuid]?.live?.definition.disks.map(\.source) ?? [])
            for path in made where !inUse.contains(path) { FileSystem.remove(path) }
            throw failure
        }
        // The persistent definition goes on in the new images too.
        if var config = domains[uuid]?.config {
            for (disk, overlay) in overlays {
                guard let i = config.disks.firstIndex(where: { $0.target == disk.target }) else { continue }
                config.disks[i].type = .file
                config.disks[i].volume = nil
                config.disks[i].source = overlay
                config.disks[i].format = .qcow2
            }
            try store.save(config)
            domains[uuid]?.config = config
        }
        return s
    }

    /// libvirt's name for an external snapshot's file: the image's name
    /// with the snapshot's name for its extension.
    static func overlayName(_ source: String, snapshot: String) -> String {
        let directory = FileSystem.directory(of: source)
        var base = String(source.dropFirst(directory.count).drop { $0 == "/" })
        if let dot = base.lastIndex(of: "."), dot != base.startIndex { base = String(base[..<dot]) }
        return (directory == "/" ? "" : directory) + "/" + base + "." + snapshot
    }

    /// Replaces a running domain's disk backend by one serving `image`
    /// (rings held: nothing is in flight) and waits for apus-hv to connect.
    private func switchDiskBackend(_ uuid: DomainUUID, target: String, to image: String) async throws(ToolstackError) {
        guard var live = domains[uuid]?.live,
              let b = live.record.backends.firstIndex(where: { $0.kind == .disk && $0.device == target }),
              let j = live.definition.disks.firstIndex(where: { $0.target == target }) else {
            throw .failed("disk \(target) has no backend")
        }
        let old = live.record.backends[b]
        // The old backend's exit is not a failure to restart from.
        live.record.backends[b].pid = 0
        domains[uuid]?.live = live
        await Supervisor.end([old.pid])
        FileSystem.remove(old.socket)
        var disk = live.definition.disks[j]
        disk.type = .file
        disk.volume = nil
        disk.source = image
        disk.format = .qcow2
        live.definition.disks[j] = disk
        let log = try? FileDescriptor.open(paths.logs + "/" + live.definition.name + ".hypervisor.log", .log, mode: 0o600)
        defer { log?.close() }
        let started = try Supervisor.startDiskBackend(disk, of: live.definition, record: live.record, paths: paths, limits: limits,
                                                      allowed: await allowedPaths(), log: log)
        live.record.backends[b] = started
        live.record.xml = DomainXML.format(live.definition)
        guard var now = domains[uuid], now.live != nil else { throw .failed("the domain stopped while its disk \(target) was switched") }
        now.live?.definition = live.definition
        now.live?.record = live.record
        domains[uuid] = now
        live.record.save(paths)
        watchBackend(uuid, device: target, pid: started.pid)
        try await Supervisor.waitFor(started.socket, pid: started.pid, what: "disk backend for \(target)",
                                     log: paths.logs + "/" + live.definition.name + ".hypervisor.log")
        // apus-hv reconnects within half a second (it retries on a timer).
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(15)
        while clock.now < deadline {
            if let stats = try? await hypervisor(uuid, HypervisorControl.stats),
               stats.devices.contains(where: { $0.socket == started.socket && $0.connected }) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        throw .failed("apus-hv did not connect to the new backend of disk \(target)")
    }

    /// A stopped domain: each image's snapshot taken by apusd.
    private func takeOffline(_ def: DomainDefinition, name: String, disks: [DomainSnapshot.Disk]) async throws(ToolstackError) {
        let paths = disks.compactMap { d in def.disks.first { $0.target == d.target }?.source }
        let seconds = UInt32(truncatingIfNeeded: Clock.realtime().seconds)
        try await Blocking.run("apus-snapshot") { () throws(ToolstackError) in
            var done: [Qcow2Image] = []
            for path in paths {
                do {
                    let image = try Qcow2Image(path: path, readOnly: false)
                    // A leftover of the same name (apusd has no metadata for it) is replaced, as savevm does.
                    if image.snapshots.contains(where: { $0.name == name }) { try image.deleteSnapshot(name) }
                    try image.createSnapshot(name: name, dateSeconds: seconds)
                    done.append(image)
                } catch {
                    for image in done { try? image.deleteSnapshot(name) }
                    throw .failed("snapshot of \(path): \(error)")
                }
            }
        }
    }

    // MARK: revert

    /// DOMAIN_REVERT_TO_SNAPSHOT: the disks go back to the snapshot, and
    /// the domain to the state it was taken in (a running or paused one
    /// from its memory state, in a new apus-hv with new backends), or as
    /// `target` says.
    public func revertToSnapshot(_ uuid: DomainUUID, _ name: String, target: SnapshotRevertTarget) async throws(ToolstackError) {
        let (d, s, _) = try snapshot(uuid, name)
        guard !s.disks.contains(where: { $0.mode == .external }) else {
            throw .unsupportedOperation("revert to external snapshot not supported yet")
        }
        guard let snapshotDef = s.domain else { throw .failed("snapshot '\(name)' has no domain definition") }
        let memory = memoryStateFile(d.name, s.name)
        if s.memory, !FileSystem.exists(memory) { throw .failed("the memory state of snapshot '\(name)' is missing (\(memory))") }
        // What runs now stops; the disks go back while no backend has them open.
        if d.live != nil {
            try await destroy(uuid, reason: StateReason.shutoffFromSnapshot, detail: LifecycleEvent.stoppedFromSnapshot)
        }
        let def = try await resolveVolumes(snapshotDef)
        let images = s.disks.filter { $0.mode == .internal }.compactMap { disk in def.disks.first { $0.target == disk.target }?.source }
        try await Blocking.run("apus-snapshot") { () throws(ToolstackError) in
            for path in images {
                do {
                    try Qcow2Image(path: path, readOnly: false).applySnapshot(name)
                } catch {
                    throw .failed("revert of \(path) to snapshot '\(name)': \(error)")
                }
            }
        }
        FileSystem.remove(paths.managedSaveImage(d.name))
        // The domain is defined as it was then (libvirt does the same): its
        // disks name the images the snapshot is in.
        if var now = domains[uuid], now.config != nil {
            try store.save(snapshotDef)
            now.config = snapshotDef
            domains[uuid] = now
        }
        try setCurrentSnapshot(d.name, s.name)
        let paused: Bool
        switch target {
        case .asTaken:
            guard s.state == .running || s.state == .paused else { return }
            paused = s.state == .paused
        case .running: paused = false
        case .paused: paused = true
        }
        if domains[uuid] == nil { domains[uuid] = Domain(config: nil) }
        if s.memory {
            _ = try await start(uuid, paused: paused, definition: snapshotDef, restoreFrom: memory, fromSnapshot: true)
        } else {
            _ = try await start(uuid, paused: paused, definition: snapshotDef, forceBoot: true, fromSnapshot: true)
        }
    }

    // MARK: delete

    /// DOMAIN_SNAPSHOT_DELETE: the snapshot (and with `scope` its
    /// descendants, or only them) leaves each qcow2 disk and the metadata;
    /// children move up to its parent. `metadataOnly` keeps the disks' snapshots.
    public func deleteSnapshot(_ uuid: DomainUUID, _ name: String, scope: SnapshotDeleteScope, metadataOnly: Bool) async throws(ToolstackError) {
        let (d, _, _) = try snapshot(uuid, name)
        var doomed: [String] = []
        if scope != .itself {
            doomed = try snapshotChildren(uuid, of: name, descendants: true, filter: SnapshotFilter())
        }
        if scope != .childrenOnly { doomed.append(name) }
        if !metadataOnly {
            let (list, _) = snapshots(of: d.name)
            let external = list.filter { doomed.contains($0.name) && $0.disks.contains { $0.mode == .external } }.count
            if external > 0 { throw .unsupportedOperation("deletion of \(external) external disk snapshots not supported yet (--metadata removes their metadata)") }
        }
        for victim in doomed.reversed() where !metadataOnly {
            try await deleteDiskSnapshots(uuid, d.name, victim)
        }
        // Metadata: children of a deleted snapshot move up to its parent; current moves up too.
        var (list, current) = snapshots(of: d.name)
        for victim in doomed {
            guard let gone = list.first(where: { $0.name == victim }) else { continue }
            list.removeAll { $0.name == victim }
            for i in list.indices where list[i].parent == victim {
                list[i].parent = gone.parent
                try storeSnapshot(d.name, list[i], current: list[i].name == current)
            }
            if current == victim { current = gone.parent }
            FileSystem.remove(paths.snapshotDirectory(d.name) + "/" + victim + ".xml")
            FileSystem.remove(memoryStateFile(d.name, victim))
        }
        if let current, let s = list.first(where: { $0.name == current }) { try storeSnapshot(d.name, s, current: true) }
    }

    /// Removes one snapshot from each qcow2 image it was taken in (the
    /// disks' images then, from the snapshot's definition): through the
    /// backend (rings held) when a running domain's disk still uses that
    /// image, else directly. An image that became the backing file of a
    /// running domain's disk (a disk-only snapshot since) waits for the
    /// domain to stop.
    private func deleteDiskSnapshots(_ uuid: DomainUUID, _ domainName: String, _ name: String) async throws(ToolstackError) {
        let (d, s, _) = try snapshot(uuid, name)
        let targets = s.disks.filter { $0.mode == .internal }.map(\.target)
        guard !targets.isEmpty else { return }
        guard let taken = s.domain ?? d.config else { return }
        let then = try await resolveVolumes(taken)
        var direct: [String] = []
        var throughBackends: [RuntimeRecord.Backend] = []
        for target in targets {
            guard let image = then.disks.first(where: { $0.target == target })?.source else { continue }
            if let live = d.live, live.definition.disks.contains(where: { $0.target == target && $0.source == image }),
               let backend = live.record.backends.first(where: { $0.kind == .disk && $0.device == target }) {
                throughBackends.append(backend)
            } else if let live = d.live, live.definition.disks.contains(where: { ImageFiles.chain($0.source, format: $0.format).contains { $0.path == image } }) {
                throw .invalidState("snapshot '\(name)' lives in \(image), now a backing file of the running domain: delete it once the domain is stopped")
            } else {
                direct.append(image)
            }
        }
        if !throughBackends.isEmpty {
            let wasPaused = d.state == .paused
            _ = try await hypervisor(uuid, HypervisorControl.command(.hold))
            var failure: ToolstackError?
            for backend in throughBackends {
                do {
                    _ = try await ControlClient.shared.call(backend.control, BlockBackendControl.snapshotDelete(name),
                                                            timeoutMilliseconds: Self.saveTimeoutMilliseconds)
                } catch {
                    failure = .failed("deleting snapshot '\(name)' of disk \(backend.device): \(error)")
                    break
                }
            }
            _ = try? await hypervisor(uuid, HypervisorControl.command(wasPaused ? .release : .resume))
            if let failure { throw failure }
        }
        let images = direct
        try await Blocking.run("apus-snapshot") { () throws(ToolstackError) in
            for path in images {
                do {
                    let image = try Qcow2Image(path: path, readOnly: false)
                    // Already gone from this image (an earlier, interrupted delete): nothing to do.
                    guard image.snapshots.contains(where: { $0.name == name }) else { continue }
                    try image.deleteSnapshot(name)
                } catch {
                    throw .failed("deleting snapshot '\(name)' of \(path): \(error)")
                }
            }
        }
    }

    /// Forgets every snapshot's metadata (undefine --snapshots-metadata).
    func removeSnapshotMetadata(_ domain: String) {
        let dir = paths.snapshotDirectory(domain)
        for f in ProcessControl.directoryEntries(dir) { FileSystem.remove(dir + "/" + f) }
        try? FileSystem.removeDirectory(dir)
    }
}

/// virDomainSnapshotListFlags' filters, as a predicate.
public struct SnapshotFilter: Sendable {
    public var rootsOnly = false
    public var leaves: Bool?
    /// nil: any; true: running or paused (memory); false: shut off.
    public var active: Bool?
    public var diskOnly = false
    /// Asked for snapshots of a kind apusd never makes (without metadata, external).
    public var admitsNone = false
    public init() {}

    func admits(_ s: DomainSnapshot, in list: [DomainSnapshot]) -> Bool {
        if admitsNone { return false }
        if rootsOnly, s.parent != nil { return false }
        if let leaves {
            let isLeaf = !list.contains { $0.parent == s.name }
            if isLeaf != leaves { return false }
        }
        if let active, (s.state == .running || s.state == .paused) != active { return false }
        if diskOnly, s.state != .diskSnapshot { return false }
        return true
    }
}
