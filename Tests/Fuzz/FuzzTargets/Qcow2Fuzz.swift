import ApusSys
import DiskImage

/// qcow2 images from untrusted bytes: the header, its extensions, the L1,
/// L2 and refcount tables and compressed clusters. The input is the image
/// file (in a memfd); it is opened read-write, read at scattered offsets,
/// written, discarded, zeroed, grown and flushed, and its internal
/// snapshots (the table it brings, and one taken here) are applied and
/// deleted. The snapshot table also goes to its parser alone. Any error is fine; a
/// crash, a hang or unbounded memory is not. A backing file an input names
/// is opened read-only, as a real image's would be (most names do not exist).
public enum Qcow2Fuzz {
    public static func run(_ bytes: [UInt8]) {
        guard bytes.count >= 72 else { return }
        guard let path = InputFile.holding(bytes) else { return }
        if let header = try? Qcow2Header.parse(bytes, fileSize: UInt64(bytes.count)) {
            // Encoding what was parsed gives a header that parses the same.
            let again = header.encode()
            if again.count <= Int(header.clusterSize), let back = try? Qcow2Header.parse(again + [UInt8](repeating: 0, count: 512), fileSize: UInt64(bytes.count) + 512) {
                precondition(back.size == header.size && back.l1Size == header.l1Size && back.backingFile == header.backingFile,
                             "header round trip changed a field")
            }
        }
        _ = try? Qcow2SnapshotTable.parse(bytes, count: Int(bytes[0]) + 1, version: 3, clusterSize: 512, fileSize: UInt64(bytes.count))
        guard let image = try? Qcow2Image(path: path, readOnly: false, l2CacheBytes: 1 << 16) else { return }
        let size = image.size
        if let first = image.snapshots.first {
            try? image.applySnapshot(first.id)
            if image.snapshots.count > 1 { try? image.deleteSnapshot(first.id) }
        }
        try? image.createSnapshot(name: "fuzz", dateSeconds: 0)
        defer {
            try? image.applySnapshot("fuzz")
            try? image.deleteSnapshot("fuzz")
        }
        guard size > 0 else { return }
        var seed = UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
        for _ in 0..<8 {
            let offset = next() % size
            let length = min(size - offset, 1 + next() % (256 << 10))
            _ = try? image.read(offset: offset, count: Int(length))
            switch next() % 4 {
            case 0: try? image.write([UInt8](repeating: 0xA5, count: Int(min(length, 70_000))), at: offset)
            case 1: try? image.discard(offset: offset & ~511, length: length & ~511)
            case 2: try? image.writeZeroes(offset: offset & ~511, length: length & ~511, unmap: next() % 2 == 0)
            default: try? image.flush()
            }
        }
        try? image.resize(to: size + 65536)
        try? image.flush()
    }
}
