import ApusSys
import DiskImage
import Foundation
import Testing
import TestSupport

/// Internal snapshots, checked against QEMU's tools: what Apus takes,
/// `qemu-img snapshot -l` lists and `-a` applies, with `qemu-img check`
/// clean after every step; what qemu-img takes, Apus applies and deletes.
@Suite struct Qcow2SnapshotTests {
    static func bytes(_ image: Qcow2Image) throws -> [UInt8] { try image.read(offset: 0, count: Int(image.size)) }

    @Test(arguments: [(16 as UInt32, false), (9, false), (12, true)])
    func takeWriteApplyDelete(clusterBits: UInt32, durable: Bool) throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/a.qcow2"
        let size = 4 << 20
        try Qcow2Image.create(path: path, size: UInt64(size), clusterBits: clusterBits)
        var truth = [UInt8](repeating: 0, count: size)
        var atS1: [UInt8] = [], atS2: [UInt8] = []
        do {
            let image = try Qcow2Image(path: path, readOnly: false)
            image.durableAcrossRestarts = durable
            try Qcow2WriteTests.exercise(image, truth: &truth, seed: 1, operations: 300, clusterSize: 1 << clusterBits)
            atS1 = truth
            let s1 = try image.createSnapshot(name: "s1", dateSeconds: 1_700_000_000, dateNanoseconds: 5, vmClockNanoseconds: 42)
            #expect(s1.id == "1" && s1.diskSize == UInt64(size))
            #expect(throws: DiskImageError.self) { try image.createSnapshot(name: "s1", dateSeconds: 0) }
            try Qcow2WriteTests.exercise(image, truth: &truth, seed: 2, operations: 300, clusterSize: 1 << clusterBits)
            #expect(try Self.bytes(image) == truth)
            atS2 = truth
            try image.createSnapshot(name: "s2", dateSeconds: 1_700_000_100)
            try Qcow2WriteTests.exercise(image, truth: &truth, seed: 3, operations: 200, clusterSize: 1 << clusterBits)
            #expect(try Self.bytes(image) == truth)
        }
        try checkClean(path, allowLeaks: durable)
        let listed = try qemuImg(["snapshot", "-l", path])
        #expect(listed.contains(" s1 ") && listed.contains(" s2 "), "\(listed)")
        #expect(listed.contains("2023-11-14 22:13:20") || listed.contains("2023-11-14"), "\(listed)")
        do {
            let image = try Qcow2Image(path: path, readOnly: false)
            #expect(image.snapshots.map(\.name) == ["s1", "s2"])
            try image.applySnapshot("s1")
            #expect(try Self.bytes(image) == atS1)
            // Writes after going back do not reach either snapshot.
            try Qcow2WriteTests.exercise(image, truth: &truth, seed: 4, operations: 100, clusterSize: 1 << clusterBits)
            try image.applySnapshot("2")
            #expect(try Self.bytes(image) == atS2)
            try image.deleteSnapshot("s2")
            #expect(try Self.bytes(image) == atS2)
            try image.applySnapshot("s1")
            #expect(try Self.bytes(image) == atS1)
            #expect(throws: DiskImageError.self) { try image.applySnapshot("s2") }
        }
        try checkClean(path)
        // qemu-img applies what Apus took, and Apus reads the result.
        try qemuImg(["snapshot", "-a", "s1", path])
        try checkClean(path)
        #expect(try Self.bytes(try Qcow2Image(path: path, readOnly: true)) == atS1)
        try qemuImg(["snapshot", "-d", "s1", path])
        try checkClean(path)
        #expect(!(try qemuImg(["snapshot", "-l", path])).contains("s1"))
    }

    @Test func appliesAndDeletesWhatQemuImgTook() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/q.qcow2"
        try qemuImg(["create", "-q", "-f", "qcow2", path, "4M"])
        try qemuIO(path, ["write -P 0x11 0 1M", "write -c -P 0x22 2M 64k"])
        try qemuImg(["snapshot", "-c", "one", path])
        try qemuIO(path, ["write -P 0x33 512k 1M", "write -z 2M 64k"])
        try qemuImg(["snapshot", "-c", "two", path])
        try qemuIO(path, ["write -P 0x44 0 3M"])
        let image = try Qcow2Image(path: path, readOnly: false)
        #expect(image.snapshots.map(\.name) == ["one", "two"])
        #expect(image.snapshots.map(\.id) == ["1", "2"])
        try image.applySnapshot("one")
        var b = try Self.bytes(image)
        #expect(b[0] == 0x11 && b[(1 << 20) - 1] == 0x11 && b[1 << 20] == 0 && b[2 << 20] == 0x22 && b[(2 << 20) + 65535] == 0x22)
        try image.write([UInt8](repeating: 0x55, count: 4096), at: 0)
        try image.deleteSnapshot("one")
        try image.createSnapshot(name: "three", dateSeconds: 1)
        #expect(image.snapshots.map(\.id) == ["2", "3"])
        try image.applySnapshot("two")
        b = try Self.bytes(image)
        #expect(b[0] == 0x11 && b[512 << 10] == 0x33 && b[(3 << 19) - 1] == 0x33 && b[2 << 20] == 0)
        try image.flush()
        try checkClean(path)
        let listed = try qemuImg(["snapshot", "-l", path])
        #expect(listed.contains("two") && listed.contains("three") && !listed.contains("one"), "\(listed)")
    }

    @Test func snapshotTableRoundTripAndDamage() throws {
        var a = Qcow2Snapshot(id: "1", name: "first", l1TableOffset: 65536, l1Size: 1, dateSeconds: 7, dateNanoseconds: 8,
                              vmClockNanoseconds: 9, vmStateSize: 0, diskSize: 1 << 20)
        a.unknownExtra = [1, 2, 3, 4, 5, 6, 7, 8]
        let b = Qcow2Snapshot(id: "2", name: "zweite ünïcode", l1TableOffset: 131072, l1Size: 2, dateSeconds: 1, dateNanoseconds: 0,
                              vmClockNanoseconds: 0, vmStateSize: 0, diskSize: 2 << 20)
        let bytes = Qcow2SnapshotTable.encode([a, b])
        #expect(bytes.count % 8 == 0)
        func parse(_ x: [UInt8], count: Int = 2) throws -> [Qcow2Snapshot]? {
            try Qcow2SnapshotTable.parse(x, count: count, version: 3, clusterSize: 65536, fileSize: 1 << 20)?.snapshots
        }
        #expect(try parse(bytes) == [a, b])
        #expect(try Qcow2SnapshotTable.parse(bytes, count: 2, version: 3, clusterSize: 65536, fileSize: 1 << 20)?.length == bytes.count)
        // Short: the caller must read more.
        #expect(try parse(Array(bytes.prefix(bytes.count - 9))) == nil)
        #expect(try parse(Array(bytes.prefix(30))) == nil)
        var bad = bytes
        bad[7] = 1 // L1 table not cluster aligned
        #expect(throws: DiskImageError.self) { try parse(bad) }
        bad = bytes
        bad[1] = 0x10 // L1 table past the end of the file
        #expect(throws: DiskImageError.self) { try parse(bad) }
        bad = bytes
        bad[38] = 0x10 // 4 KiB of extra data
        #expect(throws: DiskImageError.self) { try parse(bad) }
        bad = bytes
        bad[39] = 8 // version 3 needs 16 bytes of extra data
        #expect(throws: DiskImageError.self) { try parse(bad) }
        #expect(throws: DiskImageError.self) { try parse(Qcow2SnapshotTable.encode([a, a])) } // the same ID twice
        #expect(throws: DiskImageError.self) { try parse(bytes, count: 70000) }
    }
}
