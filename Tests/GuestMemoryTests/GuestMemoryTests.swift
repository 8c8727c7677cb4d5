import Testing
import ApusSys
@testable import GuestMemory

@Suite struct GuestAddressTests {
    @Test func checkedAddDetectsOverflow() {
        #expect(GuestAddress(10).checkedAdd(5) == GuestAddress(15))
        #expect(GuestAddress(UInt64.max).checkedAdd(1) == nil)
        #expect(GuestAddress(UInt64.max - 1).checkedAdd(1) == GuestAddress(UInt64.max))
    }

    @Test func alignment() {
        #expect(GuestAddress(0x1234).alignedDown(to: 0x1000) == GuestAddress(0x1000))
        #expect(GuestAddress(0x1234).alignedUp(to: 0x1000) == GuestAddress(0x2000))
        #expect(GuestAddress(UInt64.max).alignedUp(to: 0x1000) == nil)
        #expect(GuestAddress(0x2000).isAligned(to: 0x1000))
        #expect(!GuestAddress(0x2001).isAligned(to: 2))
    }

    @Test func offsetFromBase() {
        #expect(GuestAddress(0x1500).offset(from: GuestAddress(0x1000)) == 0x500)
        #expect(GuestAddress(0x500).offset(from: GuestAddress(0x1000)) == nil)
    }
}

@Suite struct GuestMemoryAccessTests {
    func twoRegions() throws -> GuestMemory {
        try GuestMemory(ranges: [(GuestAddress(0), 0x10000), (GuestAddress(0x100000), 0x10000)])
    }

    @Test func roundTripsValuesAndBytes() throws {
        let m = try twoRegions()
        try m.write(UInt32(0xDEADBEEF), at: GuestAddress(0x100))
        #expect(try m.read(UInt32.self, at: GuestAddress(0x100)) == 0xDEADBEEF)
        #expect(try m.readBytes(at: GuestAddress(0x100), count: 4) == [0xEF, 0xBE, 0xAD, 0xDE])
        try m.write(bytes: [1, 2, 3], at: GuestAddress(0x100001))
        #expect(try m.read(UInt16.self, at: GuestAddress(0x100001)) == 0x0201) // unaligned
        #expect(m.totalSize == 0x20000)
    }

    @Test func rejectsAccessOutsideRAM() throws {
        let m = try twoRegions()
        #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0x10000), length: 4)) {
            try m.read(UInt32.self, at: GuestAddress(0x10000))
        }
        // Straddling the end of a region is refused even if both ends are RAM-adjacent.
        #expect(throws: GuestMemoryError.self) { try m.read(UInt64.self, at: GuestAddress(0xFFFC)) }
        // In the hole between regions.
        #expect(throws: GuestMemoryError.self) { try m.readBytes(at: GuestAddress(0x50000), count: 1) }
        #expect(throws: GuestMemoryError.overflow(address: GuestAddress(UInt64.max - 1), length: 4)) {
            try m.read(UInt32.self, at: GuestAddress(UInt64.max - 1))
        }
        #expect(!m.isValid(GuestAddress(0xFFFF), length: 2))
        #expect(m.isValid(GuestAddress(0xFFFF), length: 1))
        #expect(m.isValid(GuestAddress(0x100000), length: 0x10000))
    }

    @Test func zeroTestReadsInPlaceAndChecksBounds() throws {
        let m = try twoRegions()
        #expect(try m.isZero(at: GuestAddress(0), count: 0x1000))
        // A single non-zero byte in the tail (past the last whole word) counts.
        try m.write(bytes: [7], at: GuestAddress(0x1002))
        #expect(try !m.isZero(at: GuestAddress(0x1000), count: 3))
        #expect(try m.isZero(at: GuestAddress(0x1000), count: 2))
        #expect(try !m.isZero(at: GuestAddress(0x1000), count: 0x1000))
        #expect(throws: GuestMemoryError.self) { try m.isZero(at: GuestAddress(0xF000), count: 0x2000) }
    }

    @Test func rejectsOverlappingRegions() throws {
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(ranges: [(GuestAddress(0), 0x2000), (GuestAddress(0x1000), 0x2000)])
        }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(regions: []) }
    }

    @Test func fillCopyAndAtomics() throws {
        let m = try twoRegions()
        try m.fill(0xAB, at: GuestAddress(0x200), count: 16)
        try m.copy(from: GuestAddress(0x200), to: GuestAddress(0x100010), count: 16)
        #expect(try m.readBytes(at: GuestAddress(0x100010), count: 16) == [UInt8](repeating: 0xAB, count: 16))
        try m.storeRelease16(0x1234, at: GuestAddress(0x300))
        #expect(try m.loadAcquire16(at: GuestAddress(0x300)) == 0x1234)
    }

    @Test func backingIsSharedMemfd() throws {
        // A second mapping of the same memfd (what a vhost-user backend
        // does) sees the guest's writes.
        let m = try GuestMemory(ranges: [(GuestAddress(0x1000), 0x4000)])
        let region = try #require(m.regions.first)
        let dupFD = try #require(region.backing).fd.duplicate()
        let other = try GuestMemory(regions: [GuestRegion(start: GuestAddress(0x1000), size: 0x4000, fd: dupFD, fileOffset: 0, mmapOffset: 0)])
        try m.write(UInt64(0x0102030405060708), at: GuestAddress(0x2000))
        #expect(try other.read(UInt64.self, at: GuestAddress(0x2000)) == 0x0102030405060708)
    }

    @Test func anonymousBackingIsPrivateAndAligned() throws {
        let m = try GuestMemory(ranges: [(GuestAddress(0), 8 << 20)], backing: .anonymous)
        #expect(!m.isShareable)
        #expect(m.regions[0].hostAddress % (2 << 20) == 0)
        try m.write(UInt32(7), at: GuestAddress(0x12345))
        #expect(try m.read(UInt32.self, at: GuestAddress(0x12345)) == 7)
        let shared = try GuestMemory(ranges: [(GuestAddress(0), 8 << 20)])
        #expect(shared.isShareable)
        #expect(shared.regions[0].hostAddress % (2 << 20) == 0)
    }

    @Test func fileIOGoesStraightIntoGuestMemory() throws {
        let m = try twoRegions()
        let memfd = try MemFD(name: "test-file", size: 4096)
        _ = try [UInt8](repeating: 7, count: 100).withUnsafeBytes { try memfd.fd.write($0, atOffset: 10) }
        let r = try m.readFile(memfd.fd, offset: 10, into: GuestAddress(0x400), count: 100)
        #expect(try r.get() == 100)
        #expect(try m.readBytes(at: GuestAddress(0x400), count: 100) == [UInt8](repeating: 7, count: 100))
        // Out-of-range guest buffers are refused before any I/O happens.
        #expect(throws: GuestMemoryError.self) { _ = try m.readFile(memfd.fd, offset: 0, into: GuestAddress(0xFF00), count: 0x200) }
    }

    /// One preadv/pwritev over several guest ranges, in order.
    @Test func vectoredFileIOMovesEveryRangeInOneCall() throws {
        let m = try twoRegions()
        let memfd = try MemFD(name: "test-vectored", size: 8192)
        try m.write(bytes: [UInt8](repeating: 1, count: 100), at: GuestAddress(0x100))
        try m.write(bytes: [UInt8](repeating: 2, count: 50), at: GuestAddress(0x800))
        try m.write(bytes: [UInt8](repeating: 3, count: 10), at: GuestAddress(0x300))
        let ranges: [(address: GuestAddress, count: Int)] = [(GuestAddress(0x100), 100), (GuestAddress(0x800), 50), (GuestAddress(0x300), 10)]
        #expect(try m.transferFile(memfd.fd, offset: 1000, ranges: ranges, write: true).get() == 160)
        var file = [UInt8](repeating: 0, count: 160)
        _ = try file.withUnsafeMutableBytes { try memfd.fd.read(into: $0, atOffset: 1000) }
        #expect(file == [UInt8](repeating: 1, count: 100) + [UInt8](repeating: 2, count: 50) + [UInt8](repeating: 3, count: 10))
        // Read back shifted by one range: the file's bytes land in the new order.
        let back: [(address: GuestAddress, count: Int)] = [(GuestAddress(0x500), 150), (GuestAddress(0x600), 10)]
        #expect(try m.transferFile(memfd.fd, offset: 1000, ranges: back, write: false).get() == 160)
        #expect(try m.readBytes(at: GuestAddress(0x500 + 99), count: 2) == [1, 2])
        #expect(try m.readBytes(at: GuestAddress(0x600), count: 10) == [UInt8](repeating: 3, count: 10))
        // Past the end of the file: fewer bytes than asked.
        #expect(try m.transferFile(memfd.fd, offset: 8192 - 20, ranges: back, write: false).get() == 20)
        // A range outside guest memory is refused before any I/O.
        #expect(throws: GuestMemoryError.self) {
            _ = try m.transferFile(memfd.fd, offset: 0, ranges: [(GuestAddress(0x100), 1), (GuestAddress(0xFF00), 0x200)], write: true)
        }
        #expect(try m.transferFile(memfd.fd, offset: 0, ranges: [], write: false).get() == 0)
        let tooMany = Array(repeating: (address: GuestAddress(0x100), count: 1), count: 1025)
        #expect(throws: Errno.self) { _ = try m.transferFile(memfd.fd, offset: 0, ranges: tooMany, write: false).get() }
    }
}
