import DiskImage

/// A read-only ext2/3/4 reader for what booting needs: the superblock (UUID,
/// label), inodes, extent trees and block maps, directories and symlinks.
/// Every number comes from the guest's image and is checked before use;
/// paths resolve inside this file system only (an absolute symlink goes to
/// its root, never to the host's).
public final class Ext4 {
    let disk: any VirtualDisk
    let base: UInt64
    let length: UInt64
    public let blockSize: UInt64
    let inodesPerGroup: UInt32
    let inodeSize: UInt64
    let groupCount: UInt64
    let descriptorSize: UInt64
    let firstDataBlock: UInt64
    let blockCount: UInt64
    let incompat: UInt32
    /// The file system's UUID as GRUB and `blkid` print it.
    public let uuid: String
    /// The volume label.
    public let label: String

    /// Files larger than this are not read (a kernel or initramfs is far smaller).
    public static let maximumFileBytes: UInt64 = 512 << 20
    /// Directories larger than this are not listed.
    static let maximumDirectoryBytes: UInt64 = 16 << 20
    static let maximumSymlinks = 40
    static let maximumExtentDepth = 5

    static let magic: UInt16 = 0xEF53
    enum Incompat {
        static let fileType: UInt32 = 0x2, recover: UInt32 = 0x4, journalDevice: UInt32 = 0x8, metaBG: UInt32 = 0x10
        static let extents: UInt32 = 0x40, bit64: UInt32 = 0x80, mmp: UInt32 = 0x100, flexBG: UInt32 = 0x200
        static let eaInode: UInt32 = 0x400, dirData: UInt32 = 0x1000, csumSeed: UInt32 = 0x2000, largeDir: UInt32 = 0x4000
        static let inlineData: UInt32 = 0x8000, encrypt: UInt32 = 0x10000, casefold: UInt32 = 0x20000
        static let understood: UInt32 = fileType | recover | extents | bit64 | mmp | flexBG | eaInode | csumSeed | largeDir | metaBG
    }
    static let extentsFlag: UInt32 = 0x80000
    static let inlineDataFlag: UInt32 = 0x1000_0000

    /// Opens the file system at `[base, base + length)` of `disk`; nil if
    /// there is no ext superblock there (another file system).
    public static func open(_ disk: any VirtualDisk, base: UInt64, length: UInt64) throws(BootError) -> Ext4? {
        guard length >= 2048 else { return nil }
        let sb = try PartitionTable.readBytes(disk, base + 1024, 1024)
        guard le16(sb, 0x38) == magic else { return nil }
        return try Ext4(disk: disk, base: base, length: length, superblock: sb)
    }

    init(disk: any VirtualDisk, base: UInt64, length: UInt64, superblock sb: [UInt8]) throws(BootError) {
        self.disk = disk
        self.base = base
        self.length = length
        let logBlock = le32(sb, 0x18)
        guard logBlock <= 6 else { throw BootError("ext4: block size 2^\(10 + logBlock) is absurd") }
        blockSize = 1024 << UInt64(logBlock)
        incompat = le32(sb, 0x60)
        let unknown = incompat & ~Incompat.understood
        if unknown != 0 {
            let names: [UInt32: String] = [Incompat.inlineData: "inline_data", Incompat.encrypt: "encrypt",
                                           Incompat.casefold: "casefold", Incompat.journalDevice: "journal_dev", Incompat.dirData: "dirdata"]
            let bit = UInt32(1) << UInt32(unknown.trailingZeroBitCount)
            throw BootError("ext4: incompatible feature \(names[bit] ?? "0x\(String(bit, radix: 16))") is not supported by the boot loader")
        }
        inodesPerGroup = le32(sb, 0x28)
        let blocksPerGroup = UInt64(le32(sb, 0x20))
        let rev = le32(sb, 0x4C)
        inodeSize = rev >= 1 ? UInt64(le16(sb, 0x58)) : 128
        firstDataBlock = UInt64(le32(sb, 0x14))
        let is64 = incompat & Incompat.bit64 != 0
        blockCount = UInt64(le32(sb, 0x04)) | (is64 ? UInt64(le32(sb, 0x150)) << 32 : 0)
        descriptorSize = is64 ? UInt64(max(32, le16(sb, 0xFE))) : 32
        guard inodesPerGroup > 0, blocksPerGroup > 0, inodeSize >= 128, inodeSize <= blockSize, inodeSize & (inodeSize - 1) == 0,
              descriptorSize <= 1024, blockCount > firstDataBlock else {
            throw BootError("ext4: the superblock's geometry is inconsistent")
        }
        guard blockCount <= length / blockSize else { throw BootError("ext4: the file system is larger than its partition") }
        groupCount = (blockCount - firstDataBlock + blocksPerGroup - 1) / blocksPerGroup
        guard groupCount <= 1 << 24 else { throw BootError("ext4: \(groupCount) block groups is absurd") }
        if incompat & Incompat.metaBG != 0 { throw BootError("ext4: meta_bg is not supported by the boot loader") }
        let u = Array(sb[0x68..<0x78])
        func hex(_ r: Range<Int>) -> String { u[r].map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined() }
        uuid = [hex(0..<4), hex(4..<6), hex(6..<8), hex(8..<10), hex(10..<16)].joined(separator: "-")
        label = String(decoding: sb[0x78..<0x88].prefix { $0 != 0 }, as: UTF8.self)
    }

    // MARK: blocks and inodes

    func readBlocks(_ block: UInt64, count: UInt64 = 1) throws(BootError) -> [UInt8] {
        let (end, overflow) = block.addingReportingOverflow(count)
        guard !overflow, end <= blockCount else { throw BootError("ext4: block \(block) lies beyond the file system") }
        return try PartitionTable.readBytes(disk, base + block * blockSize, Int(count * blockSize))
    }

    public struct Inode: Sendable {
        public let number: UInt32
        public let mode: UInt16
        public let size: UInt64
        let flags: UInt32
        let block: [UInt8] // i_block, 60 bytes
        public var isDirectory: Bool { mode & 0xF000 == 0x4000 }
        public var isRegular: Bool { mode & 0xF000 == 0x8000 }
        public var isSymlink: Bool { mode & 0xF000 == 0xA000 }
    }

    public static let rootInode: UInt32 = 2

    public func inode(_ n: UInt32) throws(BootError) -> Inode {
        guard n >= 1, UInt64(n - 1) / UInt64(inodesPerGroup) < groupCount else { throw BootError("ext4: inode \(n) does not exist") }
        let group = UInt64(n - 1) / UInt64(inodesPerGroup), index = UInt64(n - 1) % UInt64(inodesPerGroup)
        // The group descriptor table follows the superblock's block.
        let descOffset = group * descriptorSize
        let descBlock = firstDataBlock + 1 + descOffset / blockSize
        let d = try readBlocks(descBlock)
        let o = Int(descOffset % blockSize)
        let table = UInt64(le32(d, o + 8)) | (descriptorSize >= 64 ? UInt64(le32(d, o + 0x28)) << 32 : 0)
        let byte = index * inodeSize
        let raw = try readBlocks(table + byte / blockSize)
        let i = Int(byte % blockSize)
        let mode = le16(raw, i)
        let size = UInt64(le32(raw, i + 4)) | UInt64(le32(raw, i + 0x6C)) << 32
        return Inode(number: n, mode: mode, size: size, flags: le32(raw, i + 0x20), block: Array(raw[(i + 0x28)..<(i + 0x28 + 60)]))
    }

    /// The physical block of each of the file's logical blocks `0..<count` (0: a hole).
    func blockMap(_ inode: Inode, count: UInt64) throws(BootError) -> [UInt64] {
        var map = [UInt64](repeating: 0, count: Int(count))
        if inode.flags & Self.inlineDataFlag != 0 { throw BootError("ext4: inline data is not supported by the boot loader") }
        if inode.flags & Self.extentsFlag != 0 {
            try walkExtents(inode.block, depth: 0, into: &map)
        } else {
            // Block maps: 12 direct, then single, double and triple indirect.
            let perBlock = blockSize / 4
            var logical: UInt64 = 0
            func indirect(_ block: UInt64, level: Int) throws(BootError) {
                guard logical < count else { return }
                if block == 0 { logical += pow(perBlock, level); return }
                let b = try readBlocks(block)
                for k in 0..<Int(perBlock) where logical < count {
                    let child = UInt64(le32(b, 4 * k))
                    if level == 1 {
                        map[Int(logical)] = child
                        logical += 1
                    } else {
                        try indirect(child, level: level - 1)
                    }
                }
            }
            for k in 0..<12 where logical < count {
                map[Int(logical)] = UInt64(le32(inode.block, 4 * k))
                logical += 1
            }
            for (k, level) in [(12, 1), (13, 2), (14, 3)] where logical < count {
                try indirect(UInt64(le32(inode.block, 4 * k)), level: level)
            }
        }
        return map
    }

    private func pow(_ b: UInt64, _ e: Int) -> UInt64 { (0..<e).reduce(1) { r, _ in r &* b } }

    private func walkExtents(_ node: [UInt8], depth: Int, into map: inout [UInt64]) throws(BootError) {
        guard depth <= Self.maximumExtentDepth else { throw BootError("ext4: extent tree deeper than \(Self.maximumExtentDepth)") }
        guard le16(node, 0) == 0xF30A else { throw BootError("ext4: bad extent header") }
        let entries = Int(le16(node, 2)), treeDepth = le16(node, 6)
        guard 12 + entries * 12 <= node.count else { throw BootError("ext4: extent node overflows its block") }
        for e in 0..<entries {
            let o = 12 + e * 12
            if treeDepth == 0 {
                let logical = UInt64(le32(node, o))
                var len = UInt64(le16(node, o + 4))
                let uninitialized = len > 32768
                if uninitialized { len -= 32768 }
                let start = UInt64(le16(node, o + 6)) << 32 | UInt64(le32(node, o + 8))
                guard !uninitialized else { continue } // reads as zeroes: a hole
                for k in 0..<len where logical + k < UInt64(map.count) {
                    guard start + k < blockCount else { throw BootError("ext4: extent points beyond the file system") }
                    map[Int(logical + k)] = start + k
                }
            } else {
                let child = UInt64(le16(node, o + 8)) << 32 | UInt64(le32(node, o + 4))
                try walkExtents(try readBlocks(child), depth: depth + 1, into: &map)
            }
        }
    }

    /// A file's bytes (regular file, directory or long symlink).
    public func contents(_ inode: Inode, limit: UInt64 = Ext4.maximumFileBytes) throws(BootError) -> [UInt8] {
        guard inode.size <= limit else { throw BootError("ext4: inode \(inode.number) is \(inode.size) bytes, over the \(limit)-byte limit") }
        let blocks = (inode.size + blockSize - 1) / blockSize
        let map = try blockMap(inode, count: blocks)
        // Boot files are not sparse: a size the blocks do not back is a damaged (or hostile) inode.
        let holes = map.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }
        guard holes <= 64 else { throw BootError("ext4: inode \(inode.number) claims \(inode.size) bytes but \(holes) of its blocks are holes") }
        var out: [UInt8] = []
        out.reserveCapacity(Int(inode.size))
        var k = 0
        while k < map.count {
            // Runs of consecutive blocks in one read.
            var run = 1
            while k + run < map.count, map[k] != 0, map[k + run] == map[k] + UInt64(run), run < 2048 { run += 1 }
            if map[k] == 0 {
                out += [UInt8](repeating: 0, count: Int(blockSize))
            } else {
                out += try readBlocks(map[k], count: UInt64(run))
            }
            k += run
        }
        out.removeLast(out.count - Int(inode.size))
        return out
    }

    // MARK: directories and paths

    /// The entries of a directory: name to inode number.
    public func list(_ dir: Inode) throws(BootError) -> [(name: String, inode: UInt32)] {
        guard dir.isDirectory else { throw BootError("ext4: inode \(dir.number) is not a directory") }
        let bytes = try contents(dir, limit: Self.maximumDirectoryBytes)
        var out: [(String, UInt32)] = []
        var o = 0
        while o + 8 <= bytes.count {
            let ino = le32(bytes, o), recLen = Int(le16(bytes, o + 4)), nameLen = Int(bytes[o + 6])
            guard recLen >= 8, o + recLen <= bytes.count else { break } // a damaged block: stop
            if ino != 0, 8 + nameLen <= recLen {
                out.append((String(decoding: bytes[(o + 8)..<(o + 8 + nameLen)], as: UTF8.self), ino))
            }
            o += recLen
        }
        return out
    }

    /// Resolves `path` inside this file system, following symlinks (at most
    /// 40; absolute ones from this file system's root). nil if absent.
    public func lookup(_ path: String) throws(BootError) -> Inode? {
        var budget = Self.maximumSymlinks
        return try resolve(path, chain: [try inode(Self.rootInode)], budget: &budget)?.last
    }

    /// The directories from the root down to what `path` names, resolved
    /// from `chain` (the directory a relative path starts in, with its
    /// ancestors). ".." never goes above this file system's root.
    private func resolve(_ path: String, chain start: [Inode], budget: inout Int) throws(BootError) -> [Inode]? {
        var chain = path.hasPrefix("/") ? [try inode(Self.rootInode)] : start
        for part in path.split(separator: "/").map(String.init) {
            if part == "." { continue }
            if part == ".." {
                if chain.count > 1 { chain.removeLast() }
                continue
            }
            guard let current = chain.last, current.isDirectory else { return nil }
            guard let entry = try list(current).first(where: { $0.name == part }) else { return nil }
            let next = try inode(entry.inode)
            if next.isSymlink {
                budget -= 1
                guard budget >= 0 else { throw BootError("ext4: too many levels of symbolic links at \(path)") }
                guard let resolved = try resolve(try symlinkTarget(next), chain: chain, budget: &budget) else { return nil }
                chain = resolved
            } else {
                chain.append(next)
            }
        }
        return chain
    }

    public func symlinkTarget(_ inode: Inode) throws(BootError) -> String {
        // Fast symlinks keep the target in i_block when it fits and no blocks are used.
        if inode.size < 60, inode.flags & Self.extentsFlag == 0 {
            return String(decoding: inode.block.prefix(Int(inode.size)), as: UTF8.self)
        }
        return String(decoding: try contents(inode, limit: 4096), as: UTF8.self)
    }

    /// A regular file's bytes by path; nil if there is no such file.
    public func read(_ path: String) throws(BootError) -> [UInt8]? {
        guard let i = try lookup(path) else { return nil }
        guard i.isRegular else { return nil }
        return try contents(i)
    }
}
