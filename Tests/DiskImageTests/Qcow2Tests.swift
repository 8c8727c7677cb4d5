import ApusSys
import DiskImage
import Foundation
import Testing
import TestSupport

/// qcow2 over real files, checked against QEMU's own tools: images qemu-img
/// wrote are read byte for byte as `qemu-img convert -O raw` reads them, and
/// images Apus wrote pass `qemu-img check` and `qemu-img compare` against
/// the raw truth kept alongside.
@Suite struct Qcow2ReadTests {
    /// 4 MiB of random data with holes (runs of zeroes qemu-img leaves unallocated).
    static func pattern(seed: UInt64, size: Int = 4 << 20) -> [UInt8] {
        var rng = TestRandom(seed: seed)
        var out = [UInt8](repeating: 0, count: size)
        var o = 0
        while o < size {
            let run = min(size - o, 512 * Int(1 + rng.next() % 300))
            if rng.next() % 3 != 0 {
                for k in stride(from: o, to: o + run, by: 8) {
                    var v = rng.next()
                    for j in 0..<min(8, o + run - k) { out[k + j] = UInt8(truncatingIfNeeded: v); v >>= 8 }
                }
            }
            o += run
        }
        return out
    }

    @Test(arguments: [
        ["-o", "compat=0.10"],
        ["-o", "compat=1.1"],
        ["-o", "compat=1.1,cluster_size=512"],
        ["-o", "compat=1.1,cluster_size=2M"],
        ["-o", "compat=1.1,refcount_bits=1"],
        ["-o", "compat=1.1,refcount_bits=64,cluster_size=4096"],
        ["-c", "-o", "compat=1.1"],
        ["-c", "-o", "compat=0.10,cluster_size=4096"],
        ["-o", "compat=1.1,preallocation=metadata"],
    ])
    func readsWhatQemuImgWrote(options: [String]) throws {
        let dir = try TemporaryDirectory()
        let truth = Self.pattern(seed: UInt64(options.joined().utf8.count))
        try writeFile(dir.path + "/src.raw", truth)
        try qemuImg(["convert", "-f", "raw", "-O", "qcow2"] + options + [dir.path + "/src.raw", dir.path + "/img.qcow2"])
        let image = try Qcow2Image(path: dir.path + "/img.qcow2", readOnly: true)
        #expect(image.size == UInt64(truth.count))
        #expect(try image.read(offset: 0, count: truth.count) == truth)
        // Unaligned pieces too.
        #expect(try image.read(offset: 1_000_000, count: 300_000) == Array(truth[1_000_000..<1_300_000]))
    }

    @Test func backingChainsOfQcow2AndRawWithRelativeNames() throws {
        let dir = try TemporaryDirectory()
        try writeFile(dir.path + "/base.raw", Self.pattern(seed: 5, size: 3 << 20)) // smaller than the overlays
        // Relative names, resolved against each overlay's directory (as QEMU does).
        try qemuImg(["create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", dir.path + "/mid.qcow2", "4M"], directory: dir.path)
        try qemuIO(dir.path + "/mid.qcow2", ["write -P 0xab 1M 64k", "write -P 0xcd 100k 3k", "write -z 2M 128k"])
        try qemuImg(["create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "-o", "cluster_size=4096", dir.path + "/top.qcow2", "5M"], directory: dir.path)
        try qemuIO(dir.path + "/top.qcow2", ["write -P 0x11 1040k 8k", "write -P 0x22 4M 4k"])
        try qemuImg(["convert", "-O", "raw", dir.path + "/top.qcow2", dir.path + "/truth.raw"])
        let truth = try readFile(dir.path + "/truth.raw")
        // Opened from another working directory: names resolve against the image's directory.
        let image = try Qcow2Image(path: dir.path + "/top.qcow2", readOnly: true)
        #expect(image.backing?.format == .qcow2)
        #expect((image.backing as? Qcow2Image)?.backing?.format == .raw)
        #expect(try image.read(offset: 0, count: truth.count) == truth)
    }

    @Test func refusesWhatItCannotReadByName() throws {
        let dir = try TemporaryDirectory()
        let p = dir.path + "/i.qcow2"
        try qemuImg(["create", "-f", "qcow2", p, "1M"])
        // An incompatible feature bit Apus does not know, named from the image's feature table.
        var bytes = try readFile(p)
        bytes[79] |= 1 << 4
        try writeFile(dir.path + "/ext-l2.qcow2", bytes)
        #expect(throws: DiskImageError.unsupported("qcow2 incompatible feature bit 4 (extended L2 entries) is not supported")) {
            try Qcow2Image(path: dir.path + "/ext-l2.qcow2", readOnly: true)
        }
        bytes = try readFile(p)
        bytes[72] |= 1 << 7 // bit 63: unknown to everyone
        try writeFile(dir.path + "/bit63.qcow2", bytes)
        #expect(throws: DiskImageError.unsupported("qcow2 incompatible feature bit 63 is not supported")) {
            try Qcow2Image(path: dir.path + "/bit63.qcow2", readOnly: true)
        }
        // Dirty (lazy refcounts left inconsistent): read-only yes, read-write no.
        bytes = try readFile(p)
        bytes[79] |= 1
        try writeFile(dir.path + "/dirty.qcow2", bytes)
        _ = try Qcow2Image(path: dir.path + "/dirty.qcow2", readOnly: true)
        #expect(throws: DiskImageError.self) { try Qcow2Image(path: dir.path + "/dirty.qcow2", readOnly: false) }
        // Encrypted.
        // qemu-img times its LUKS key derivation with the CPU clock and
        // gives up ("Unable to get accurate CPU usage") now and then on a
        // loaded two-core host: a few tries.
        var made = false
        for _ in 0..<5 where !made {
            made = (try? qemuImg(["create", "-f", "qcow2", "--object", "secret,id=s0,data=secret", "-o",
                                  "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=50", dir.path + "/luks.qcow2", "1M"])) != nil
        }
        #expect(made, "qemu-img could not make a LUKS-encrypted qcow2 image")
        #expect(throws: DiskImageError.self) { try Qcow2Image(path: dir.path + "/luks.qcow2", readOnly: true) }
        do {
            _ = try Qcow2Image(path: dir.path + "/luks.qcow2", readOnly: true)
        } catch {
            #expect("\(error)".contains("encrypted"))
        }
        // zstd compression.
        if (try? qemuImg(["create", "-f", "qcow2", "-o", "compression_type=zstd", dir.path + "/zstd.qcow2", "1M"])) != nil {
            #expect(throws: DiskImageError.unsupported("qcow2 compression type zstd is not supported (Apus reads zlib)")) {
                try Qcow2Image(path: dir.path + "/zstd.qcow2", readOnly: true)
            }
        }
        // A format name nobody declared.
        #expect(throws: DiskImageError.self) { try DiskFormat(name: "vmdk") }
        // A backing chain deeper than the limit.
        try qemuImg(["create", "-f", "qcow2", dir.path + "/c0.qcow2", "1M"])
        for i in 1...(Qcow2Spec.maximumBackingDepth + 1) {
            try qemuImg(["create", "-f", "qcow2", "-b", "c\(i - 1).qcow2", "-F", "qcow2", dir.path + "/c\(i).qcow2"], directory: dir.path)
        }
        #expect(throws: DiskImageError.self) { try Qcow2Image(path: dir.path + "/c\(Qcow2Spec.maximumBackingDepth + 1).qcow2", readOnly: true) }
        _ = try Qcow2Image(path: dir.path + "/c\(Qcow2Spec.maximumBackingDepth).qcow2", readOnly: true)
    }

    @Test func headerRoundTripsAndRejectsNonsense() throws {
        var h = Qcow2Header(version: 3, backingFileOffset: 0, backingFileSize: 0, clusterBits: 16, size: 1 << 30, cryptMethod: 0,
                            l1Size: 2, l1TableOffset: 3 << 16, refcountTableOffset: 1 << 16, refcountTableClusters: 1,
                            snapshotCount: 0, snapshotsOffset: 0, headerLength: 112)
        h.backingFile = "base.raw"
        h.backingFormat = "raw"
        h.featureNames = Qcow2Header.standardFeatureNames
        let bytes = h.encode() + [UInt8](repeating: 0, count: 4096)
        let parsed = try Qcow2Header.parse(bytes, fileSize: 1 << 20)
        #expect(parsed == h)
        #expect(parsed.backingFile == "base.raw" && parsed.backingFormat == "raw")
        func refuses(_ patch: (inout [UInt8]) -> Void) -> Bool {
            var b = bytes
            patch(&b)
            return (try? Qcow2Header.parse(b, fileSize: 1 << 20)) == nil
        }
        #expect(refuses { $0[0] = 0 })                                      // magic
        #expect(refuses { $0[7] = 4 })                                      // version 4
        #expect(refuses { $0[23] = 30 })                                    // cluster_bits
        #expect(refuses { $0[36] = 0x10 })                                  // L1 over 32 MiB
        #expect(refuses { $0[39] = 0 })                                     // L1 too small for the size
        #expect(refuses { $0[35] = 2 })                                     // crypt_method LUKS
        #expect(refuses { $0[99] = 7 })                                     // refcount_order 7
        #expect(refuses { $0[103] = 101 })                                  // header_length not a multiple of 8
        #expect(refuses { $0[17] = 0xFF; $0[18] = 0xFF })                   // backing name runs off the cluster
        #expect(refuses { $0[63] = 1; $0[49] = 0xFF })                      // refcount table beyond the file
        #expect(refuses { b in for i in 112..<4096 { b[i] = 0xEE } })       // extensions with no end
        #expect((try? Qcow2Header.parse(Array(bytes[0..<50]), fileSize: 50)) == nil)
    }
}

@Suite struct Qcow2WriteTests {
    /// Random writes, write-zeroes and discards, mirrored into a raw truth.
    static func exercise(_ image: Qcow2Image, truth: inout [UInt8], seed: UInt64, operations: Int, clusterSize: Int,
                         discards: Bool = true) throws {
        var rng = TestRandom(seed: seed)
        let size = truth.count
        for op in 0..<operations {
            let sectors = size / 512
            let start = Int(rng.next() % UInt64(sectors))
            let maxLength = min(sectors - start, 3 * clusterSize / 512 + 2)
            let length = 512 * Int(1 + rng.next() % UInt64(maxLength))
            let offset = start * 512
            switch rng.next() % 10 {
            case 0 where discards:
                try image.writeZeroes(offset: UInt64(offset), length: UInt64(length), unmap: rng.next() % 2 == 0)
                for i in offset..<(offset + length) { truth[i] = 0 }
            case 1 where discards:
                // Discard reads back zeroes for whole clusters on version 3; parts are left alone.
                try image.discard(offset: UInt64(offset), length: UInt64(length))
                let first = (offset + clusterSize - 1) / clusterSize * clusterSize, last = (offset + length) / clusterSize * clusterSize
                if first < last { for i in first..<last { truth[i] = 0 } }
            default:
                let byte = UInt8(truncatingIfNeeded: rng.next() | 1)
                let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 / 512) ^ byte }
                try image.write(data, at: UInt64(offset))
                truth.replaceSubrange(offset..<(offset + length), with: data)
            }
            if op % 37 == 0 { try image.flush() }
        }
        try image.flush()
    }

    @Test(arguments: [(16 as UInt32, 4 << 20), (9, 40 << 20), (12, 8 << 20)])
    func imagesApusWritesPassQemuImgCheckAndCompare(clusterBits: UInt32, size: Int) throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/a.qcow2"
        try Qcow2Image.create(path: path, size: UInt64(size), clusterBits: clusterBits)
        var truth = [UInt8](repeating: 0, count: size)
        do {
            // A small L2 cache: dirty tables are written back on eviction too.
            let image = try Qcow2Image(path: path, readOnly: false, l2CacheBytes: 4 << clusterBits)
            if clusterBits == 9 {
                // 12 MiB of data: the file outgrows what one refcount table cluster covers.
                for k in 0..<192 {
                    let chunk = [UInt8](repeating: UInt8(k | 1), count: 65536)
                    try image.write(chunk, at: UInt64(k) * 65536)
                    truth.replaceSubrange((k * 65536)..<((k + 1) * 65536), with: chunk)
                }
            }
            try Self.exercise(image, truth: &truth, seed: UInt64(clusterBits), operations: 600, clusterSize: 1 << Int(clusterBits))
            #expect(try image.read(offset: 0, count: size) == truth)
        }
        try writeFile(dir.path + "/truth.raw", truth)
        try checkClean(path)
        try qemuImg(["compare", "-f", "raw", "-F", "qcow2", dir.path + "/truth.raw", path])
        // 512-byte clusters over 40 MiB outgrow one refcount table cluster (8 MiB of coverage).
        if clusterBits == 9 {
            #expect(try Qcow2Image(path: path, readOnly: true).currentHeader.refcountTableClusters > 1)
        }
        // And read back by Apus after a reopen.
        #expect(try Qcow2Image(path: path, readOnly: true).read(offset: 0, count: size) == truth)
    }

    /// A small write into a cluster that was all zeroes writes only its
    /// bytes: the new cluster is a hole around them, the file reaches the
    /// cluster's end, the rest reads as zeroes (after a reopen too), and
    /// QEMU's tools agree. Durable (as apus-blkback opens it) and not.
    @Test(arguments: [false, true])
    func smallWritesIntoZeroClustersWriteOnlyTheirBytes(durable: Bool) throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/s.qcow2"
        let size = 8 << 20
        try Qcow2Image.create(path: path, size: UInt64(size))
        var truth = [UInt8](repeating: 0, count: size)
        let before = try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64 ?? 0
        do {
            let image = try Qcow2Image(path: path, readOnly: false)
            image.durableAcrossRestarts = durable
            // At the start of a cluster (the file must be made to reach its
            // end), in the middle, at the end, and a second write into the
            // first cluster (in place now).
            for (offset, fill) in [(0, 1), (65536 * 3 + 8192, 2), (65536 * 6 - 4096, 3), (4096, 4)] as [(Int, UInt8)] {
                let bytes = [UInt8](repeating: fill, count: 4096)
                try image.write(bytes, at: UInt64(offset))
                truth.replaceSubrange(offset..<(offset + 4096), with: bytes)
            }
            #expect(try image.read(offset: 0, count: size) == truth)
            try image.flush()
        }
        let st = try runProcess("/usr/bin/stat", ["-c", "%s %b %B", path]).output.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(st.count == 3)
        if st.count == 3 {
            // The file covers whole clusters; far fewer bytes are allocated
            // than three 64 KiB data clusters' worth on top of the metadata.
            #expect(st[0] % 65536 == 0 && st[0] > before, "\(st)")
            #expect(st[1] * st[2] < before + 3 * 65536, "\(st)")
        }
        #expect(try Qcow2Image(path: path, readOnly: true).read(offset: 0, count: size) == truth)
        try writeFile(dir.path + "/truth.raw", truth)
        try checkClean(path)
        try qemuImg(["compare", "-f", "raw", "-F", "qcow2", dir.path + "/truth.raw", path])
    }

    @Test func writesOverBackingFilesCompressedClustersAndSnapshots() throws {
        let dir = try TemporaryDirectory()
        let base = Qcow2ReadTests.pattern(seed: 9)
        try writeFile(dir.path + "/base.raw", base)
        // Compressed, with an internal snapshot sharing every cluster.
        try qemuImg(["convert", "-c", "-O", "qcow2", dir.path + "/base.raw", dir.path + "/c.qcow2"])
        try qemuImg(["snapshot", "-c", "before", dir.path + "/c.qcow2"])
        // An overlay on a raw backing file, and one on the compressed image.
        try qemuImg(["create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", dir.path + "/o.qcow2", "4M"], directory: dir.path)
        for name in ["c.qcow2", "o.qcow2"] {
            let path = dir.path + "/" + name
            var truth = base
            do {
                let image = try Qcow2Image(path: path, readOnly: false)
                try Self.exercise(image, truth: &truth, seed: 3, operations: 300, clusterSize: 65536)
            }
            try writeFile(dir.path + "/truth.raw", truth)
            try checkClean(path)
            try qemuImg(["compare", "-f", "raw", "-F", "qcow2", dir.path + "/truth.raw", path])
        }
        // The snapshot still holds the original data.
        try qemuImg(["convert", "-l", "snapshot.name=before", "-O", "raw", dir.path + "/c.qcow2", dir.path + "/snap.raw"])
        #expect(try readFile(dir.path + "/snap.raw") == base)
        // The raw backing file is untouched.
        #expect(try readFile(dir.path + "/base.raw") == base)
    }

    @Test func growingKeepsDataAndExtendsTheL1Table() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/g.qcow2"
        try Qcow2Image.create(path: path, size: 1 << 20, clusterBits: 9)
        var truth = [UInt8](repeating: 0, count: 1 << 20)
        do {
            let image = try Qcow2Image(path: path, readOnly: false)
            try Self.exercise(image, truth: &truth, seed: 1, operations: 100, clusterSize: 512)
            #expect(throws: DiskImageError.self) { try image.resize(to: 1 << 19) }
            try image.resize(to: 64 << 20)
            truth += [UInt8](repeating: 0, count: (64 << 20) - (1 << 20))
            try Self.exercise(image, truth: &truth, seed: 2, operations: 200, clusterSize: 512)
            #expect(image.size == 64 << 20)
        }
        try writeFile(dir.path + "/truth.raw", truth)
        try checkClean(path)
        try qemuImg(["compare", "-f", "raw", "-F", "qcow2", dir.path + "/truth.raw", path])
        let info = try qemuImg(["info", "--output=json", path])
        #expect(info.contains("\"virtual-size\": \(64 << 20)"))
    }

    @Test func metadataPreallocationMapsEveryClusterAsZeroes() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/p.qcow2"
        try ImageFiles.create(path, format: .qcow2, size: 4 << 20, preallocation: .metadata, clusterSize: 4096)
        var truth = [UInt8](repeating: 0, count: 4 << 20)
        do {
            let image = try Qcow2Image(path: path, readOnly: false)
            #expect(try image.read(offset: 0, count: truth.count) == truth)
            #expect(try FileDescriptor.open(path, .readOnly).size() >= 4 << 20, "the file covers every cluster")
            // A write fills a preallocated cluster in place: the file does not grow.
            let before = try FileDescriptor.open(path, .readOnly).size()
            try image.write([UInt8](repeating: 7, count: 4096), at: 8192)
            try image.flush()
            truth.replaceSubrange(8192..<12288, with: [UInt8](repeating: 7, count: 4096))
            #expect(try FileDescriptor.open(path, .readOnly).size() == before)
            try Self.exercise(image, truth: &truth, seed: 9, operations: 150, clusterSize: 4096)
        }
        let map = try qemuImg(["map", "--output=json", path])
        #expect(map.contains("\"offset\""), "clusters have host offsets: \(map.prefix(400))")
        try writeFile(dir.path + "/truth.raw", truth)
        try checkClean(path)
        try qemuImg(["compare", "-f", "raw", "-F", "qcow2", dir.path + "/truth.raw", path])
        #expect(throws: DiskImageError.self) {
            try ImageFiles.create(dir.path + "/o.qcow2", format: .qcow2, size: 4 << 20, preallocation: .metadata, backingFile: path, backingFormat: .qcow2)
        }
    }

    @Test func createdImagesWithBackingFilesAreWhatQemuImgExpects() throws {
        let dir = try TemporaryDirectory()
        let base = Qcow2ReadTests.pattern(seed: 4, size: 2 << 20)
        try writeFile(dir.path + "/base.raw", base)
        try Qcow2Image.create(path: dir.path + "/top.qcow2", size: 2 << 20, backingFile: "base.raw", backingFormat: .raw)
        let info = try qemuImg(["info", "--output=json", dir.path + "/top.qcow2"])
        #expect(info.contains("\"backing-filename-format\": \"raw\""))
        #expect(try Qcow2Image(path: dir.path + "/top.qcow2", readOnly: true).read(offset: 0, count: base.count) == base)
        try checkClean(dir.path + "/top.qcow2")
        // A guest's data in a raw disk is never read as a qcow2 header: the format is declared.
        let raw = try RawDisk(path: dir.path + "/top.qcow2", readOnly: true)
        let fileSize = try FileDescriptor.open(dir.path + "/top.qcow2", .readOnly).size()
        #expect(raw.format == .raw && raw.size == UInt64(fileSize))
    }
}

// MARK: helpers

struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
}

@discardableResult
func qemuImg(_ args: [String], directory: String? = nil) throws -> String {
    let r = try runProcess("/usr/bin/qemu-img", args, directory: directory)
    guard r.status == 0 else { throw TestError("qemu-img \(args.joined(separator: " ")): status \(r.status): \(r.output)") }
    return r.output
}

func qemuIO(_ path: String, _ commands: [String]) throws {
    let r = try runProcess("/usr/bin/qemu-io", commands.flatMap { ["-c", $0] } + [path])
    guard r.status == 0, !r.output.contains("error") else { throw TestError("qemu-io: \(r.output)") }
}

/// `qemu-img check` finds no corruption (leaks are allowed: they lose nothing).
func checkClean(_ path: String, allowLeaks: Bool = false) throws {
    let r = try runProcess("/usr/bin/qemu-img", ["check", path])
    // Exit 0: clean; 3: leaked clusters only; 2: corruption; 1: cannot check.
    guard r.status == 0 || (allowLeaks && r.status == 3) else { throw TestError("qemu-img check \(path): status \(r.status):\n\(r.output)") }
}
