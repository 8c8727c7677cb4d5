/// A qcow2 header and its extensions, parsed from the image's first cluster
/// and checked so that nothing after it can index outside its tables. Pure:
/// bytes in, a value or a ``DiskImageError`` out (the fuzz target's entry).
public struct Qcow2Header: Equatable, Sendable {
    public var version: UInt32
    public var backingFileOffset: UInt64
    public var backingFileSize: UInt32
    public var clusterBits: UInt32
    public var size: UInt64
    public var cryptMethod: UInt32
    public var l1Size: UInt32
    public var l1TableOffset: UInt64
    public var refcountTableOffset: UInt64
    public var refcountTableClusters: UInt32
    public var snapshotCount: UInt32
    public var snapshotsOffset: UInt64
    public var incompatibleFeatures: UInt64 = 0
    public var compatibleFeatures: UInt64 = 0
    public var autoclearFeatures: UInt64 = 0
    public var refcountOrder: UInt32 = 4
    public var headerLength: UInt32
    public var compressionType: UInt8 = 0
    /// The backing file's name, as stored (resolved by the opener).
    public var backingFile: String?
    /// The backing-format extension ("raw", "qcow2"); nil when absent.
    public var backingFormat: String?
    /// Names of feature bits from the feature name table, by (type, bit).
    public var featureNames: [FeatureKey: String] = [:]
    /// Extensions Apus does not interpret, kept byte for byte when the header is rewritten.
    public var otherExtensions: [(type: UInt32, data: [UInt8])] = []

    public struct FeatureKey: Hashable, Sendable {
        /// 0 incompatible, 1 compatible, 2 autoclear.
        public var type: UInt8
        public var bit: UInt8
    }

    public init(version: UInt32, backingFileOffset: UInt64, backingFileSize: UInt32, clusterBits: UInt32, size: UInt64,
                cryptMethod: UInt32, l1Size: UInt32, l1TableOffset: UInt64, refcountTableOffset: UInt64,
                refcountTableClusters: UInt32, snapshotCount: UInt32, snapshotsOffset: UInt64, headerLength: UInt32) {
        self.version = version; self.backingFileOffset = backingFileOffset; self.backingFileSize = backingFileSize
        self.clusterBits = clusterBits; self.size = size; self.cryptMethod = cryptMethod; self.l1Size = l1Size
        self.l1TableOffset = l1TableOffset; self.refcountTableOffset = refcountTableOffset
        self.refcountTableClusters = refcountTableClusters; self.snapshotCount = snapshotCount
        self.snapshotsOffset = snapshotsOffset; self.headerLength = headerLength
    }

    public var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    public var refcountBits: UInt64 { 1 << UInt64(refcountOrder) }
    /// Entries in one L2 table.
    public var l2Entries: UInt64 { clusterSize / 8 }
    /// Entries in one refcount block.
    public var refcountBlockEntries: UInt64 { clusterSize * 8 / refcountBits }

    public static func == (a: Qcow2Header, b: Qcow2Header) -> Bool {
        a.encode() == b.encode()
    }

    /// L1 entries needed to map `size` bytes with `clusterBits`.
    public static func l1Entries(size: UInt64, clusterBits: UInt32) -> UInt64 {
        let perL2 = UInt64(1) << UInt64(2 * clusterBits - 3)
        return (size + perL2 - 1) / perL2
    }

    /// Parses and checks a header. `fileSize` bounds the offsets of the
    /// tables it names (they must start inside the file).
    public static func parse(_ b: [UInt8], fileSize: UInt64) throws(DiskImageError) -> Qcow2Header {
        func bad(_ why: String) -> DiskImageError { .malformed("qcow2 header: \(why)") }
        guard b.count >= Qcow2Spec.version2HeaderLength else { throw bad("only \(b.count) bytes") }
        let r = BigEndianReader(b)
        guard r.u32(0) == Qcow2Spec.magic else { throw bad("bad magic") }
        let version = r.u32(4)
        guard version == 2 || version == 3 else { throw .unsupported("qcow2 version \(version) is not supported (Apus reads versions 2 and 3)") }
        var h = Qcow2Header(version: version, backingFileOffset: r.u64(8), backingFileSize: r.u32(16), clusterBits: r.u32(20),
                            size: r.u64(24), cryptMethod: r.u32(32), l1Size: r.u32(36), l1TableOffset: r.u64(40),
                            refcountTableOffset: r.u64(48), refcountTableClusters: r.u32(56), snapshotCount: r.u32(60),
                            snapshotsOffset: r.u64(64), headerLength: UInt32(Qcow2Spec.version2HeaderLength))
        if version == 3 {
            guard b.count >= Qcow2Spec.version3MinimumHeaderLength else { throw bad("version 3 header of \(b.count) bytes") }
            h.incompatibleFeatures = r.u64(72)
            h.compatibleFeatures = r.u64(80)
            h.autoclearFeatures = r.u64(88)
            h.refcountOrder = r.u32(96)
            h.headerLength = r.u32(100)
            guard h.headerLength >= UInt32(Qcow2Spec.version3MinimumHeaderLength), h.headerLength % 8 == 0,
                  Int(h.headerLength) <= b.count else { throw bad("header_length \(h.headerLength)") }
            if h.headerLength > 104 { h.compressionType = b[104] }
        }
        guard (Qcow2Spec.minimumClusterBits...Qcow2Spec.maximumClusterBits).contains(h.clusterBits) else {
            throw bad("cluster_bits \(h.clusterBits) (must be 9 to 21)")
        }
        guard h.refcountOrder <= 6 else { throw bad("refcount_order \(h.refcountOrder)") }
        guard h.size <= Qcow2Spec.maximumVirtualSize else { throw bad("virtual size \(h.size) is too large") }
        if h.cryptMethod != 0 {
            throw .unsupported("encrypted qcow2 images are not supported (crypt_method \(h.cryptMethod == 1 ? "AES" : h.cryptMethod == 2 ? "LUKS" : String(h.cryptMethod)))")
        }
        // Extensions: after the header, up to the end of the first cluster
        // (or the backing file name, which QEMU stores there too).
        try h.parseExtensions(b)
        // Feature bits, named from the image's own table where it has one.
        let unknown = h.incompatibleFeatures & ~Qcow2Spec.Incompatible.understood
        if unknown != 0 {
            let bit = unknown.trailingZeroBitCount
            let name = h.featureNames[FeatureKey(type: 0, bit: UInt8(bit))] ?? Qcow2Spec.Incompatible.names[bit]
            throw .unsupported("qcow2 incompatible feature bit \(bit)\(name.map { " (\($0))" } ?? "") is not supported")
        }
        if h.incompatibleFeatures & Qcow2Spec.Incompatible.compressionType != 0 || h.compressionType != 0 {
            guard h.compressionType == 0 else {
                throw .unsupported("qcow2 compression type \(h.compressionType == 1 ? "zstd" : String(h.compressionType)) is not supported (Apus reads zlib)")
            }
        }
        // Tables.
        let cluster = h.clusterSize
        guard h.l1TableOffset % cluster == 0, h.refcountTableOffset % cluster == 0 else { throw bad("table offsets not cluster aligned") }
        guard h.refcountTableOffset != 0, h.refcountTableClusters > 0 else { throw bad("no refcount table") }
        guard UInt64(h.refcountTableClusters) * cluster <= UInt64(Qcow2Spec.maximumRefcountTableBytes) else {
            throw bad("refcount table of \(h.refcountTableClusters) clusters is too large")
        }
        guard UInt64(h.l1Size) * 8 <= UInt64(Qcow2Spec.maximumL1Bytes) else { throw bad("L1 table of \(h.l1Size) entries is too large") }
        guard UInt64(h.l1Size) >= l1Entries(size: h.size, clusterBits: h.clusterBits) else {
            throw bad("L1 table of \(h.l1Size) entries cannot map \(h.size) bytes")
        }
        guard h.l1Size == 0 || h.l1TableOffset != 0 else { throw bad("L1 table at offset 0") }
        guard h.refcountTableOffset < fileSize, h.l1Size == 0 || h.l1TableOffset < fileSize else {
            throw bad("tables beyond the end of the file")
        }
        if h.backingFileOffset != 0 {
            guard h.backingFileSize > 0, h.backingFileSize <= UInt32(Qcow2Spec.maximumBackingNameLength) else {
                throw bad("backing file name of \(h.backingFileSize) bytes")
            }
            let (end, overflow) = h.backingFileOffset.addingReportingOverflow(UInt64(h.backingFileSize))
            guard !overflow, end <= UInt64(b.count), end <= cluster else { throw bad("backing file name outside the first cluster") }
            let nameBytes = b[Int(h.backingFileOffset)..<Int(end)]
            guard let name = String(validating: nameBytes, as: UTF8.self), !name.contains("\0") else {
                throw bad("backing file name is not UTF-8")
            }
            h.backingFile = name
        }
        return h
    }

    private mutating func parseExtensions(_ b: [UInt8]) throws(DiskImageError) {
        var offset = Int(headerLength)
        let limit = min(b.count, Int(clusterSize))
        let r = BigEndianReader(b)
        var seen = 0
        while offset + 8 <= limit {
            let type = r.u32(offset), length = Int(r.u32(offset + 4))
            if type == Qcow2Spec.Extension.end { return }
            seen += 1
            guard seen <= 1024 else { throw .malformed("qcow2 header: too many extensions") }
            let start = offset + 8
            guard length <= limit - start else { throw .malformed("qcow2 header: extension 0x\(String(type, radix: 16)) overruns the cluster") }
            let data = Array(b[start..<start + length])
            switch type {
            case Qcow2Spec.Extension.backingFormat:
                guard let f = String(validating: data, as: UTF8.self) else { throw .malformed("qcow2 header: backing format is not UTF-8") }
                backingFormat = f
            case Qcow2Spec.Extension.featureNameTable:
                for i in stride(from: 0, to: data.count - 47, by: 48) {
                    let nameBytes = data[(i + 2)..<(i + 48)].prefix { $0 != 0 }
                    featureNames[FeatureKey(type: data[i], bit: data[i + 1])] = String(decoding: nameBytes, as: UTF8.self)
                }
            case Qcow2Spec.Extension.externalDataFile:
                throw .unsupported("qcow2 images with an external data file are not supported")
            case Qcow2Spec.Extension.fullDiskEncryption:
                throw .unsupported("encrypted qcow2 images are not supported (full disk encryption header)")
            default:
                otherExtensions.append((type, data))
            }
            offset = start + ((length + 7) & ~7)
        }
        // A header whose extensions run to the cluster's end with no end marker.
        throw .malformed("qcow2 header: extensions have no end marker")
    }

    /// The header's bytes, extensions and backing file name included, as
    /// written at offset 0 (fits in the first cluster, checked by the caller).
    public func encode() -> [UInt8] {
        var w = BigEndianWriter()
        w.u32(Qcow2Spec.magic); w.u32(version)
        w.u64(0); w.u32(0) // backing name: patched below
        w.u32(clusterBits); w.u64(size); w.u32(cryptMethod); w.u32(l1Size); w.u64(l1TableOffset)
        w.u64(refcountTableOffset); w.u32(refcountTableClusters); w.u32(snapshotCount); w.u64(snapshotsOffset)
        if version >= 3 {
            w.u64(incompatibleFeatures); w.u64(compatibleFeatures); w.u64(autoclearFeatures)
            w.u32(refcountOrder); w.u32(headerLength)
            if headerLength > 104 { w.bytes.append(compressionType) }
            while w.bytes.count < Int(headerLength) { w.bytes.append(0) }
        }
        func ext(_ type: UInt32, _ data: [UInt8]) {
            w.u32(type); w.u32(UInt32(data.count)); w.bytes += data
            while w.bytes.count % 8 != 0 { w.bytes.append(0) }
        }
        if let backingFormat { ext(Qcow2Spec.Extension.backingFormat, Array(backingFormat.utf8)) }
        if !featureNames.isEmpty {
            var table: [UInt8] = []
            for (k, name) in featureNames.sorted(by: { ($0.key.type, $0.key.bit) < ($1.key.type, $1.key.bit) }) {
                table += [k.type, k.bit]
                let n = Array(name.utf8.prefix(46))
                table += n + [UInt8](repeating: 0, count: 46 - n.count)
            }
            ext(Qcow2Spec.Extension.featureNameTable, table)
        }
        for e in otherExtensions { ext(e.type, e.data) }
        w.u32(Qcow2Spec.Extension.end); w.u32(0)
        if let backingFile {
            let offset = UInt64(w.bytes.count)
            w.bytes += Array(backingFile.utf8)
            w.put64(offset, at: 8)
            w.put32(UInt32(backingFile.utf8.count), at: 16)
        }
        return w.bytes
    }

    /// The feature name table QEMU writes, so `qemu-img info` names the bits.
    public static let standardFeatureNames: [FeatureKey: String] = [
        FeatureKey(type: 0, bit: 0): "dirty bit", FeatureKey(type: 0, bit: 1): "corrupt bit",
        FeatureKey(type: 0, bit: 2): "external data file", FeatureKey(type: 0, bit: 3): "compression type",
        FeatureKey(type: 0, bit: 4): "extended L2 entries", FeatureKey(type: 1, bit: 0): "lazy refcounts",
        FeatureKey(type: 2, bit: 0): "bitmaps", FeatureKey(type: 2, bit: 1): "raw external data",
    ]
}

/// Big-endian field access into a byte array; reads past the end give zero
/// (callers check lengths first).
struct BigEndianReader {
    let b: [UInt8]
    init(_ b: [UInt8]) { self.b = b }
    func u32(_ o: Int) -> UInt32 {
        guard o >= 0, o + 4 <= b.count else { return 0 }
        return UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }
    func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) << 32 | UInt64(u32(o + 4)) }
}

struct BigEndianWriter {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { u32(UInt32(truncatingIfNeeded: v >> 32)); u32(UInt32(truncatingIfNeeded: v)) }
    mutating func put32(_ v: UInt32, at o: Int) { for i in 0..<4 { bytes[o + i] = UInt8(truncatingIfNeeded: v >> UInt32(24 - 8 * i)) } }
    mutating func put64(_ v: UInt64, at o: UInt64) {
        for i in 0..<8 { bytes[Int(o) + i] = UInt8(truncatingIfNeeded: v >> UInt64(56 - 8 * i)) }
    }
}

extension Array where Element == UInt8 {
    /// The big-endian UInt64 at `index * 8`.
    func be64(entry index: Int) -> UInt64 {
        let o = index * 8
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(self[o + i]) }
        return v
    }
    mutating func setBE64(entry index: Int, _ v: UInt64) {
        let o = index * 8
        for i in 0..<8 { self[o + i] = UInt8(truncatingIfNeeded: v >> UInt64(56 - 8 * i)) }
    }
}
