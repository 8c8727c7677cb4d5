/// One entry of a qcow2 image's snapshot table (docs/interop/qcow2.txt,
/// "Snapshots"): a name, the L1 table that maps the disk as it was, and
/// when it was taken. `qemu-img snapshot -l` lists these.
public struct Qcow2Snapshot: Equatable, Sendable {
    /// The unique ID string QEMU numbers ("1", "2", ...).
    public var id: String
    public var name: String
    public var l1TableOffset: UInt64
    public var l1Size: UInt32
    public var dateSeconds: UInt32
    public var dateNanoseconds: UInt32
    /// How long the guest had run, in nanoseconds.
    public var vmClockNanoseconds: UInt64
    /// Bytes of VM state stored in the image (Apus keeps a domain's memory
    /// state in a file of its own: 0 for the snapshots it takes).
    public var vmStateSize: UInt64
    /// The virtual disk's size when the snapshot was taken (nil: an old
    /// version 2 entry without it; the current size is assumed).
    public var diskSize: UInt64?
    /// The entry's extra data past the fields above, kept byte for byte.
    public var unknownExtra: [UInt8] = []

    public init(id: String, name: String, l1TableOffset: UInt64, l1Size: UInt32, dateSeconds: UInt32, dateNanoseconds: UInt32,
                vmClockNanoseconds: UInt64, vmStateSize: UInt64, diskSize: UInt64?) {
        self.id = id; self.name = name; self.l1TableOffset = l1TableOffset; self.l1Size = l1Size
        self.dateSeconds = dateSeconds; self.dateNanoseconds = dateNanoseconds
        self.vmClockNanoseconds = vmClockNanoseconds; self.vmStateSize = vmStateSize; self.diskSize = diskSize
    }
}

/// The snapshot table's encoding. Pure: bytes in, entries or a
/// ``DiskImageError`` out (the fuzz target's entry).
public enum Qcow2SnapshotTable {
    /// Bytes of an entry before its extra data.
    static let fixedLength = 40
    /// The extra data Apus writes: vm_state_size_large and disk_size.
    static let extraLength = 16
    /// QEMU's bounds (block/qcow2.h): QCOW_MAX_SNAPSHOTS, QCOW_MAX_SNAPSHOTS_SIZE,
    /// QCOW_MAX_SNAPSHOT_EXTRA_DATA.
    public static let maximumCount = 65536
    public static let maximumBytes = 64 << 20
    static let maximumExtra = 1024

    /// Parses `count` entries from the start of `bytes`, and the bytes they
    /// take (padding included). Returns nil when
    /// `bytes` ends before the table does (the caller reads more).
    /// Every L1 table named must be cluster aligned, within `maximumL1Bytes`,
    /// and inside a file of `fileSize` bytes.
    public static func parse(_ b: [UInt8], count: Int, version: UInt32, clusterSize: UInt64, fileSize: UInt64)
        throws(DiskImageError) -> (snapshots: [Qcow2Snapshot], length: Int)? {
        func bad(_ why: String) -> DiskImageError { .malformed("qcow2 snapshot table: \(why)") }
        guard count >= 0, count <= maximumCount else { throw bad("\(count) snapshots (at most \(maximumCount))") }
        let r = BigEndianReader(b)
        var out: [Qcow2Snapshot] = []
        var ids = Set<String>()
        var o = 0
        for k in 0..<count {
            guard o + fixedLength <= b.count else { return nil }
            let l1Offset = r.u64(o), l1Size = r.u32(o + 8)
            let idLength = Int(r.u32(o + 12) >> 16), nameLength = Int(r.u32(o + 12) & 0xFFFF)
            let extra = Int(r.u32(o + 36))
            guard extra <= maximumExtra else { throw bad("snapshot \(k) has \(extra) bytes of extra data") }
            if version >= 3 { guard extra >= extraLength else { throw bad("snapshot \(k) lacks the version 3 extra data") } }
            let end = o + fixedLength + extra + idLength + nameLength
            guard end + (8 - end % 8) % 8 <= maximumBytes else { throw bad("the table exceeds \(maximumBytes) bytes") }
            guard end <= b.count else { return nil }
            guard l1Offset % clusterSize == 0 else { throw bad("snapshot \(k)'s L1 table is not cluster aligned") }
            guard UInt64(l1Size) * 8 <= UInt64(Qcow2Spec.maximumL1Bytes) else { throw bad("snapshot \(k)'s L1 table of \(l1Size) entries is too large") }
            let (l1End, overflow) = l1Offset.addingReportingOverflow(UInt64(l1Size) * 8)
            guard l1Size == 0 || (l1Offset >= clusterSize && !overflow && l1End <= fileSize) else {
                throw bad("snapshot \(k)'s L1 table lies outside the file")
            }
            let e = o + fixedLength
            var s = Qcow2Snapshot(id: "", name: "", l1TableOffset: l1Offset, l1Size: l1Size, dateSeconds: r.u32(o + 16),
                                  dateNanoseconds: r.u32(o + 20), vmClockNanoseconds: r.u64(o + 24), vmStateSize: UInt64(r.u32(o + 32)),
                                  diskSize: nil)
            if extra >= 8 { s.vmStateSize = r.u64(e) }
            if extra >= 16 { s.diskSize = r.u64(e + 8) }
            if extra > extraLength { s.unknownExtra = Array(b[(e + extraLength)..<(e + extra)]) }
            s.id = String(decoding: b[(e + extra)..<(e + extra + idLength)], as: UTF8.self)
            s.name = String(decoding: b[(e + extra + idLength)..<end], as: UTF8.self)
            guard ids.insert(s.id).inserted else { throw bad("two snapshots have the ID '\(s.id)'") }
            out.append(s)
            o = end + (8 - end % 8) % 8
        }
        return (out, o)
    }

    /// The table's bytes (each entry padded to 8 bytes).
    public static func encode(_ snapshots: [Qcow2Snapshot]) -> [UInt8] {
        var w = BigEndianWriter()
        for s in snapshots {
            let id = Array(s.id.utf8.prefix(0xFFFF)), name = Array(s.name.utf8.prefix(0xFFFF))
            w.u64(s.l1TableOffset); w.u32(s.l1Size)
            w.u32(UInt32(id.count) << 16 | UInt32(name.count))
            w.u32(s.dateSeconds); w.u32(s.dateNanoseconds); w.u64(s.vmClockNanoseconds)
            w.u32(UInt32(truncatingIfNeeded: min(s.vmStateSize, UInt64(UInt32.max))))
            w.u32(UInt32(extraLength + s.unknownExtra.count))
            w.u64(s.vmStateSize); w.u64(s.diskSize ?? 0)
            w.bytes += s.unknownExtra + id + name
            while w.bytes.count % 8 != 0 { w.bytes.append(0) }
        }
        return w.bytes
    }
}
