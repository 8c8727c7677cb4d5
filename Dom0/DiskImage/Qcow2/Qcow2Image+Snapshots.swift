import ApusSys

/// Internal snapshots, as QEMU keeps them (block/qcow2-snapshot.c): a
/// snapshot is a copy of the L1 table plus one more reference on every L2
/// table and data cluster the active tables reach; the active tables lose
/// their COPIED flags, so the next write to a shared cluster copies it.
///
/// Each operation keeps the file consistent at every instant (a crash
/// leaves leaked clusters at worst): references are added before anything
/// new points at them, and dropped only once nothing on disk does.
/// The caller makes sure no request is in flight (apus-blkback runs these
/// on quiesced rings; apusd on images no backend has open).
extension Qcow2Image {
    /// The snapshots in the image's table, oldest first.
    public var snapshots: [Qcow2Snapshot] { lock.withLock { _ in snapshotList } }

    /// Takes an internal snapshot named `name` (unique in the image) of the
    /// disk as it is now; returns its entry (its ID the next free number).
    @discardableResult
    public func createSnapshot(name: String, dateSeconds: UInt32, dateNanoseconds: UInt32 = 0,
                               vmClockNanoseconds: UInt64 = 0) throws(DiskImageError) -> Qcow2Snapshot {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        guard !name.isEmpty, name.utf8.count <= 0xFFFF else { throw .invalid("a snapshot name must have 1 to 65535 bytes") }
        return try lock.withLock { _ throws(DiskImageError) in
            guard !snapshotList.contains(where: { $0.name == name }) else {
                throw .invalid("\(path) already has a snapshot named '\(name)'")
            }
            guard snapshotList.count < Qcow2SnapshotTable.maximumCount else { throw .unsupported("\(path) has the most snapshots qcow2 allows") }
            try lockedFlush()
            // 1. One more reference on everything the active tables reach,
            //    COPIED flags cleared (the refcounts reach the disk first).
            var active = l1
            try updateReferences(l1Table: &active, by: 1, active: true)
            l1 = active
            // 2. The snapshot's own copy of the L1 table.
            let bytes = UInt64(l1.count) * 8
            var copyOffset: UInt64 = 0
            if bytes > 0 {
                copyOffset = try allocateContiguous((bytes + clusterSize - 1) / clusterSize)
                try writeMetadata(encodeL1(l1), at: copyOffset)
                markMetadata(copyOffset, bytes: bytes)
            }
            // The next number (QEMU's rule), skipping any an odd table already holds.
            var next = (snapshotList.compactMap { UInt64($0.id) }.max() ?? 0) &+ 1
            while snapshotList.contains(where: { $0.id == String(next) }) { next &+= 1 }
            let snapshot = Qcow2Snapshot(id: String(next), name: name, l1TableOffset: copyOffset, l1Size: UInt32(l1.count),
                                         dateSeconds: dateSeconds, dateNanoseconds: dateNanoseconds,
                                         vmClockNanoseconds: vmClockNanoseconds, vmStateSize: 0, diskSize: header.size)
            try sync()
            // 3. A new table with it; the header switches to that table.
            try writeSnapshotTable(snapshotList + [snapshot])
            return snapshot
        }
    }

    /// Makes the disk what it was when the snapshot (by ID, else by name)
    /// was taken; what was written since is dropped. The snapshot stays.
    public func applySnapshot(_ idOrName: String) throws(DiskImageError) {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        try lock.withLock { _ throws(DiskImageError) in
            let s = try findSnapshot(idOrName)
            try lockedFlush()
            var target = try readL1(s)
            let size = s.diskSize ?? header.size
            guard size <= Qcow2Spec.maximumVirtualSize else { throw .malformed("snapshot '\(s.name)' records a disk of \(size) bytes") }
            guard UInt64(target.count) >= Qcow2Header.l1Entries(size: size, clusterBits: header.clusterBits) else {
                throw .malformed("snapshot '\(s.name)' has an L1 table too small for its \(size) bytes")
            }
            // 1. References for the snapshot's tree as the active one.
            try updateReferences(l1Table: &target, by: 1, active: false)
            // 2. The active L1 table becomes the snapshot's (a new one when
            //    sizes differ), and the header its size.
            let old = l1
            if target.count == l1.count {
                try writeMetadata(encodeL1(target), at: header.l1TableOffset)
                try sync()
            } else {
                let bytes = UInt64(target.count) * 8
                let first = try allocateContiguous((bytes + clusterSize - 1) / clusterSize)
                try writeMetadata(encodeL1(target), at: first)
                try writeRefcountBlocks()
                try sync()
                var w = BigEndianWriter()
                w.u64(size); w.u32(header.cryptMethod); w.u32(UInt32(target.count)); w.u64(first)
                try writeMetadata(w.bytes, at: 24)
                try sync()
                try dropTable(at: header.l1TableOffset, bytes: UInt64(header.l1Size) * 8)
                markMetadata(first, bytes: bytes)
                header.l1TableOffset = first
                header.l1Size = UInt32(target.count)
            }
            if size != header.size {
                var w = BigEndianWriter()
                w.u64(size)
                try writeMetadata(w.bytes, at: 24)
                try sync()
            }
            header.size = size
            l1 = target
            dirtyL1 = []
            decompressed = nil
            // 3. The old active tree loses its references, then flags follow refcounts.
            var oldTable = old
            try updateReferences(l1Table: &oldTable, by: -1, active: false)
            try updateReferences(l1Table: &target, by: 0, active: true)
            l1 = target
            try lockedFlush()
        }
    }

    /// Removes a snapshot (by ID, else by name) and frees what only it used.
    public func deleteSnapshot(_ idOrName: String) throws(DiskImageError) {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        try lock.withLock { _ throws(DiskImageError) in
            let s = try findSnapshot(idOrName)
            try lockedFlush()
            // 1. Out of the table on disk ...
            try writeSnapshotTable(snapshotList.filter { $0.id != s.id })
            // 2. ... then its tree loses its references, its L1 copy goes,
            //    and the active tables get COPIED back where they are alone.
            var table = try readL1(s)
            try updateReferences(l1Table: &table, by: -1, active: false)
            try dropTable(at: s.l1TableOffset, bytes: UInt64(s.l1Size) * 8)
            var active = l1
            try updateReferences(l1Table: &active, by: 0, active: true)
            l1 = active
            try lockedFlush()
        }
    }

    // MARK: Helpers (lock held)

    func findSnapshot(_ idOrName: String) throws(DiskImageError) -> Qcow2Snapshot {
        if let s = snapshotList.first(where: { $0.id == idOrName }) ?? snapshotList.first(where: { $0.name == idOrName }) { return s }
        throw .invalid("\(path) has no snapshot '\(idOrName)'")
    }

    func readL1(_ s: Qcow2Snapshot) throws(DiskImageError) -> [UInt64] {
        guard s.l1Size > 0 else { return [] }
        let bytes: [UInt8]
        do {
            bytes = try file.read(count: Int(s.l1Size) * 8, atOffset: Int64(s.l1TableOffset))
        } catch {
            throw .io("cannot read snapshot '\(s.name)''s L1 table: \(error)")
        }
        guard bytes.count == Int(s.l1Size) * 8 else { throw .malformed("snapshot '\(s.name)''s L1 table runs past the end of the file") }
        return (0..<Int(s.l1Size)).map { bytes.be64(entry: $0) }
    }

    func encodeL1(_ table: [UInt64]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: table.count * 8)
        for (k, v) in table.enumerated() { bytes.setBE64(entry: k, v) }
        return bytes
    }

    func markMetadata(_ offset: UInt64, bytes: UInt64) {
        guard bytes > 0 else { return }
        for c in (offset / clusterSize)...((offset + bytes - 1) / clusterSize) { metadataClusters.insert(c) }
    }

    /// Drops the reference on the clusters of a table nothing on disk names any more.
    func dropTable(at offset: UInt64, bytes: UInt64) throws(DiskImageError) {
        guard bytes > 0 else { return }
        for c in (offset / clusterSize)...((offset + bytes - 1) / clusterSize) { try release(cluster: c) }
    }

    /// One reference less on cluster `c`; at zero its space goes back to the file system.
    func release(cluster c: UInt64) throws(DiskImageError) {
        try adjustRefcount(cluster: c, by: -1)
        if try refcount(cluster: c) == 0 {
            metadataClusters.remove(c)
            try? file.punchHole(offset: Int64(c * clusterSize), length: Int64(clusterSize))
        }
    }

    /// Adds `delta` (+1, -1, or 0 to only fix flags) to the refcount of
    /// every L2 table and data cluster `l1Table` reaches. For the active
    /// table (`active`), each entry's COPIED flag then says whether its
    /// cluster's refcount is 1, and changed L2 tables and L1 entries are
    /// written. Refcount blocks are written before any table.
    func updateReferences(l1Table: inout [UInt64], by delta: Int64, active: Bool) throws(DiskImageError) {
        let mask = Qcow2Spec.Entry.offsetMask
        var seenTables = Set<UInt64>()
        // Pass 1: refcounts.
        if delta != 0 {
            for e in l1Table where e & mask != 0 {
                let tableOffset = e & mask
                guard seenTables.insert(tableOffset).inserted else { throw .malformed("two L1 entries share the L2 table at \(tableOffset)") }
                guard let table = try l2Table(l1Entry: e) else { continue }
                for entry in table where entry != 0 {
                    switch try classify(entry) {
                    case .data(let host, _), .zero(let host?, _):
                        if delta < 0 { try release(cluster: host / clusterSize) } else { try adjustRefcount(cluster: host / clusterSize, by: delta) }
                    case .compressed(let c):
                        for host in compressedClusters(c) {
                            if delta < 0 { try release(cluster: host / clusterSize) } else { try adjustRefcount(cluster: host / clusterSize, by: delta) }
                        }
                    default: break
                    }
                }
                if delta < 0 { try release(cluster: tableOffset / clusterSize) } else { try adjustRefcount(cluster: tableOffset / clusterSize, by: delta) }
            }
            try writeRefcountBlocks()
            try sync()
        }
        guard active else { return }
        // Pass 2: COPIED flags of the active tables.
        let copied = Qcow2Spec.Entry.copied
        var l1Changed = false
        for i in l1Table.indices where l1Table[i] & mask != 0 {
            let tableOffset = l1Table[i] & mask
            guard var table = try l2Table(l1Entry: l1Table[i]) else { continue }
            var changed = false
            for j in table.indices where table[j] != 0 {
                let want: Bool
                switch try classify(table[j]) {
                case .data(let host, _), .zero(let host?, _): want = try refcount(cluster: host / clusterSize) == 1
                default: want = false
                }
                let flagged = table[j] & copied != 0
                if want != flagged, table[j] & Qcow2Spec.Entry.compressed == 0 {
                    table[j] = want ? table[j] | copied : table[j] & ~copied
                    changed = true
                }
            }
            let alone = try refcount(cluster: tableOffset / clusterSize) == 1
            if changed {
                try writeL2(tableOffset, table)
                try insertL2(tableOffset, table, dirty: false)
            }
            let entry = alone ? l1Table[i] | copied : l1Table[i] & ~copied
            if entry != l1Table[i] { l1Table[i] = entry; l1Changed = true }
        }
        if l1Changed {
            try sync()
            try writeMetadata(encodeL1(l1Table), at: header.l1TableOffset)
        }
        try sync()
    }

    /// Writes `table` as the image's snapshot table, in new clusters, and
    /// switches the header to it (count and offset in one write); the old
    /// table's clusters are then released.
    func writeSnapshotTable(_ table: [Qcow2Snapshot]) throws(DiskImageError) {
        var entries = table
        for k in entries.indices where entries[k].diskSize == nil { entries[k].diskSize = header.size }
        let bytes = Qcow2SnapshotTable.encode(entries)
        guard bytes.count <= Qcow2SnapshotTable.maximumBytes else { throw .unsupported("the snapshot table would exceed \(Qcow2SnapshotTable.maximumBytes) bytes") }
        var offset: UInt64 = 0
        if !bytes.isEmpty {
            offset = try allocateContiguous((UInt64(bytes.count) + clusterSize - 1) / clusterSize)
            try writeRefcountBlocks()
            try writeMetadata(bytes, at: offset)
            markMetadata(offset, bytes: UInt64(bytes.count))
            try sync()
        }
        var w = BigEndianWriter()
        w.u32(UInt32(entries.count)); w.u64(offset)
        try writeMetadata(w.bytes, at: 60)
        try sync()
        let oldOffset = header.snapshotsOffset, oldBytes = snapshotTableBytes
        header.snapshotCount = UInt32(entries.count)
        header.snapshotsOffset = offset
        snapshotList = entries
        snapshotTableBytes = UInt64(bytes.count)
        if oldOffset != 0 { try dropTable(at: oldOffset, bytes: oldBytes) }
    }

    /// Reads the snapshot table a header names (its length found by
    /// parsing): the entries and the bytes they take.
    static func readSnapshotTable(_ fd: FileDescriptor, _ h: Qcow2Header, fileSize: UInt64) throws(DiskImageError) -> ([Qcow2Snapshot], UInt64) {
        var want = Int(h.clusterSize)
        while true {
            let bytes: [UInt8]
            do {
                bytes = try fd.read(count: want, atOffset: Int64(h.snapshotsOffset))
            } catch {
                throw .io("cannot read the snapshot table: \(error)")
            }
            if let parsed = try Qcow2SnapshotTable.parse(bytes, count: Int(h.snapshotCount), version: h.version,
                                                         clusterSize: h.clusterSize, fileSize: fileSize) {
                return (parsed.snapshots, UInt64(parsed.length))
            }
            guard bytes.count == want, want < Qcow2SnapshotTable.maximumBytes else {
                throw .malformed("qcow2 snapshot table: runs past the end of the file")
            }
            want = min(want * 4, Qcow2SnapshotTable.maximumBytes)
        }
    }
}
