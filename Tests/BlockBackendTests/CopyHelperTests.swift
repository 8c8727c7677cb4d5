import ApusSys
import GuestMemory
import Testing
@testable import BlockBackend

@Suite struct CopyHelperTests {
    /// Batches of reads shared by the caller and the helper's thread land
    /// where asked, results in the order given, batch after batch; a short
    /// read and a failing descriptor report as the engine would.
    @Test func batchesAreCopiedAndAnsweredInOrder() throws {
        let size = 1 << 20
        let file = try MemFD(name: "copy-helper", size: Int64(size))
        let pattern = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        try file.fd.writeAll(pattern, atOffset: 0)
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 4 << 20)])
        let helper = try CopyHelper(name: "test-copy")
        defer { helper.stop() }
        for round in 0..<3 {
            var jobs: [CopyHelper.Job] = []
            var expected: [(address: UInt64, bytes: ArraySlice<UInt8>)] = []
            for i in 0..<40 {
                let offset = (i * 24_576 + round * 512) % (size - 16_384)
                let base = UInt64(i * 65_536)
                // Two segments with a gap between them in guest memory.
                let segments = [IOSegment(address: GuestAddress(base), length: 4096),
                                IOSegment(address: GuestAddress(base + 8192), length: 12_288)]
                jobs.append(.init(memory: memory, fd: file.fd, offset: UInt64(offset), segments: segments))
                expected.append((base, pattern[offset..<(offset + 4096)]))
                expected.append((base + 8192, pattern[(offset + 4096)..<(offset + 16_384)]))
            }
            // Past the end of the file: fewer bytes than asked.
            jobs.append(.init(memory: memory, fd: file.fd, offset: UInt64(size - 1000), segments: [IOSegment(address: GuestAddress(3 << 20), length: 4096)]))
            // A descriptor that is not open.
            jobs.append(.init(memory: memory, fd: FileDescriptor(rawValue: 1_000_000), offset: 0, segments: [IOSegment(address: GuestAddress(3 << 20), length: 512)]))
            let results = helper.run(jobs)
            #expect(results.count == 42)
            #expect(results.prefix(40).allSatisfy { $0 == 16_384 })
            #expect(results[40] == 1000)
            #expect(results[41] == -Errno.badDescriptor.rawValue)
            for e in expected {
                #expect(try memory.readBytes(at: GuestAddress(e.address), count: e.bytes.count) == Array(e.bytes), "round \(round) at \(e.address)")
            }
        }
        #expect(helper.run([]).isEmpty)
    }
}
