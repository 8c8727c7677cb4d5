import VirtioSpec
import Testing
import GuestMemory
import Virtqueue
import VirtioDriver
@testable import BlockBackend

@Suite struct BlockRequestTests {
    let memory: GuestMemory
    let limits = BlockRequest.Limits(capacitySectors: 1024)

    init() throws { memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)]) }

    func header(_ type: UInt32, sector: UInt64 = 0, at address: UInt64 = 0x1000) throws -> DescriptorBuffer {
        var h = [UInt8](repeating: 0, count: 16)
        for i in 0..<4 { h[i] = UInt8(truncatingIfNeeded: type >> (8 * UInt32(i))) }
        for i in 0..<8 { h[8 + i] = UInt8(truncatingIfNeeded: sector >> (8 * UInt64(i))) }
        try memory.write(bytes: h, at: GuestAddress(address))
        return DescriptorBuffer(address: GuestAddress(address), length: 16, isWriteOnly: false)
    }

    func buffer(_ address: UInt64, _ length: UInt32, write: Bool) -> DescriptorBuffer {
        DescriptorBuffer(address: GuestAddress(address), length: length, isWriteOnly: write)
    }

    func parse(_ buffers: [DescriptorBuffer], limits: BlockRequest.Limits? = nil) throws -> BlockRequest {
        try BlockRequest.parse(DescriptorChain(head: 3, buffers: buffers), memory: memory, limits: limits ?? self.limits)
    }

    @Test func readWithDataAndStatusInOneBuffer() throws {
        // Data and status share the last writable buffer (513 bytes).
        let r = try parse([try header(VirtioBlock.typeIn, sector: 8), buffer(0x2000, 513, write: true)])
        #expect(r.operation == .read(sector: 8, into: [IOSegment(address: GuestAddress(0x2000), length: 512)]))
        #expect(r.status == GuestAddress(0x2200))
        #expect(r.dataLength == 512)
    }

    @Test func writeSplitAcrossBuffersWithHeaderSharingTheFirst() throws {
        // Header and the first data bytes in one buffer.
        _ = try header(VirtioBlock.typeOut, sector: 2, at: 0x3000)
        let r = try parse([buffer(0x3000, 16 + 512, write: false), buffer(0x4000, 512, write: false), buffer(0x5000, 1, write: true)])
        #expect(r.operation == .write(sector: 2, from: [IOSegment(address: GuestAddress(0x3010), length: 512),
                                                        IOSegment(address: GuestAddress(0x4000), length: 512)]))
    }

    @Test func headerSplitAcrossBuffers() throws {
        _ = try header(VirtioBlock.typeIn, sector: 5, at: 0x6000)
        try memory.copy(from: GuestAddress(0x6008), to: GuestAddress(0x7000), count: 8)
        let r = try parse([buffer(0x6000, 8, write: false), buffer(0x7000, 8, write: false), buffer(0x8000, 4097, write: true)])
        #expect(r.operation == .read(sector: 5, into: [IOSegment(address: GuestAddress(0x8000), length: 4096)]))
    }

    @Test func refusalsBecomeStatuses() throws {
        let status = buffer(0x9000, 1, write: true)
        // Past the end.
        #expect(try parse([try header(VirtioBlock.typeIn, sector: 1024), buffer(0x2000, 512, write: true), status]).operation
                == .invalid("sectors 1024+1 beyond the end of the device (1024 sectors)"))
        // Sector overflow.
        if case .invalid = try parse([try header(VirtioBlock.typeIn, sector: UInt64.max), buffer(0x2000, 512, write: true), status]).operation {} else { Issue.record("overflow accepted") }
        // Not a multiple of 512.
        if case .invalid = try parse([try header(VirtioBlock.typeIn), buffer(0x2000, 100, write: true), status]).operation {} else { Issue.record("odd length accepted") }
        // Read-only device refuses writes.
        let ro = BlockRequest.Limits(capacitySectors: 1024, readOnly: true)
        if case .invalid = try parse([try header(VirtioBlock.typeOut), buffer(0x2000, 512, write: false), status], limits: ro).operation {} else { Issue.record("write on RO accepted") }
        // Short header.
        if case .invalid = try parse([buffer(0x1000, 8, write: false), status]).operation {} else { Issue.record("short header accepted") }
        // Unknown type.
        #expect(try parse([try header(99), status]).operation == .unsupported(type: 99))
        // Discard with flags.
        try memory.write(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0], at: GuestAddress(0xA000))
        #expect(try parse([try header(VirtioBlock.typeDiscard), buffer(0xA000, 16, write: false), status]).operation == .unsupported(type: VirtioBlock.typeDiscard))
    }

    @Test func discardAndWriteZeroesSegments() throws {
        var seg: [UInt8] = []
        for (s, n, f) in [(UInt64(0), UInt32(8), UInt32(0)), (100, 4, 0)] {
            for i in 0..<8 { seg.append(UInt8(truncatingIfNeeded: s >> (8 * UInt64(i)))) }
            for i in 0..<4 { seg.append(UInt8(truncatingIfNeeded: n >> (8 * UInt32(i)))) }
            for i in 0..<4 { seg.append(UInt8(truncatingIfNeeded: f >> (8 * UInt32(i)))) }
        }
        try memory.write(bytes: seg, at: GuestAddress(0xB000))
        let status = buffer(0x9000, 1, write: true)
        #expect(try parse([try header(VirtioBlock.typeDiscard), buffer(0xB000, 32, write: false), status]).operation
                == .discard([BlockRange(sector: 0, sectors: 8, flags: 0), BlockRange(sector: 100, sectors: 4, flags: 0)]))
        #expect(try parse([try header(VirtioBlock.typeWriteZeroes), buffer(0xB000, 16, write: false), status]).operation
                == .writeZeroes([BlockRange(sector: 0, sectors: 8, flags: 0)]))
    }

    @Test func flushAndGetID() throws {
        let status = buffer(0x9000, 1, write: true)
        #expect(try parse([try header(VirtioBlock.typeFlush), status]).operation == .flush)
        #expect(try parse([try header(VirtioBlock.typeGetID), buffer(0xC000, 21, write: true)]).operation
                == .getID(into: [IOSegment(address: GuestAddress(0xC000), length: 20)]))
    }

    @Test func chainsWithoutAStatusByteCannotBeAnswered() throws {
        #expect(throws: BlockRequest.Unanswerable.self) { try parse([try header(VirtioBlock.typeIn)]) }
        #expect(throws: BlockRequest.Unanswerable.self) { try parse([try header(VirtioBlock.typeIn), buffer(0x9000, 0, write: true)]) }
        #expect(throws: BlockRequest.Unanswerable.self) { try parse([]) }
    }
}
