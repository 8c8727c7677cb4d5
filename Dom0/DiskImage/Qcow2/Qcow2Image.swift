import ApusSys
import Synchronization

/// A qcow2 image (versions 2 and 3), read and written in place.
///
/// Metadata is cached (L1 whole; L2 tables and refcount blocks in bounded
/// caches) and written back in an order that keeps the file consistent at
/// every instant, so a kill -9 at any moment leaves an image `qemu-img
/// check` finds free of corruption (leaked clusters at worst):
/// 1. a new cluster's refcount reaches the disk before any table points at it,
/// 2. a cluster's data reaches the disk before the L2 entry that maps it,
/// 3. an L2 table reaches the disk before the L1 entry that points at it,
/// 4. a refcount drops only after no table on disk points at the cluster.
/// ``flush()`` runs the steps with an fdatasync between each.
///
/// Clusters are allocated at the end of the file and never reused within a
/// session (freed ones are punched out of the file), so an in-flight write
/// to a cluster that a concurrent discard freed can land nowhere but there.
///
/// With ``durableAcrossRestarts`` (apus-blkback sets it) a write is in the
/// file, metadata included, when it is acknowledged, so a backend killed
/// and restarted under a running guest loses nothing it acknowledged (the
/// page cache outlives the process; only a power loss needs the flush):
/// clusters come from a reservation whose refcounts were made durable
/// ahead (an fdatasync per reservation, not per write), and each L2 and L1
/// change is written through as it is made. The power-loss rules above
/// still hold: a new mapping whose cluster copied earlier contents (a
/// backing file's, a snapshot's, a compressed cluster's) waits for an
/// fdatasync of its data; a mapping of a cluster that was all zeroes before
/// cannot lose anything flushed if it reaches the disk before its data.
/// Reserved clusters not used are given back at close (a kill leaves them
/// leaked, which `qemu-img check` reports and repairs).
public final class Qcow2Image: VirtualDisk, @unchecked Sendable {
    // SAFETY (Sendable): every mutable field is touched only with `lock`
    // held; the descriptor is used with positioned I/O only.
    public let path: String
    public let file: FileDescriptor
    public let readOnly: Bool
    public var format: DiskFormat { .qcow2 }
    public var hasMetadata: Bool { true }
    public var size: UInt64 { lock.withLock { _ in header.size } }
    /// The backing image, opened read-only (nil: unallocated clusters read as zeroes).
    public let backing: (any VirtualDisk)?
    /// The header as it is on disk.
    public var currentHeader: Qcow2Header { lock.withLock { _ in header } }

    let lock = Mutex(())
    var header: Qcow2Header
    let clusterBits: UInt64
    let clusterSize: UInt64
    var l1: [UInt64]
    var dirtyL1: Set<Int> = []
    /// See the type's notes; set once, before the first write.
    public var durableAcrossRestarts: Bool {
        get { lock.withLock { _ in durable } }
        set { lock.withLock { _ in durable = newValue } }
    }
    var durable = false
    /// Clusters whose refcount 1 is on disk and which nothing uses yet.
    var reserved: [UInt64] = []
    /// The file is at least this long (it never shrinks while open).
    var knownFileEnd: UInt64 = 0
    /// How many clusters a reservation takes at a time.
    static let reservationClusters = 64
    var refcountTable: [UInt64]
    var l2Cache: MetadataCache<[UInt64]>
    var refcountCache: MetadataCache<[UInt8]>
    /// Clusters holding metadata (header, tables, blocks): never written as data.
    var metadataClusters: Set<UInt64> = []
    /// The next cluster index to try when allocating.
    var nextFree: UInt64
    /// Clusters whose refcount drops once no table on disk points at them.
    var pendingFrees: [UInt64] = []
    /// The snapshot table as it is on disk.
    var snapshotList: [Qcow2Snapshot] = []
    /// Bytes the table takes on disk.
    var snapshotTableBytes: UInt64 = 0
    /// The last decompressed cluster (sequential reads of compressed images).
    var decompressed: (entry: UInt64, bytes: [UInt8])?
    let warn: @Sendable (String) -> Void

    /// Bytes of L2 tables and of refcount blocks kept in memory.
    public static let defaultL2CacheBytes = 4 << 20
    public static let defaultRefcountCacheBytes = 1 << 20

    // MARK: Opening

    init(path: String, readOnly: Bool, depth: Int, warn: @escaping @Sendable (String) -> Void,
         l2CacheBytes: Int = Qcow2Image.defaultL2CacheBytes, allowed: AllowedPaths? = nil) throws(DiskImageError) {
        guard depth <= Qcow2Spec.maximumBackingDepth else {
            throw .invalid("backing chain deeper than \(Qcow2Spec.maximumBackingDepth) images at \(path)")
        }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, readOnly ? .readOnly : .readWrite)
        } catch {
            throw .io("cannot open image: \(error)")
        }
        var ok = false
        defer { if !ok { fd.close() } }
        let fileSize: UInt64
        let first: [UInt8]
        do {
            fileSize = UInt64(try fd.size())
            let probe = try fd.read(count: 512, atOffset: 0)
            let bits = BigEndianReader(probe).u32(20)
            let want = (Qcow2Spec.minimumClusterBits...Qcow2Spec.maximumClusterBits).contains(bits) ? 1 << Int(bits) : 512
            first = try fd.read(count: want, atOffset: 0)
        } catch {
            throw .io("cannot read \(path): \(error)")
        }
        var h = try Qcow2Header.parse(first, fileSize: fileSize)
        if !readOnly {
            if h.incompatibleFeatures & Qcow2Spec.Incompatible.dirty != 0 {
                throw .unsupported("\(path) is marked dirty (incompatible feature bit 0, lazy refcounts): repair it with 'qemu-img check -r all' first")
            }
            if h.incompatibleFeatures & Qcow2Spec.Incompatible.corrupt != 0 {
                throw .unsupported("\(path) is marked corrupt (incompatible feature bit 1): repair it with 'qemu-img check -r all' first")
            }
        }
        self.path = path
        self.file = fd
        self.readOnly = readOnly
        self.warn = warn
        clusterBits = UInt64(h.clusterBits)
        clusterSize = h.clusterSize
        l2Cache = MetadataCache(capacity: max(4, l2CacheBytes / Int(h.clusterSize)))
        refcountCache = MetadataCache(capacity: max(4, Qcow2Image.defaultRefcountCacheBytes / Int(h.clusterSize)))
        nextFree = (fileSize + h.clusterSize - 1) / h.clusterSize
        knownFileEnd = fileSize
        // Tables must lie inside the file before anything is allocated for them.
        guard h.l1TableOffset + UInt64(h.l1Size) * 8 <= fileSize,
              h.refcountTableOffset + UInt64(h.refcountTableClusters) * h.clusterSize <= fileSize else {
            throw .malformed("\(path): a table runs past the end of the file")
        }
        do {
            let l1Bytes = try fd.read(count: Int(h.l1Size) * 8, atOffset: Int64(h.l1TableOffset))
            guard l1Bytes.count == Int(h.l1Size) * 8 else { throw DiskImageError.malformed("L1 table runs past the end of the file") }
            l1 = (0..<Int(h.l1Size)).map { l1Bytes.be64(entry: $0) }
            let rtBytes = try fd.read(count: Int(UInt64(h.refcountTableClusters) * h.clusterSize), atOffset: Int64(h.refcountTableOffset))
            guard rtBytes.count == Int(UInt64(h.refcountTableClusters) * h.clusterSize) else {
                throw DiskImageError.malformed("refcount table runs past the end of the file")
            }
            refcountTable = (0..<(rtBytes.count / 8)).map { rtBytes.be64(entry: $0) }
        } catch let e as DiskImageError {
            throw e
        } catch {
            throw .io("cannot read the tables of \(path): \(error)")
        }
        // Backing file: named in the header, format from its extension.
        if let name = h.backingFile {
            var resolved = name.hasPrefix("/") ? name : Qcow2Image.directory(of: path) + "/" + name
            if let allowed {
                switch allowed.resolve(resolved, "backing file of \(path)", kind: .image) {
                case .success(let real): resolved = real
                case .failure(let why): throw .invalid(why.description)
                }
            }
            let format: DiskFormat
            if let declared = h.backingFormat {
                format = try DiskFormat(name: declared)
            } else {
                warn("\(path): backing file \(name) has no declared format; opening it as raw")
                format = .raw
            }
            switch format {
            case .raw: backing = try RawDisk(path: resolved, readOnly: true)
            case .qcow2: backing = try Qcow2Image(path: resolved, readOnly: true, depth: depth + 1, warn: warn, allowed: allowed)
            }
        } else {
            backing = nil
        }
        header = h
        // Everything the tables say is metadata.
        let cs = h.clusterSize
        func mark(_ offset: UInt64, bytes: UInt64) {
            // Entries outside the file are refused when used; only what is inside counts.
            guard bytes > 0, offset < fileSize else { return }
            let end = min(fileSize, offset + min(bytes, fileSize))
            for c in (offset / cs)...((end - 1) / cs) { metadataClusters.insert(c) }
        }
        mark(0, bytes: cs)
        mark(h.l1TableOffset, bytes: UInt64(h.l1Size) * 8)
        mark(h.refcountTableOffset, bytes: UInt64(h.refcountTableClusters) * cs)
        for e in refcountTable where e & Qcow2Spec.refcountTableOffsetMask != 0 { mark(e & Qcow2Spec.refcountTableOffsetMask, bytes: cs) }
        for e in l1 where e & Qcow2Spec.Entry.offsetMask != 0 { mark(e & Qcow2Spec.Entry.offsetMask, bytes: cs) }
        if h.snapshotCount > 0 {
            guard h.snapshotsOffset % cs == 0, h.snapshotsOffset >= cs, h.snapshotsOffset < fileSize else {
                throw .malformed("\(path): the snapshot table is not cluster aligned inside the file")
            }
            let (table, bytes) = try Qcow2Image.readSnapshotTable(fd, h, fileSize: fileSize)
            snapshotList = table
            snapshotTableBytes = bytes
            mark(h.snapshotsOffset, bytes: bytes)
            for s in table { mark(s.l1TableOffset, bytes: UInt64(s.l1Size) * 8) }
        }
        // A writer that does not keep bitmaps (or any autoclear feature) up to date clears their bits.
        if !readOnly, h.version >= 3, h.autoclearFeatures != 0 {
            h.autoclearFeatures = 0
            header = h
            var w = BigEndianWriter()
            w.u64(0)
            do {
                try fd.writeAll(w.bytes, atOffset: 88)
                try fd.dataSync()
            } catch {
                throw .io("cannot update the header of \(path): \(error)")
            }
        }
        ok = true
    }

    /// Opens a qcow2 image with its backing chain; `l2CacheBytes` bounds the
    /// L2 tables kept in memory.
    /// `allowed`, when given, is where its backing files may be.
    public convenience init(path: String, readOnly: Bool, l2CacheBytes: Int = Qcow2Image.defaultL2CacheBytes, allowed: AllowedPaths? = nil,
                            warn: @escaping @Sendable (String) -> Void = { _ in }) throws(DiskImageError) {
        try self.init(path: path, readOnly: readOnly, depth: 0, warn: warn, l2CacheBytes: l2CacheBytes, allowed: allowed)
    }

    deinit {
        try? close()
        file.close()
    }

    /// Gives back the reserved clusters nothing used (else they leak) and
    /// flushes: what an owner shutting down calls once no request is in
    /// flight. The image stays usable (a write reserves clusters again).
    public func close() throws(DiskImageError) {
        guard !readOnly else { return }
        try lock.withLock { _ throws(DiskImageError) in
            for c in reserved { try adjustRefcount(cluster: c, by: -1) }
            reserved = []
            try lockedFlush()
        }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    // MARK: Creating

    /// Writes a new, empty qcow2 image of `size` bytes (version 3, 16-bit
    /// refcounts), optionally over a backing file of a declared format.
    public static func create(path: String, size: UInt64, clusterBits: UInt32 = 16,
                              backingFile: String? = nil, backingFormat: DiskFormat? = nil) throws(DiskImageError) {
        guard (Qcow2Spec.minimumClusterBits...Qcow2Spec.maximumClusterBits).contains(clusterBits) else {
            throw .invalid("cluster size 2^\(clusterBits) (must be 512 bytes to 2 MiB)")
        }
        guard backingFile == nil || backingFormat != nil else { throw .invalid("a backing file needs its format declared") }
        let cs = UInt64(1) << UInt64(clusterBits)
        // An empty image (no L1 table) that resize() then grows: the general
        // allocator places the L1 table and any refcount blocks it needs.
        var h = Qcow2Header(version: 3, backingFileOffset: 0, backingFileSize: 0, clusterBits: clusterBits, size: 0,
                            cryptMethod: 0, l1Size: 0, l1TableOffset: 0, refcountTableOffset: cs, refcountTableClusters: 1,
                            snapshotCount: 0, snapshotsOffset: 0, headerLength: 112)
        h.featureNames = Qcow2Header.standardFeatureNames
        h.backingFile = backingFile
        h.backingFormat = backingFormat?.rawValue
        var headerBytes = h.encode()
        guard UInt64(headerBytes.count) <= cs else { throw .invalid("the header does not fit in a \(cs)-byte cluster") }
        headerBytes += [UInt8](repeating: 0, count: Int(cs) - headerBytes.count)
        var table = [UInt8](repeating: 0, count: Int(cs))
        table.setBE64(entry: 0, 2 * cs)
        var block = [UInt8](repeating: 0, count: Int(cs))
        for c in 0..<3 { block[2 * c + 1] = 1 } // 16-bit refcounts of the header, table and block
        do {
            let fd = try FileDescriptor.open(path, [.readWrite, .create, .exclusive], mode: 0o644)
            defer { fd.close() }
            try fd.writeAll(headerBytes + table + block, atOffset: 0)
            try fd.dataSync()
        } catch {
            throw .io("cannot create \(path): \(error)")
        }
        if size > 0 {
            let image = try Qcow2Image(path: path, readOnly: false, depth: 0, warn: { _ in })
            try image.resize(to: size)
        }
    }

    // MARK: Mapping

    var l2Bits: UInt64 { clusterBits - 3 }
    func l1Index(_ pos: UInt64) -> Int { Int(pos >> (clusterBits + l2Bits)) }
    func l2Index(_ pos: UInt64) -> Int { Int((pos >> clusterBits) & ((1 << l2Bits) - 1)) }

    enum Cluster {
        case unallocated
        case zero(preallocated: UInt64?, copied: Bool)
        case data(UInt64, copied: Bool)
        case compressed(UInt64)
    }

    func classify(_ entry: UInt64) throws(DiskImageError) -> Cluster {
        if entry & Qcow2Spec.Entry.compressed != 0 { return .compressed(entry) }
        guard entry & Qcow2Spec.Entry.l2Reserved == 0 else { throw .malformed("L2 entry 0x\(String(entry, radix: 16)) has reserved bits set") }
        let offset = entry & Qcow2Spec.Entry.offsetMask
        let copied = entry & Qcow2Spec.Entry.copied != 0
        if offset != 0 {
            guard offset % clusterSize == 0 else { throw .malformed("L2 entry at unaligned offset \(offset)") }
            guard offset / clusterSize < max(nextFree, 1) else { throw .malformed("L2 entry points beyond the end of the image (\(offset))") }
            guard offset >= clusterSize else { throw .malformed("L2 entry points at the header") }
        }
        if header.version >= 3, entry & Qcow2Spec.Entry.zero != 0 {
            return .zero(preallocated: offset == 0 ? nil : offset, copied: copied)
        }
        return offset == 0 ? .unallocated : .data(offset, copied: copied)
    }

    /// The L2 entry for `pos`; 0 where no L2 table exists.
    func l2Entry(_ pos: UInt64) throws(DiskImageError) -> UInt64 {
        let i = l1Index(pos)
        guard i < l1.count else { throw .malformed("offset \(pos) beyond the L1 table") }
        guard let table = try l2Table(l1Entry: l1[i]) else { return 0 }
        return table[l2Index(pos)]
    }

    /// The L2 table an L1 entry points at (loading it into the cache).
    func l2Table(l1Entry: UInt64) throws(DiskImageError) -> [UInt64]? {
        guard l1Entry & Qcow2Spec.Entry.l1Reserved == 0 else { throw .malformed("L1 entry 0x\(String(l1Entry, radix: 16)) has reserved bits set") }
        let offset = l1Entry & Qcow2Spec.Entry.offsetMask
        guard offset != 0 else { return nil }
        if let t = l2Cache.get(offset) { return t }
        guard offset % clusterSize == 0, offset >= clusterSize, offset / clusterSize < nextFree else {
            throw .malformed("L1 entry points at \(offset), outside the image")
        }
        let bytes = try readMetadata(offset)
        let table = (0..<Int(clusterSize / 8)).map { bytes.be64(entry: $0) }
        try insertL2(offset, table, dirty: false)
        return table
    }

    func readMetadata(_ offset: UInt64) throws(DiskImageError) -> [UInt8] {
        let bytes: [UInt8]
        do {
            bytes = try file.read(count: Int(clusterSize), atOffset: Int64(offset))
        } catch {
            throw .io("cannot read metadata at \(offset): \(error)")
        }
        guard bytes.count == Int(clusterSize) else { throw .malformed("metadata cluster at \(offset) past the end of the file") }
        return bytes
    }

    public func mapRead(offset: UInt64, length: UInt64) throws(DiskImageError) -> [ReadExtent] {
        try lock.withLock { _ throws(DiskImageError) in try lockedMapRead(offset: offset, length: length) }
    }

    func lockedMapRead(offset: UInt64, length: UInt64) throws(DiskImageError) -> [ReadExtent] {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= header.size else { throw .invalid("bytes \(offset)+\(length) beyond the end of the disk (\(header.size))") }
        var out: [ReadExtent] = []
        func append(_ e: ReadExtent) {
            switch (out.last, e) {
            case (.file(let fa, let oa, let na)?, .file(let fb, let ob, let nb)) where fa == fb && oa + na == ob:
                out[out.count - 1] = .file(fa, offset: oa, length: na + nb)
            case (.zero(let na)?, .zero(let nb)):
                out[out.count - 1] = .zero(length: na + nb)
            default:
                out.append(e)
            }
        }
        var pos = offset
        while pos < end {
            let inCluster = pos & (clusterSize - 1)
            let n = min(clusterSize - inCluster, end - pos)
            switch try classify(try l2Entry(pos)) {
            case .data(let host, _):
                append(.file(file, offset: host + inCluster, length: n))
            case .zero:
                append(.zero(length: n))
            case .compressed(let entry):
                let bytes = try decompress(entry)
                append(.bytes(bytes[Int(inCluster)..<Int(inCluster + n)]))
            case .unallocated:
                if let backing {
                    let size = backing.size
                    let inside = pos < size ? min(n, size - pos) : 0
                    if inside > 0 { for e in try backing.mapRead(offset: pos, length: inside) { append(e) } }
                    if inside < n { append(.zero(length: n - inside)) }
                } else {
                    append(.zero(length: n))
                }
            }
            pos += n
        }
        return out
    }

    /// The whole cluster a compressed L2 entry describes.
    func decompress(_ entry: UInt64) throws(DiskImageError) -> [UInt8] {
        if let d = decompressed, d.entry == entry { return d.bytes }
        let x = 62 - (clusterBits - 8)
        let host = entry & ((1 << x) - 1)
        let sectors = ((entry >> x) & ((1 << (clusterBits - 8)) - 1)) + 1
        let compressedLength = sectors * Qcow2Spec.compressedSectorSize - (host & (Qcow2Spec.compressedSectorSize - 1))
        guard host >= clusterSize, host / clusterSize < nextFree else { throw .malformed("compressed cluster at \(host) outside the image") }
        let input: [UInt8]
        do {
            input = try file.read(count: Int(compressedLength), atOffset: Int64(host))
        } catch {
            throw .io("cannot read compressed cluster at \(host): \(error)")
        }
        guard let out = Zlib.inflateRaw(input, size: Int(clusterSize)) else {
            throw .malformed("compressed cluster at \(host) does not inflate to a cluster")
        }
        decompressed = (entry, out)
        return out
    }

    // MARK: Writing

    public func mapWrite(offset: UInt64, length: UInt64,
                         data: (UInt64, Int) -> [UInt8]?) throws(DiskImageError) -> [(extent: WriteExtent, from: UInt64)] {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        return try lock.withLock { _ throws(DiskImageError) in
            let (end, overflow) = offset.addingReportingOverflow(length)
            guard !overflow, end <= header.size else { throw .invalid("bytes \(offset)+\(length) beyond the end of the disk (\(header.size))") }
            var out: [(extent: WriteExtent, from: UInt64)] = []
            var pos = offset
            while pos < end {
                let inCluster = pos & (clusterSize - 1)
                let n = min(clusterSize - inCluster, end - pos)
                let from = pos - offset
                let cluster = try classify(try l2Entry(pos))
                if case .data(let host, copied: true) = cluster {
                    guard !metadataClusters.contains(host / clusterSize) else {
                        throw .malformed("L2 entry for \(pos) points at metadata (cluster \(host / clusterSize))")
                    }
                    if let last = out.last, last.extent.offset + last.extent.length == host + inCluster, last.from + last.extent.length == from {
                        out[out.count - 1].extent.length += n
                    } else {
                        out.append((WriteExtent(offset: host + inCluster, length: n), from))
                    }
                } else {
                    guard let bytes = data(from, Int(n)) else { throw .io("the request's buffers are unreadable") }
                    try writeCluster(at: pos - inCluster, current: cluster, bytes: bytes, inCluster: inCluster)
                }
                pos += n
            }
            return out
        }
    }

    /// Writes `bytes` at `inCluster` of the guest cluster at `guestCluster`,
    /// whose current mapping `current` cannot take it in place: a new
    /// cluster gets the old contents with `bytes` over them, then the L2 entry
    /// points at it (in memory; on disk at the next flush).
    func writeCluster(at guestCluster: UInt64, current: Cluster, bytes: [UInt8], inCluster: UInt64) throws(DiskImageError) {
        var wasZero = false
        switch current {
        case .zero: wasZero = true
        case .unallocated: wasZero = backing == nil
        default: wasZero = false
        }
        var target: UInt64
        var freeOld: [UInt64] = []
        var fresh = true
        switch current {
        case .zero(let pre?, copied: true):
            target = pre // our own preallocated cluster: fill it in place
            fresh = false
        case .zero(let pre?, copied: false), .data(let pre, copied: false):
            target = try allocateCluster()
            freeOld = [pre]
        case .compressed(let entry):
            target = try allocateCluster()
            freeOld = compressedClusters(entry)
        default:
            target = try allocateCluster()
        }
        guard !metadataClusters.contains(target / clusterSize) else { throw .malformed("cluster \(target / clusterSize) is metadata") }
        do {
            // Part of a cluster that was all zeroes, into a new one: the new
            // cluster is made a hole (where the file system can), only the
            // bytes are written, and the file is made to reach the cluster's
            // end (a read of its other bytes then finds zeroes, not the end
            // of the file). Not a whole cluster of zeroes copied for 4 KiB.
            if wasZero && fresh && bytes.count < Int(clusterSize),
               (try? file.punchHole(offset: Int64(target), length: Int64(clusterSize))) != nil {
                try file.writeAll(bytes, atOffset: Int64(target + inCluster))
                let end = target + clusterSize
                if inCluster + UInt64(bytes.count) < clusterSize && end > knownFileEnd {
                    try file.writeAll([0], atOffset: Int64(end - 1))
                }
                knownFileEnd = max(knownFileEnd, end)
            } else {
                var content: [UInt8]
                if bytes.count == Int(clusterSize) {
                    content = bytes
                } else {
                    switch current {
                    case .zero: content = [UInt8](repeating: 0, count: Int(clusterSize))
                    default: content = try readLocked(guestCluster, count: Int(min(clusterSize, header.size - guestCluster)))
                    }
                    if content.count < Int(clusterSize) { content += [UInt8](repeating: 0, count: Int(clusterSize) - content.count) }
                    content.replaceSubrange(Int(inCluster)..<Int(inCluster) + bytes.count, with: bytes)
                }
                try file.writeAll(content, atOffset: Int64(target))
                knownFileEnd = max(knownFileEnd, target + clusterSize)
            }
        } catch {
            throw .io("write at \(target): \(error)")
        }
        if durable {
            // The mapping is written through next: if the cluster's earlier
            // contents were not all zeroes, its data must be on disk first.
            if !wasZero { try sync() }
        }
        _ = try setL2Entry(guestCluster, target | Qcow2Spec.Entry.copied)
        pendingFrees += freeOld
        if case .compressed = current { decompressed = nil }
    }

    /// Reads through the current mapping with the lock held.
    func readLocked(_ offset: UInt64, count: Int) throws(DiskImageError) -> [UInt8] {
        try lockedMapRead(offset: offset, length: UInt64(count)).gathered()
    }

    /// The host clusters a compressed entry's bytes occupy.
    func compressedClusters(_ entry: UInt64) -> [UInt64] {
        let x = 62 - (clusterBits - 8)
        let host = entry & ((1 << x) - 1)
        let sectors = ((entry >> x) & ((1 << (clusterBits - 8)) - 1)) + 1
        let last = (host & ~(Qcow2Spec.compressedSectorSize - 1)) + sectors * Qcow2Spec.compressedSectorSize - 1
        return Array(stride(from: host / clusterSize, through: last / clusterSize, by: 1)).map { $0 * clusterSize }
    }

    /// Sets the L2 entry for `pos`, giving the L1 entry its own writable L2
    /// table first (new, or a copy of one a snapshot shares). Returns the old entry.
    @discardableResult
    func setL2Entry(_ pos: UInt64, _ value: UInt64) throws(DiskImageError) -> UInt64 {
        let i = l1Index(pos)
        guard i < l1.count else { throw .malformed("offset \(pos) beyond the L1 table") }
        var tableOffset = l1[i] & Qcow2Spec.Entry.offsetMask
        if tableOffset == 0 || l1[i] & Qcow2Spec.Entry.copied == 0 {
            // A new table, or our own copy of one a snapshot shares (the
            // old table keeps the snapshot's references).
            let shared = tableOffset == 0 ? nil : try l2Table(l1Entry: l1[i])
            let old = tableOffset
            tableOffset = try allocateCluster()
            metadataClusters.insert(tableOffset / clusterSize)
            l1[i] = tableOffset | Qcow2Spec.Entry.copied
            dirtyL1.insert(i)
            if old != 0 { pendingFrees.append(old) }
            var table = shared ?? [UInt64](repeating: 0, count: Int(clusterSize / 8))
            if durable {
                // The whole table, with this entry, then the L1 entry: a copy
                // of a snapshot's table must be on disk before anything points at it.
                table[l2Index(pos)] = value
                try writeL2(tableOffset, table)
                if shared != nil { try sync() }
                writeThroughL1(i)
                try insertL2(tableOffset, table, dirty: true)
                return shared?[l2Index(pos)] ?? 0
            }
            try insertL2(tableOffset, table, dirty: true)
        } else {
            _ = try l2Table(l1Entry: l1[i]) // in the cache
        }
        // In place: a cached table is not copied for each entry changed.
        let j = l2Index(pos)
        guard let old = l2Cache.modify(tableOffset, { (t: inout [UInt64]) -> UInt64 in
            defer { t[j] = value }
            return t[j]
        }) else { throw .malformed("L2 table at \(tableOffset) left the cache") }
        if durable {
            var e = [UInt8](repeating: 0, count: 8)
            e.setBE64(entry: 0, value)
            try writeMetadata(e, at: tableOffset + UInt64(j) * 8)
        }
        return old
    }

    /// Writes L1 entry `i` to the file now (durableAcrossRestarts); the
    /// flush writes it again in its place in the order.
    func writeThroughL1(_ i: Int) {
        var e = [UInt8](repeating: 0, count: 8)
        e.setBE64(entry: 0, l1[i])
        try? writeMetadata(e, at: header.l1TableOffset + UInt64(i) * 8)
    }

    func insertL2(_ offset: UInt64, _ table: [UInt64], dirty: Bool) throws(DiskImageError) {
        if let evicted = l2Cache.put(offset, table, dirty: dirty) {
            // A dirty table leaves the cache: its refcounts and data first.
            try writeRefcountBlocks()
            try sync()
            try writeL2(evicted.0, evicted.1)
        }
    }

    func writeL2(_ offset: UInt64, _ table: [UInt64]) throws(DiskImageError) {
        var bytes = [UInt8](repeating: 0, count: table.count * 8)
        for (k, v) in table.enumerated() { bytes.setBE64(entry: k, v) }
        try writeMetadata(bytes, at: offset)
    }

    func writeMetadata(_ bytes: [UInt8], at offset: UInt64) throws(DiskImageError) {
        do {
            try file.writeAll(bytes, atOffset: Int64(offset))
        } catch {
            throw .io("cannot write metadata at \(offset): \(error)")
        }
    }

    func sync() throws(DiskImageError) {
        do {
            try file.dataSync()
        } catch {
            throw .io("fdatasync \(path): \(error)")
        }
    }

    // MARK: Refcounts

    var refcountBits: UInt64 { 1 << UInt64(header.refcountOrder) }
    var refcountBlockEntries: UInt64 { clusterSize * 8 / refcountBits }

    func refcountBlock(_ tableIndex: Int) throws(DiskImageError) -> (offset: UInt64, block: [UInt8])? {
        guard tableIndex < refcountTable.count else { return nil }
        let offset = refcountTable[tableIndex] & Qcow2Spec.refcountTableOffsetMask
        guard offset != 0 else { return nil }
        if let b = refcountCache.get(offset) { return (offset, b) }
        guard offset % clusterSize == 0, offset / clusterSize < nextFree, offset >= clusterSize else {
            throw .malformed("refcount block at \(offset) outside the image")
        }
        let b = try readMetadata(offset)
        try putRefcountBlock(offset, b, dirty: false)
        return (offset, b)
    }

    func putRefcountBlock(_ offset: UInt64, _ block: [UInt8], dirty: Bool) throws(DiskImageError) {
        if let evicted = refcountCache.put(offset, block, dirty: dirty) {
            // Refcount increases may reach the disk early: only decreases wait (step 4).
            try writeMetadata(evicted.1, at: evicted.0)
        }
    }

    func refcount(in block: [UInt8], _ index: Int) -> UInt64 {
        let bits = Int(refcountBits)
        if bits < 8 {
            let perByte = 8 / bits
            return UInt64(block[index / perByte] >> UInt8((index % perByte) * bits)) & ((1 << UInt64(bits)) - 1)
        }
        let bytes = bits / 8
        var v: UInt64 = 0
        for k in 0..<bytes { v = v << 8 | UInt64(block[index * bytes + k]) }
        return v
    }

    func setRefcount(in block: inout [UInt8], _ index: Int, _ value: UInt64) {
        let bits = Int(refcountBits)
        if bits < 8 {
            let perByte = 8 / bits
            let shift = UInt8((index % perByte) * bits)
            let mask = UInt8((1 << bits) - 1) << shift
            block[index / perByte] = (block[index / perByte] & ~mask) | (UInt8(value) << shift & mask)
            return
        }
        let bytes = bits / 8
        for k in 0..<bytes { block[index * bytes + k] = UInt8(truncatingIfNeeded: value >> UInt64(8 * (bytes - 1 - k))) }
    }

    /// The refcount of host cluster `cluster` (0 where no block covers it).
    func refcount(cluster: UInt64) throws(DiskImageError) -> UInt64 {
        let t = Int(cluster / refcountBlockEntries)
        guard let found = try refcountBlock(t) else { return 0 }
        return refcount(in: found.block, Int(cluster % refcountBlockEntries))
    }

    /// Adds `delta` to a covered cluster's refcount.
    func adjustRefcount(cluster: UInt64, by delta: Int64) throws(DiskImageError) {
        // Only the block's offset is kept here: the cached block stays
        // uniquely referenced, so it is changed in place below.
        guard let offset = try refcountBlock(Int(cluster / refcountBlockEntries))?.offset else {
            throw .malformed("cluster \(cluster) has no refcount block")
        }
        let i = Int(cluster % refcountBlockEntries)
        let max = refcountBits == 64 ? UInt64.max : (1 << refcountBits) - 1
        var failure: DiskImageError?
        let cached = refcountCache.modify(offset) { (block: inout [UInt8]) in
            let old = self.refcount(in: block, i)
            if delta < 0 {
                guard old >= UInt64(-delta) else { failure = .malformed("refcount of cluster \(cluster) would drop below zero"); return }
                self.setRefcount(in: &block, i, old - UInt64(-delta))
            } else {
                guard max - old >= UInt64(delta) else { failure = .unsupported("refcount of cluster \(cluster) would exceed \(max)"); return }
                self.setRefcount(in: &block, i, old + UInt64(delta))
            }
        }
        if let failure { throw failure }
        guard cached != nil else { throw .malformed("refcount block at \(offset) left the cache") }
    }

    /// A new cluster for data or a table: the next reserved one when writes
    /// must survive a restart, else a fresh one.
    func allocateCluster() throws(DiskImageError) -> UInt64 {
        guard durable else { return try allocateFreshCluster() }
        if reserved.isEmpty {
            for _ in 0..<Self.reservationClusters { reserved.append(try allocateFreshCluster() / clusterSize) }
            // Their refcounts on disk before any mapping names one of them.
            try writeRefcountBlocks()
            try sync()
        }
        return reserved.removeFirst() * clusterSize
    }

    /// A new cluster at the end of the image, its refcount 1 (in memory).
    func allocateFreshCluster() throws(DiskImageError) -> UInt64 {
        var skipped = 0
        while true {
            let c = nextFree
            guard c * clusterSize < Qcow2Spec.maximumVirtualSize else { throw .io("the image file cannot grow further") }
            let t = Int(c / refcountBlockEntries)
            if t >= refcountTable.count {
                try growRefcountTable(toCover: t)
                continue
            }
            if refcountTable[t] & Qcow2Spec.refcountTableOffsetMask == 0 {
                // A new refcount block, placed at `c`, which it covers itself.
                var block = [UInt8](repeating: 0, count: Int(clusterSize))
                setRefcount(in: &block, Int(c % refcountBlockEntries), 1)
                try writeMetadata(block, at: c * clusterSize)
                try sync()
                var entry = [UInt8](repeating: 0, count: 8)
                entry.setBE64(entry: 0, c * clusterSize)
                try writeMetadata(entry, at: header.refcountTableOffset + UInt64(t) * 8)
                try sync()
                refcountTable[t] = c * clusterSize
                metadataClusters.insert(c)
                try putRefcountBlock(c * clusterSize, block, dirty: false)
                nextFree = c + 1
                continue
            }
            nextFree = c + 1
            guard try refcount(cluster: c) == 0 else {
                // In-use clusters past the end of the file: a few (preallocation), not millions.
                skipped += 1
                guard skipped < 1 << 20 else { throw .malformed("no free cluster among a million past the end of the image") }
                continue
            }
            try adjustRefcount(cluster: c, by: 1)
            return c * clusterSize
        }
    }

    /// Replaces the refcount table by a larger one that covers block index
    /// `needed`, placed at the end of the file with the refcount blocks that
    /// cover it; the header switches to it in one sector write.
    func growRefcountTable(toCover needed: Int) throws(DiskImageError) {
        let perCluster = Int(clusterSize / 8)
        let entriesPerBlock = refcountBlockEntries
        let start = nextFree
        var entries = max(needed + 1, refcountTable.count * 2)
        var tableClusters: UInt64 = 0
        var newBlocks: [Int: UInt64] = [:]  // table index -> cluster index
        // Fixed point: the table's clusters and the blocks' clusters must all be covered.
        for _ in 0..<64 {
            tableClusters = UInt64((entries + perCluster - 1) / perCluster)
            newBlocks = [:]
            var next = start + tableClusters
            var changed = true
            while changed {
                changed = false
                let last = next - 1
                for t in Int(start / entriesPerBlock)...Int(last / entriesPerBlock) {
                    let hasOld = t < refcountTable.count && refcountTable[t] & Qcow2Spec.refcountTableOffsetMask != 0
                    if !hasOld, newBlocks[t] == nil {
                        newBlocks[t] = next
                        next += 1
                        changed = true
                    }
                }
            }
            let maxIndex = max(needed, newBlocks.keys.max() ?? 0)
            if maxIndex < entries { break }
            entries = maxIndex + 1
        }
        guard tableClusters * clusterSize <= UInt64(Qcow2Spec.maximumRefcountTableBytes) else {
            throw .unsupported("the refcount table would exceed \(Qcow2Spec.maximumRefcountTableBytes) bytes")
        }
        var table = refcountTable + [UInt64](repeating: 0, count: Int(tableClusters) * perCluster - refcountTable.count)
        for (t, c) in newBlocks { table[t] = c * clusterSize }
        // Write the new blocks (with the refcounts of everything placed here), then the table.
        let placed = Array(start..<(start + tableClusters)) + Array(newBlocks.values)
        var blocks: [Int: [UInt8]] = [:]
        for (t, _) in newBlocks { blocks[t] = [UInt8](repeating: 0, count: Int(clusterSize)) }
        for c in placed {
            let t = Int(c / entriesPerBlock)
            if var b = blocks[t] {
                setRefcount(in: &b, Int(c % entriesPerBlock), 1)
                blocks[t] = b
            }
        }
        for (t, b) in blocks { try writeMetadata(b, at: table[t]) }
        var bytes = [UInt8](repeating: 0, count: Int(tableClusters * clusterSize))
        for (k, v) in table.enumerated() { bytes.setBE64(entry: k, v) }
        try writeMetadata(bytes, at: start * clusterSize)
        try sync()
        let oldOffset = header.refcountTableOffset, oldClusters = UInt64(header.refcountTableClusters)
        var w = BigEndianWriter()
        w.u64(start * clusterSize); w.u32(UInt32(tableClusters))
        try writeMetadata(w.bytes, at: 48)
        try sync()
        header.refcountTableOffset = start * clusterSize
        header.refcountTableClusters = UInt32(tableClusters)
        refcountTable = table
        for c in placed { metadataClusters.insert(c) }
        for (t, b) in blocks { try putRefcountBlock(table[t], b, dirty: false) }
        nextFree = placed.max().map { $0 + 1 } ?? nextFree
        // Placed clusters that old blocks cover get their refcount there.
        for c in placed where newBlocks[Int(c / entriesPerBlock)] == nil { try adjustRefcount(cluster: c, by: 1) }
        // The old table is unreferenced now that the header points at the new one.
        for k in 0..<oldClusters {
            let c = oldOffset / clusterSize + k
            metadataClusters.remove(c)
            try adjustRefcount(cluster: c, by: -1)
        }
    }

    // MARK: Flush, discard, zeroes, resize

    public func flush() throws(DiskImageError) {
        guard !readOnly else { return }
        try lock.withLock { _ throws(DiskImageError) in try lockedFlush() }
    }

    func lockedFlush() throws(DiskImageError) {
        // 1. refcounts (and the data written so far) ...
        try writeRefcountBlocks()
        try sync()
        // 2. ... before the L2 tables that point at them ...
        let dirtyTables = l2Cache.takeDirty()
        for (offset, t) in dirtyTables { try writeL2(offset, t) }
        // 3. ... before the L1 entries that point at those.
        if !dirtyL1.isEmpty {
            try sync()
            for i in dirtyL1.sorted() {
                var e = [UInt8](repeating: 0, count: 8)
                e.setBE64(entry: 0, l1[i])
                try writeMetadata(e, at: header.l1TableOffset + UInt64(i) * 8)
            }
            dirtyL1 = []
        }
        try sync()
        // 4. Nothing on disk points at freed clusters any more.
        if !pendingFrees.isEmpty {
            let frees = pendingFrees
            pendingFrees = []
            for offset in frees {
                let c = offset / clusterSize
                try adjustRefcount(cluster: c, by: -1)
                if try refcount(cluster: c) == 0 {
                    metadataClusters.remove(c)
                    try? file.punchHole(offset: Int64(offset), length: Int64(clusterSize))
                }
            }
            try writeRefcountBlocks()
        }
    }

    func writeRefcountBlocks() throws(DiskImageError) {
        for (offset, b) in refcountCache.takeDirty() { try writeMetadata(b, at: offset) }
    }

    public func discard(offset: UInt64, length: UInt64) throws(DiskImageError) {
        try unmapRange(offset: offset, length: length, zeroes: false, unmap: true)
    }

    public func writeZeroes(offset: UInt64, length: UInt64, unmap: Bool) throws(DiskImageError) {
        try unmapRange(offset: offset, length: length, zeroes: true, unmap: unmap)
    }

    func unmapRange(offset: UInt64, length: UInt64, zeroes: Bool, unmap: Bool) throws(DiskImageError) {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        try lock.withLock { _ throws(DiskImageError) in
            let (end, overflow) = offset.addingReportingOverflow(length)
            guard !overflow, end <= header.size else { throw .invalid("bytes \(offset)+\(length) beyond the end of the disk (\(header.size))") }
            var pos = offset
            while pos < end {
                let inCluster = pos & (clusterSize - 1)
                let n = min(clusterSize - inCluster, end - pos)
                let current = try classify(try l2Entry(pos))
                let whole = n == clusterSize || (inCluster == 0 && pos + n == header.size)
                if !whole {
                    // Part of a cluster: discard skips it, write-zeroes writes zeroes.
                    if zeroes { try zeroPart(pos, n, current) }
                } else {
                    try unmapCluster(pos, current, zeroes: zeroes, unmap: unmap)
                }
                pos += n
            }
            if pendingFrees.count > 4096 { try lockedFlush() }
        }
    }

    func zeroPart(_ pos: UInt64, _ n: UInt64, _ current: Cluster) throws(DiskImageError) {
        let inCluster = pos & (clusterSize - 1)
        switch current {
        case .zero: return
        case .unallocated where backing == nil: return
        case .data(let host, copied: true):
            do {
                try file.writeAll([UInt8](repeating: 0, count: Int(n)), atOffset: Int64(host + inCluster))
            } catch {
                throw .io("write at \(host + inCluster): \(error)")
            }
        default:
            try writeCluster(at: pos - inCluster, current: current, bytes: [UInt8](repeating: 0, count: Int(n)), inCluster: inCluster)
        }
    }

    func unmapCluster(_ pos: UInt64, _ current: Cluster, zeroes: Bool, unmap: Bool) throws(DiskImageError) {
        let v3 = header.version >= 3
        var old: [UInt64] = []
        switch current {
        case .data(let h, _), .zero(let h?, _): old = [h]
        case .compressed(let e): old = compressedClusters(e); decompressed = nil
        default: break
        }
        let newEntry: UInt64
        if !v3 {
            // Version 2 has no zero flag: unallocated reads zeroes only without a backing file.
            if zeroes && backing != nil {
                try zeroPart(pos, clusterSize, current)
                return
            }
            if case .unallocated = current { return }
            newEntry = 0
        } else if zeroes && !unmap, case .data(let h, copied: true) = current {
            // Keep the space: a preallocated zero cluster.
            _ = try setL2Entry(pos, h | Qcow2Spec.Entry.copied | Qcow2Spec.Entry.zero)
            return
        } else {
            if case .zero(nil, _) = current { return }
            if case .unallocated = current, backing == nil { return }
            // Discard too reads zeroes afterwards (not the backing file's data), as QEMU does.
            newEntry = Qcow2Spec.Entry.zero
        }
        _ = try setL2Entry(pos, newEntry)
        pendingFrees += old
    }

    /// Allocates every cluster of the virtual disk that has none (qemu-img's
    /// `preallocation=metadata`): its L2 entries point at host clusters of
    /// their own, marked zero on version 3 so they read as zeroes until
    /// written (a write then fills the cluster in place, with no allocation),
    /// and the file is extended, sparsely, over them.
    public func preallocateMetadata() throws(DiskImageError) {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        try lock.withLock { _ throws(DiskImageError) in
            let zero = header.version >= 3 ? Qcow2Spec.Entry.zero : 0
            var pos: UInt64 = 0
            while pos < header.size {
                if try l2Entry(pos) == 0 {
                    let host = try allocateCluster()
                    try setL2Entry(pos, host | Qcow2Spec.Entry.copied | zero)
                }
                pos += clusterSize
            }
            do {
                let end = Int64(nextFree * clusterSize)
                if try file.size() < end { try file.truncate(to: end) }
            } catch {
                throw .io("cannot extend \(path): \(error)")
            }
            try lockedFlush()
        }
    }

    public func resize(to bytes: UInt64) throws(DiskImageError) {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        try lock.withLock { _ throws(DiskImageError) in
            guard bytes >= header.size else {
                throw .invalid("shrinking \(path) from \(header.size) to \(bytes) bytes would discard guest data")
            }
            guard bytes <= Qcow2Spec.maximumVirtualSize else { throw .invalid("size \(bytes) is too large") }
            let needed = Qcow2Header.l1Entries(size: bytes, clusterBits: header.clusterBits)
            guard needed * 8 <= UInt64(Qcow2Spec.maximumL1Bytes) else { throw .invalid("size \(bytes) needs an L1 table over 32 MiB") }
            var newL1Offset = header.l1TableOffset
            var newL1Size = header.l1Size
            if needed > UInt64(l1.count) {
                try lockedFlush() // the L1 copied below must be the one on disk
                let clusters = (needed * 8 + clusterSize - 1) / clusterSize
                let first = try allocateContiguous(clusters)
                var table = [UInt8](repeating: 0, count: Int(clusters * clusterSize))
                for (k, v) in l1.enumerated() { table.setBE64(entry: k, v) }
                try writeMetadata(table, at: first)
                try sync()
                for k in 0..<clusters { metadataClusters.insert(first / clusterSize + k) }
                newL1Offset = first
                newL1Size = UInt32(needed)
            }
            // size (24), crypt (32), l1_size (36) and l1_table_offset (40) in one sector write.
            var w = BigEndianWriter()
            w.u64(bytes); w.u32(header.cryptMethod); w.u32(newL1Size); w.u64(newL1Offset)
            try writeMetadata(w.bytes, at: 24)
            try sync()
            let oldOffset = header.l1TableOffset, oldSize = UInt64(header.l1Size)
            if newL1Offset != oldOffset, oldSize > 0 {
                for k in 0..<((oldSize * 8 + clusterSize - 1) / clusterSize) {
                    metadataClusters.remove(oldOffset / clusterSize + k)
                    pendingFrees.append(oldOffset + k * clusterSize)
                }
            }
            header.size = bytes
            header.l1Size = newL1Size
            header.l1TableOffset = newL1Offset
            if l1.count < Int(newL1Size) { l1 += [UInt64](repeating: 0, count: Int(newL1Size) - l1.count) }
            try lockedFlush()
        }
    }

    /// `count` consecutive new clusters.
    func allocateContiguous(_ count: UInt64) throws(DiskImageError) -> UInt64 {
        while true {
            let first = try allocateFreshCluster()
            var ok = true
            for k in 1..<max(count, 1) {
                let c = try allocateFreshCluster()
                if c != first + k * clusterSize {
                    // A refcount block landed in between: give these back and start after it.
                    for j in 0..<k { try adjustRefcount(cluster: first / clusterSize + j, by: -1) }
                    try adjustRefcount(cluster: c / clusterSize, by: -1)
                    ok = false
                    break
                }
            }
            if ok { return first }
        }
    }
}

/// A bounded cache of metadata clusters with least-recently-used eviction.
/// `put` returns a dirty entry it evicted, which the caller writes.
struct MetadataCache<Value> {
    private var entries: [UInt64: (value: Value, dirty: Bool, used: UInt64)] = [:]
    private var clock: UInt64 = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    mutating func get(_ key: UInt64) -> Value? {
        guard let e = entries[key] else { return nil }
        clock += 1
        entries[key] = (e.value, e.dirty, clock)
        return e.value
    }

    mutating func put(_ key: UInt64, _ value: Value, dirty: Bool) -> (UInt64, Value)? {
        clock += 1
        let wasDirty = entries[key]?.dirty ?? false
        entries[key] = (value, dirty || wasDirty, clock)
        guard entries.count > capacity else { return nil }
        var victim: (key: UInt64, used: UInt64)?
        for (k, e) in entries where k != key && e.used < (victim?.used ?? .max) { victim = (k, e.used) }
        guard let v = victim, let evicted = entries.removeValue(forKey: v.key) else { return nil }
        return evicted.dirty ? (v.key, evicted.value) : nil
    }

    /// Changes a cached entry in place (taken out of the dictionary so the
    /// value is uniquely referenced and not copied) and marks it dirty; nil
    /// if it is not cached.
    mutating func modify<R>(_ key: UInt64, _ body: (inout Value) -> R) -> R? {
        guard var e = entries.removeValue(forKey: key) else { return nil }
        let r = body(&e.value)
        clock += 1
        entries[key] = (e.value, true, clock)
        return r
    }

    /// The dirty entries (marked clean).
    mutating func takeDirty() -> [(UInt64, Value)] {
        var out: [(UInt64, Value)] = []
        for (k, e) in entries where e.dirty {
            out.append((k, e.value))
            entries[k] = (e.value, false, e.used)
        }
        return out.sorted { $0.0 < $1.0 }
    }
}
