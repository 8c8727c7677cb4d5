import ApusSys
import DiskImage

/// Errors of the boot loader: all of them about the guest's image, never
/// fatal to the process reading it.
public struct BootError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A disk's partitions, from its MBR (with extended partitions) or GPT.
public struct Partition: Equatable, Sendable {
    /// GRUB's number: 1-based, logical MBR partitions from 5.
    public var number: Int
    /// Byte offset and length on the disk.
    public var offset: UInt64
    public var length: UInt64
    /// "msdos" or "gpt" (GRUB's `hd0,msdos1` / `hd0,gpt1`).
    public var scheme: String
}

public enum PartitionTable {
    static let sector: UInt64 = 512
    /// At most this many partitions are read (GPT entries, logical MBR partitions).
    static let maximumPartitions = 256

    /// The partitions of `disk`: GPT (behind a protective MBR), else MBR; a
    /// disk with neither is one whole-disk partition (number 0).
    public static func read(_ disk: any VirtualDisk) throws(BootError) -> [Partition] {
        let size = disk.size
        guard size >= 2 * sector else { throw BootError("the disk is \(size) bytes: too small for a partition table or file system") }
        let mbr = try readBytes(disk, 0, Int(sector))
        guard mbr[510] == 0x55, mbr[511] == 0xAA else {
            return [Partition(number: 0, offset: 0, length: size, scheme: "none")]
        }
        let entries = (0..<4).map { i -> (type: UInt8, start: UInt64, count: UInt64) in
            let o = 446 + 16 * i
            return (mbr[o + 4], UInt64(le32(mbr, o + 8)), UInt64(le32(mbr, o + 12)))
        }
        if entries.contains(where: { $0.type == 0xEE }) {
            if let gpt = try readGPT(disk, lba: 1) { return gpt }
            // The primary header is damaged: the backup sits in the last sector.
            if let gpt = try readGPT(disk, lba: size / sector - 1) { return gpt }
            throw BootError("the GPT headers (primary and backup) are invalid")
        }
        // A FAT or ext boot sector also ends in 55 AA; a partition table has
        // sane entries. No entries at all: a whole-disk file system.
        var out: [Partition] = []
        for (i, e) in entries.enumerated() where e.type != 0 && e.count > 0 {
            let (offset, length) = try bounds(e.start, e.count, base: 0, size: size, what: "MBR partition \(i + 1)")
            if [0x05, 0x0F, 0x85].contains(e.type) {
                out += try readLogical(disk, extendedStart: e.start, extendedCount: e.count, size: size)
            } else {
                out.append(Partition(number: i + 1, offset: offset, length: length, scheme: "msdos"))
            }
        }
        return out.isEmpty ? [Partition(number: 0, offset: 0, length: size, scheme: "none")] : out
    }

    /// The logical partitions of an extended one (a chain of EBRs, each
    /// relative to the extended partition's start; loops are cut off).
    static func readLogical(_ disk: any VirtualDisk, extendedStart: UInt64, extendedCount: UInt64, size: UInt64) throws(BootError) -> [Partition] {
        var out: [Partition] = []
        var next: UInt64 = 0
        var seen: Set<UInt64> = []
        while out.count < maximumPartitions {
            guard seen.insert(next).inserted, next < extendedCount else { break }
            let ebrLBA = extendedStart + next
            guard ebrLBA < size / sector else { throw BootError("an extended boot record lies beyond the disk") }
            let ebr = try readBytes(disk, ebrLBA * sector, Int(sector))
            guard ebr[510] == 0x55, ebr[511] == 0xAA else { break }
            let start = UInt64(le32(ebr, 446 + 8)), count = UInt64(le32(ebr, 446 + 12))
            if ebr[446 + 4] != 0, count > 0 {
                let (offset, length) = try bounds(start, count, base: ebrLBA, size: size, what: "logical partition \(5 + out.count)")
                out.append(Partition(number: 5 + out.count, offset: offset, length: length, scheme: "msdos"))
            }
            let link = UInt64(le32(ebr, 446 + 16 + 8))
            guard ebr[446 + 16 + 4] != 0, link > 0 else { break }
            next = link
        }
        return out
    }

    /// A GPT at `lba`, or nil when its signature or checksums are wrong.
    static func readGPT(_ disk: any VirtualDisk, lba: UInt64) throws(BootError) -> [Partition]? {
        let size = disk.size
        let h = try readBytes(disk, lba * sector, Int(sector))
        guard Array(h[0..<8]) == Array("EFI PART".utf8) else { return nil }
        let headerSize = Int(le32(h, 12))
        guard (92...Int(sector)).contains(headerSize) else { return nil }
        var copy = Array(h[0..<headerSize])
        for i in 16..<20 { copy[i] = 0 }
        guard CRC32.checksum(copy) == le32(h, 16) else { return nil }
        let entriesLBA = le64(h, 72), count = Int(le32(h, 80)), entrySize = Int(le32(h, 84))
        guard count <= 1024, entrySize >= 128, entrySize <= 4096, entrySize % 8 == 0 else { return nil }
        let bytes = count * entrySize
        guard entriesLBA < size / sector, entriesLBA * sector + UInt64(bytes) <= size else { return nil }
        let table = try readBytes(disk, entriesLBA * sector, bytes)
        guard CRC32.checksum(table) == le32(h, 88) else { return nil }
        var out: [Partition] = []
        for i in 0..<count where out.count < maximumPartitions {
            let o = i * entrySize
            guard table[o..<(o + 16)].contains(where: { $0 != 0 }) else { continue } // unused entry
            let first = le64(table, o + 32), last = le64(table, o + 40)
            guard last >= first else { throw BootError("GPT partition \(i + 1) ends before it starts") }
            let (offset, length) = try bounds(first, last - first + 1, base: 0, size: size, what: "GPT partition \(i + 1)")
            out.append(Partition(number: i + 1, offset: offset, length: length, scheme: "gpt"))
        }
        return out
    }

    static func bounds(_ start: UInt64, _ count: UInt64, base: UInt64, size: UInt64, what: String) throws(BootError) -> (UInt64, UInt64) {
        let (s, o1) = (base + start).multipliedReportingOverflow(by: sector)
        let (n, o2) = count.multipliedReportingOverflow(by: sector)
        let (end, o3) = s.addingReportingOverflow(n)
        guard !o1, !o2, !o3, end <= size else { throw BootError("\(what) lies beyond the end of the disk") }
        return (s, n)
    }

    static func readBytes(_ disk: any VirtualDisk, _ offset: UInt64, _ count: Int) throws(BootError) -> [UInt8] {
        do {
            return try disk.read(offset: offset, count: count)
        } catch {
            throw BootError("cannot read the disk at \(offset): \(error)")
        }
    }
}

func le16(_ b: [UInt8], _ o: Int) -> UInt16 { o + 2 <= b.count ? UInt16(b[o]) | UInt16(b[o + 1]) << 8 : 0 }
func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
    o + 4 <= b.count ? UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 : 0
}
func le64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(le32(b, o)) | UInt64(le32(b, o + 4)) << 32 }
