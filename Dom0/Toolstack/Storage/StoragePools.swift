import ApusSys
import DiskImage

/// A storage pool as clients see it at one instant.
public struct StoragePoolInfo: Sendable, Equatable {
    public var definition: StoragePoolDefinition
    public var active: Bool
    public var persistent: Bool
    public var autostart: Bool
    /// The file system's size, what is used of it, and what is free to this daemon (zero when inactive).
    public var capacity: UInt64 = 0
    public var allocation: UInt64 = 0
    public var available: UInt64 = 0
    public var name: String { definition.name }
    public var uuid: DomainUUID { definition.uuid }
}

/// virStoragePoolEventLifecycleType.
public enum StoragePoolLifecycle {
    public static let defined: Int32 = 0, undefined: Int32 = 1, started: Int32 = 2, stopped: Int32 = 3
    public static let created: Int32 = 4, deleted: Int32 = 5
}

/// A storage pool event as the RPC layer delivers it.
public struct StoragePoolEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case lifecycle(event: Int32, detail: Int32)
        case refresh
    }
    public let name: String
    public let uuid: DomainUUID
    public let kind: Kind
}

/// Filters of virConnectListAllStoragePools (VIR_CONNECT_LIST_STORAGE_POOLS_*):
/// groups AND-ed, bits within a group OR-ed.
public struct StoragePoolFilter: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let inactive = Self(rawValue: 1), active = Self(rawValue: 2)
    public static let persistent = Self(rawValue: 4), transient = Self(rawValue: 8)
    public static let autostart = Self(rawValue: 16), noAutostart = Self(rawValue: 32)
    /// The type bits (dir is 64; fs 128 up to iscsi-direct 524288).
    public static let dir = Self(rawValue: 64)
    public static let types = Self(rawValue: 0xFFFC0)

    func admits(_ p: StoragePoolInfo) -> Bool {
        guard admits(.active, .inactive, p.active), admits(.persistent, .transient, p.persistent),
              admits(.autostart, .noAutostart, p.autostart) else { return false }
        let t = intersection(.types)
        return t.isEmpty || t.contains(.dir)
    }
}

/// apusd's storage: dir pools and the volumes in them, as libvirt's storage
/// driver keeps them. Definitions in /var/lib/apus/storage/NAME.xml,
/// autostart markers beside them, active pools in /run/apus/storage; the
/// format of every volume is recorded when the volume is made (or first
/// seen) and never re-read from the file afterwards.
public actor StoragePools {
    public nonisolated let paths: ApusPaths
    public nonisolated let events = Broadcast<StoragePoolEvent>()

    struct Pool {
        var config: StoragePoolDefinition?
        /// The definition it runs with, when active.
        var live: StoragePoolDefinition?
        var autostart = false
        /// Volume name → format, for an active pool (from the last refresh).
        var volumes: [String: DiskFormat] = [:]
        var definition: StoragePoolDefinition? { live ?? config }
    }
    var pools: [DomainUUID: Pool] = [:]
    /// Volume paths with a long operation in progress (creating, cloning, uploading, wiping).
    var busy: Set<String> = []
    /// Disk paths of running domains, and whose they are (set by apusd).
    var inUse: @Sendable () async -> [String: String] = { [:] }
    public private(set) var warnings: [String] = []

    public init(paths: ApusPaths) { self.paths = paths }

    public func setUsage(_ f: @escaping @Sendable () async -> [String: String]) { inUse = f }

    // MARK: files

    var configDirectory: String { paths.state + "/storage" }
    var autostartDirectory: String { paths.state + "/storage/autostart" }
    var formatsDirectory: String { paths.state + "/storage/formats" }
    var activeDirectory: String { paths.runtime + "/storage" }

    func makeDirectories() throws(ToolstackError) {
        for d in [configDirectory, autostartDirectory, formatsDirectory, activeDirectory] {
            do {
                try ProcessControl.makeDirectories(d, mode: 0o700)
            } catch {
                throw .failed("cannot create \(d): \(error)")
            }
        }
    }

    /// Loads definitions and active pools (a restarted apusd keeps them active).
    public func load() {
        do { try makeDirectories() } catch { warnings.append(error.message) }
        for file in ProcessControl.directoryEntries(configDirectory).sorted() where file.hasSuffix(".xml") {
            let path = configDirectory + "/" + file
            guard let text = ProcessControl.readText(path, limit: ProcessControl.stateFileLimit) else { continue }
            do {
                let def = try StorageXML.parsePool(text)
                pools[def.uuid] = Pool(config: def, autostart: FileSystem.exists(autostartDirectory + "/" + def.name))
            } catch {
                warnings.append("\(path): \(error.message)")
            }
        }
        for file in ProcessControl.directoryEntries(activeDirectory).sorted() where file.hasSuffix(".xml") {
            guard let text = ProcessControl.readText(activeDirectory + "/" + file, limit: ProcessControl.stateFileLimit), let def = try? StorageXML.parsePool(text) else { continue }
            var p = pools[def.uuid] ?? Pool()
            p.live = def
            pools[def.uuid] = p
            refreshVolumes(def.uuid)
        }
    }

    /// Starts every autostart pool that is not active.
    public func autostartAll() {
        for (uuid, p) in pools where p.autostart && p.live == nil {
            do {
                try start(uuid, build: false)
            } catch {
                warnings.append("autostart of storage pool '\(p.config?.name ?? "")' failed: \(error.message)")
            }
        }
    }

    // MARK: pools: queries

    func info(_ p: Pool) -> StoragePoolInfo {
        // A pool always has a definition (config or live); this is the fallback shape only.
        let def = p.definition ?? StoragePoolDefinition(name: "", uuid: .zero, path: "/")
        var i = StoragePoolInfo(definition: def, active: p.live != nil, persistent: p.config != nil, autostart: p.autostart)
        if p.live != nil, let s = FileSystem.space(def.path) {
            i.capacity = s.capacity
            i.allocation = s.capacity - s.free
            i.available = s.available
        }
        return i
    }

    public func list(_ filter: StoragePoolFilter = []) -> [StoragePoolInfo] {
        pools.values.map(info).filter { filter.admits($0) }.sorted { $0.name < $1.name }
    }

    func pool(_ uuid: DomainUUID) throws(ToolstackError) -> Pool {
        guard let p = pools[uuid] else { throw .noStoragePool("no storage pool with matching uuid '\(uuid)'") }
        return p
    }

    public func lookup(uuid: DomainUUID) throws(ToolstackError) -> StoragePoolInfo { info(try pool(uuid)) }

    public func lookup(name: String) throws(ToolstackError) -> StoragePoolInfo {
        guard let p = pools.values.first(where: { $0.definition?.name == name }) else {
            throw .noStoragePool("no storage pool with matching name '\(name)'")
        }
        return info(p)
    }

    public func lookup(targetPath: String) throws(ToolstackError) -> StoragePoolInfo {
        let wanted = Self.clean(targetPath)
        guard let p = pools.values.first(where: { $0.live?.path == wanted }) else {
            throw .noStoragePool("no storage pool with matching target path '\(targetPath)'")
        }
        return info(p)
    }

    public func xml(_ uuid: DomainUUID, inactive: Bool) throws(ToolstackError) -> String {
        let p = try pool(uuid)
        let i = info(p)
        guard var def = inactive ? (p.config ?? p.live) : p.definition else { throw .internalError("pool without a definition") }
        // An active pool shows its directory's actual permissions, as libvirt's does.
        if !inactive, p.live != nil, let st = FileSystem.status(def.path) {
            def.permissions.mode = st.mode
            def.permissions.owner = st.owner
            def.permissions.group = st.group
        }
        return StorageXML.format(def, capacity: i.capacity, allocation: i.allocation, available: i.available)
    }

    static func clean(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    // MARK: pools: changes

    func emit(_ def: StoragePoolDefinition, _ kind: StoragePoolEvent.Kind) {
        events.publish(StoragePoolEvent(name: def.name, uuid: def.uuid, kind: kind))
    }

    /// Refuses a definition whose name, uuid or directory another pool has.
    func checkConflicts(_ def: StoragePoolDefinition) throws(ToolstackError) {
        for (uuid, p) in pools {
            guard let other = p.definition else { continue }
            if other.name == def.name && uuid != def.uuid {
                throw .failed("pool '\(def.name)' is already defined with uuid \(uuid)")
            }
            if uuid == def.uuid && other.name != def.name {
                throw .failed("pool '\(other.name)' is already defined with uuid \(uuid)")
            }
            if uuid != def.uuid && other.path == def.path {
                throw .failed("Storage source conflict with pool: '\(other.name)'")
            }
        }
    }

    public func define(xml: String) throws(ToolstackError) -> StoragePoolInfo {
        let def = try StorageXML.parsePool(xml)
        try checkConflicts(def)
        try makeDirectories()
        do {
            try ProcessControl.writeFileAtomically(configDirectory + "/" + def.name + ".xml", StorageXML.format(def), mode: 0o600)
        } catch {
            throw .failed("cannot save the definition of pool '\(def.name)': \(error)")
        }
        var p = pools[def.uuid] ?? Pool()
        p.config = def
        pools[def.uuid] = p
        emit(def, .lifecycle(event: StoragePoolLifecycle.defined, detail: 0))
        return info(p)
    }

    /// `pool-create`: a transient pool, started at once.
    public func create(xml: String, build: Bool) throws(ToolstackError) -> StoragePoolInfo {
        let def = try StorageXML.parsePool(xml)
        if let p = pools[def.uuid] ?? pools.values.first(where: { $0.definition?.name == def.name }) {
            throw .failed("pool '\(def.name)' \(p.live != nil ? "is already active" : "already exists")")
        }
        try checkConflicts(def)
        pools[def.uuid] = Pool(live: nil)
        do {
            try activate(def, build: build)
        } catch {
            pools.removeValue(forKey: def.uuid)
            throw error
        }
        emit(def, .lifecycle(event: StoragePoolLifecycle.started, detail: 0))
        return info(try pool(def.uuid))
    }

    public func start(_ uuid: DomainUUID, build: Bool) throws(ToolstackError) {
        let p = try pool(uuid)
        guard p.live == nil, let def = p.config else { throw .invalidState("storage pool '\(p.definition?.name ?? "")' is already active") }
        try activate(def, build: build)
        emit(def, .lifecycle(event: StoragePoolLifecycle.started, detail: 0))
    }

    func activate(_ def: StoragePoolDefinition, build: Bool) throws(ToolstackError) {
        if build { try buildDirectory(def, overwrite: false) }
        guard let st = FileSystem.status(def.path), st.kind == .directory else {
            throw ToolstackError(.systemError, "cannot open directory '\(def.path)': No such file or directory", origin: .storage)
        }
        do {
            try ProcessControl.writeFileAtomically(activeDirectory + "/" + def.name + ".xml", StorageXML.format(def), mode: 0o600)
        } catch {
            throw .failed("cannot record pool '\(def.name)' as active: \(error)")
        }
        var p = pools[def.uuid] ?? Pool()
        p.live = def
        pools[def.uuid] = p
        refreshVolumes(def.uuid)
    }

    /// `pool-build`: makes the directory (and its parents) with the pool's permissions.
    public func build(_ uuid: DomainUUID, overwrite: Bool, noOverwrite: Bool) throws(ToolstackError) {
        let p = try pool(uuid)
        guard let def = p.definition else { return }
        guard p.live == nil else { throw .invalidState("storage pool '\(def.name)' is already active") }
        if noOverwrite, FileSystem.exists(def.path) {
            throw ToolstackError(.storagePoolBuilt, "Storage pool already built: \(def.path)", origin: .storage)
        }
        try buildDirectory(def, overwrite: overwrite)
    }

    func buildDirectory(_ def: StoragePoolDefinition, overwrite: Bool) throws(ToolstackError) {
        do {
            try ProcessControl.makeDirectories(def.path, mode: .init(def.permissions.mode ?? 0o711))
            try FileSystem.setPermissions(def.path, mode: def.permissions.mode ?? 0o711, owner: def.permissions.owner, group: def.permissions.group)
        } catch {
            throw ToolstackError(.systemError, "cannot create path '\(def.path)': \(error)", origin: .storage)
        }
    }

    public func destroy(_ uuid: DomainUUID) throws(ToolstackError) {
        var p = try pool(uuid)
        guard let def = p.live else { throw .invalidState("storage pool '\(p.definition?.name ?? "")' is not active") }
        if busy.contains(where: { FileSystem.directory(of: $0) == def.path }) {
            throw .invalidState("pool '\(def.name)' has asynchronous jobs running.")
        }
        FileSystem.remove(activeDirectory + "/" + def.name + ".xml")
        p.live = nil
        p.volumes = [:]
        if p.config == nil { pools.removeValue(forKey: uuid) } else { pools[uuid] = p }
        emit(def, .lifecycle(event: StoragePoolLifecycle.stopped, detail: 0))
    }

    /// `pool-delete`: removes the (empty) directory of an inactive pool.
    public func delete(_ uuid: DomainUUID) throws(ToolstackError) {
        let p = try pool(uuid)
        guard let def = p.definition else { return }
        guard p.live == nil else { throw .invalidState("storage pool '\(def.name)' is still active") }
        do {
            try FileSystem.removeDirectory(def.path)
        } catch {
            throw ToolstackError(.systemError, "failed to remove pool '\(def.path)': \(error)", origin: .storage)
        }
        emit(def, .lifecycle(event: StoragePoolLifecycle.deleted, detail: 0))
    }

    public func undefine(_ uuid: DomainUUID) throws(ToolstackError) {
        var p = try pool(uuid)
        guard let def = p.config else { throw .invalidState("cannot undefine transient storage pool") }
        guard p.live == nil else { throw .invalidState("storage pool '\(def.name)' is still active") }
        FileSystem.remove(configDirectory + "/" + def.name + ".xml")
        FileSystem.remove(autostartDirectory + "/" + def.name)
        FileSystem.remove(formatsDirectory + "/" + def.name)
        p.config = nil
        pools.removeValue(forKey: uuid)
        emit(def, .lifecycle(event: StoragePoolLifecycle.undefined, detail: 0))
    }

    public func setAutostart(_ uuid: DomainUUID, _ on: Bool) throws(ToolstackError) {
        var p = try pool(uuid)
        guard let def = p.config else { throw .invalidArgument("cannot set autostart for transient pool") }
        let marker = autostartDirectory + "/" + def.name
        if on {
            guard FileSystem.touch(marker, mode: 0o600) else { throw .failed("cannot write the autostart marker of pool '\(def.name)'") }
        } else {
            FileSystem.remove(marker)
        }
        p.autostart = on
        pools[uuid] = p
    }

    public func refresh(_ uuid: DomainUUID) throws(ToolstackError) {
        let p = try pool(uuid)
        guard let def = p.live else { throw .invalidState("storage pool '\(p.definition?.name ?? "")' is not active") }
        refreshVolumes(uuid)
        emit(def, .refresh)
    }

    // MARK: volumes: the registry of formats

    func formats(_ pool: String) -> [String: DiskFormat] {
        var out: [String: DiskFormat] = [:]
        for line in (ProcessControl.readText(formatsDirectory + "/" + pool) ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let f = DiskFormat(rawValue: String(parts[0])) else { continue }
            out[String(parts[1])] = f
        }
        return out
    }

    func saveFormats(_ pool: String, _ f: [String: DiskFormat]) {
        let text = f.sorted { $0.key < $1.key }.map { "\($0.value.rawValue) \($0.key)\n" }.joined()
        try? ProcessControl.writeFileAtomically(formatsDirectory + "/" + pool, text, mode: 0o600)
    }

    /// Rescans an active pool's directory: every regular file is a volume.
    func refreshVolumes(_ uuid: DomainUUID) {
        guard var p = pools[uuid], let def = p.live else { return }
        var known = formats(def.name)
        var volumes: [String: DiskFormat] = [:]
        var changed = false
        for name in ProcessControl.directoryEntries(def.path) where !name.hasPrefix(".") {
            let path = def.path + "/" + name
            guard let st = FileSystem.status(path, follow: false), st.kind == .file else { continue }
            if let f = known[name] {
                volumes[name] = f
            } else if !busy.contains(path) {
                let f: DiskFormat = ImageFiles.looksLikeQcow2(path) ? .qcow2 : .raw
                known[name] = f
                volumes[name] = f
                changed = true
            }
        }
        for name in known.keys where volumes[name] == nil && !busy.contains(def.path + "/" + name) {
            known.removeValue(forKey: name)
            changed = true
        }
        if changed { saveFormats(def.name, known) }
        p.volumes = volumes
        pools[uuid] = p
    }

    func record(_ pool: StoragePoolDefinition, _ name: String, _ format: DiskFormat?) {
        var known = formats(pool.name)
        known[name] = format
        saveFormats(pool.name, known)
        guard var p = pools[pool.uuid] else { return }
        p.volumes[name] = format
        pools[pool.uuid] = p
    }

    // MARK: volumes: queries

    func activePool(_ uuid: DomainUUID) throws(ToolstackError) -> StoragePoolDefinition {
        let p = try pool(uuid)
        guard let def = p.live else { throw .invalidState("storage pool '\(p.definition?.name ?? "")' is not active") }
        return def
    }

    public func volumeNames(_ uuid: DomainUUID) throws(ToolstackError) -> [String] {
        _ = try activePool(uuid)
        return (pools[uuid]?.volumes.keys).map { $0.sorted() } ?? []
    }

    /// A volume's state: sizes from the file and its declared format's header.
    public func volume(_ uuid: DomainUUID, name: String) throws(ToolstackError) -> StorageVolumeInfo {
        let def = try activePool(uuid)
        guard let format = pools[uuid]?.volumes[name] else { throw .noStorageVolume("no storage vol with matching name '\(name)'") }
        return Self.describe(pool: def, name: name, format: format)
    }

    static func describe(pool: StoragePoolDefinition, name: String, format: DiskFormat) -> StorageVolumeInfo {
        let path = pool.path + "/" + name
        let st = FileSystem.status(path)
        var v = StorageVolumeInfo(pool: pool.name, name: name, key: path, path: path, format: format,
                                  capacity: UInt64(max(0, st?.size ?? 0)), allocation: UInt64(max(0, st?.allocated ?? 0)),
                                  physical: UInt64(max(0, st?.size ?? 0)),
                                  permissions: StoragePermissions(mode: st?.mode, owner: st?.owner, group: st?.group))
        if let st { v.times = [st.accessed, st.modified, st.changed] }
        if let i = try? ImageFiles.inspect(path, format: format) {
            v.capacity = i.virtualSize
            v.clusterSize = i.clusterSize
            v.qcow2Version = i.qcow2Version
            if let b = i.backingFile {
                let full = b.hasPrefix("/") ? b : pool.path + "/" + b
                v.backing = (full, i.backingFormat ?? .raw)
            }
        }
        return v
    }

    public func volume(key: String) throws(ToolstackError) -> StorageVolumeInfo {
        guard let v = find(path: key) else { throw .noStorageVolume("no storage vol with matching key \(key)") }
        return v
    }

    public func volume(path: String) throws(ToolstackError) -> StorageVolumeInfo {
        guard let v = find(path: path) else { throw .noStorageVolume("no storage vol with matching path '\(path)'") }
        return v
    }

    /// The volume at `path` (or at the canonical form of it) in an active pool.
    func find(path: String) -> StorageVolumeInfo? {
        let candidates = [Self.clean(path), FileSystem.canonical(path)].compactMap { $0 }
        for p in pools.values {
            guard let def = p.live else { continue }
            for c in candidates {
                let dir = FileSystem.directory(of: c), name = String(c.dropFirst(dir.count + 1))
                let dirs = [def.path, FileSystem.canonical(def.path)].compactMap { $0 }
                if dirs.contains(dir), let f = p.volumes[name] { return Self.describe(pool: def, name: name, format: f) }
            }
        }
        return nil
    }

    /// `<disk type='volume'>`: the volume's path and recorded format.
    public func resolve(pool name: String, volume: String) throws(ToolstackError) -> (path: String, format: DiskFormat) {
        let info = try lookup(name: name)
        let v = try self.volume(info.uuid, name: volume)
        return (v.path, v.format)
    }

    // MARK: volumes: changes

    func reserve(_ path: String) throws(ToolstackError) {
        guard !busy.contains(path) else { throw .invalidState("volume '\(path)' has an operation in progress") }
        busy.insert(path)
    }

    func checkNotInUse(_ v: StorageVolumeInfo, _ what: String) async throws(ToolstackError) {
        let used = await inUse()
        if let domain = used[v.path] ?? FileSystem.canonical(v.path).flatMap({ used[$0] }) {
            throw .invalidState("cannot \(what) volume '\(v.name)': it is in use by running domain '\(domain)'")
        }
    }

    /// How `vol-create` and `vol-create-from` make the file.
    public enum VolumeSource: Sendable {
        case empty(preallocateMetadata: Bool)
        case clone(StorageVolumeInfo)
    }

    public func createVolume(_ uuid: DomainUUID, xml: String, from source: VolumeSource) async throws(ToolstackError) -> StorageVolumeInfo {
        let pool = try activePool(uuid)
        var def = try StorageXML.parseVolume(xml)
        let path = pool.path + "/" + def.name
        if pools[uuid]?.volumes[def.name] != nil || FileSystem.status(path, follow: false) != nil {
            throw ToolstackError(.storageVolumeExists, "storage volume '\(def.name)' exists already", origin: .storage)
        }
        if let b = def.backing {
            // The backing store must be a volume apusd knows, with its recorded format.
            guard let backing = find(path: b.path) else {
                throw .invalidArgument("backing store '\(b.path)' is not a volume of an active storage pool")
            }
            guard backing.format == b.format else {
                throw .invalidArgument("backing store '\(b.path)' is a \(backing.format.rawValue) volume, not \(b.format.rawValue)")
            }
            def.backing = (backing.path, backing.format)
        }
        let mode = def.permissions.mode ?? 0o600
        try reserve(path)
        defer { busy.remove(path) }
        let spec = def
        do throws(DiskImageError) {
            switch source {
            case .empty(let metadata):
                // raw: full when the allocation asked for is the capacity (libvirt's rule); qcow2: metadata on request.
                var prealloc = ImageFiles.Preallocation.sparse
                if spec.format == .raw && (spec.allocation ?? 0) >= spec.capacity && spec.capacity > 0 { prealloc = .full }
                if spec.format == .qcow2 && metadata { prealloc = .metadata }
                let chosen = prealloc
                try await Blocking.run { () throws(DiskImageError) in
                    try ImageFiles.create(path, format: spec.format, size: spec.capacity, preallocation: chosen, clusterSize: spec.clusterSize,
                                          backingFile: spec.backing?.path, backingFormat: spec.backing?.format, mode: mode)
                }
            case .clone(let original):
                if let b = spec.backing, b.path == original.path {
                    // An overlay of the original (virt-install's and virt-clone's copy-on-write clone).
                    try await Blocking.run { () throws(DiskImageError) in
                        try ImageFiles.create(path, format: .qcow2, size: max(spec.capacity, original.capacity), clusterSize: spec.clusterSize,
                                              backingFile: b.path, backingFormat: b.format, mode: mode)
                    }
                } else {
                    guard spec.backing == nil else { throw .invalid("a clone's backing store must be the volume it clones") }
                    try await Blocking.run { () throws(DiskImageError) in
                        try ImageFiles.copy(from: original.path, format: original.format, to: path, format: spec.format,
                                            size: spec.capacity, clusterSize: spec.clusterSize, mode: mode)
                    }
                }
            }
        } catch {
            FileSystem.remove(path)
            throw .failed("cannot create volume '\(def.name)': \(error)")
        }
        if def.permissions.owner != nil || def.permissions.group != nil {
            try? FileSystem.setPermissions(path, mode: nil, owner: def.permissions.owner, group: def.permissions.group)
        }
        record(pool, def.name, def.format)
        return Self.describe(pool: pool, name: def.name, format: def.format)
    }

    public func deleteVolume(_ uuid: DomainUUID, name: String) async throws(ToolstackError) {
        let v = try volume(uuid, name: name)
        guard !busy.contains(v.path) else { throw .invalidState("volume '\(name)' has an operation in progress") }
        try await checkNotInUse(v, "delete")
        guard let pool = pools[uuid]?.live, pools[uuid]?.volumes[name] != nil else { throw .noStorageVolume("no storage vol with matching name '\(name)'") }
        let path = v.path
        if FileSystem.status(path, follow: false) != nil {
            do {
                try FileSystem.unlink(path)
            } catch {
                throw ToolstackError(.systemError, "cannot unlink file '\(path)': \(error)", origin: .storage)
            }
        }
        record(pool, name, nil)
    }

    public func wipeVolume(_ uuid: DomainUUID, name: String) async throws(ToolstackError) {
        let v = try volume(uuid, name: name)
        try await checkNotInUse(v, "wipe")
        try reserve(v.path)
        defer { busy.remove(v.path) }
        do throws(DiskImageError) {
            try await Blocking.run { () throws(DiskImageError) in try ImageFiles.wipe(v.path, format: v.format) }
        } catch {
            throw .failed("cannot wipe volume '\(name)': \(error)")
        }
    }

    public func resizeVolume(_ uuid: DomainUUID, name: String, capacity: UInt64, delta: Bool, shrink: Bool, allocate: Bool) async throws(ToolstackError) {
        let v = try volume(uuid, name: name)
        var target = capacity
        if delta {
            if shrink {
                guard capacity <= v.capacity else { throw .invalidArgument("can't shrink capacity below 0") }
                target = v.capacity - capacity
            } else {
                let (sum, overflow) = v.capacity.addingReportingOverflow(capacity)
                guard !overflow else { throw .invalidArgument("capacity too large") }
                target = sum
            }
        }
        if target < v.capacity && !shrink {
            throw .invalidArgument("Can't shrink capacity below current capacity unless shrink flag explicitly specified")
        }
        if target > v.capacity && shrink && !delta {
            throw .invalidArgument("Can't expand capacity when shrink flag is specified")
        }
        try await checkNotInUse(v, "resize")
        let size = target
        try reserve(v.path)
        defer { busy.remove(v.path) }
        do throws(DiskImageError) {
            try await Blocking.run { () throws(DiskImageError) in
                try ImageFiles.resize(v.path, format: v.format, to: size, allowShrink: shrink, allocate: allocate)
            }
        } catch {
            if case .unsupported(let why) = error { throw .unsupported(why) }
            throw .failed("cannot resize volume '\(name)': \(error)")
        }
    }

    /// Starts an upload into a volume: its file, written from `offset` (as
    /// libvirt's: the file keeps its size when the upload is shorter, grows
    /// when it is longer). The volume is busy until ``finishTransfer``.
    public func beginUpload(_ uuid: DomainUUID, name: String, offset: UInt64, length: UInt64) async throws(ToolstackError) -> FileStreamWriter {
        let v = try volume(uuid, name: name)
        try await checkNotInUse(v, "upload to")
        try reserve(v.path)
        do throws(DiskImageError) {
            return try FileStreamWriter(path: v.path, offset: offset, length: length)
        } catch {
            busy.remove(v.path)
            throw .failed("cannot upload to volume '\(name)': \(error)")
        }
    }

    public func beginDownload(_ uuid: DomainUUID, name: String, offset: UInt64, length: UInt64, sparse: Bool) throws(ToolstackError) -> FileStreamReader {
        let v = try volume(uuid, name: name)
        do throws(DiskImageError) {
            return try FileStreamReader(path: v.path, offset: offset, length: length, sparse: sparse)
        } catch {
            throw .failed("cannot download volume '\(name)': \(error)")
        }
    }

    public func finishTransfer(_ path: String) { busy.remove(path) }
}
