import Testing
import GuestMemory
@testable import SaveState

@Suite struct StateFileTests {
    static let known: Set<SectionTag> = [.machine, .vcpu, .device, .ram, .domainXML]

    func sample() throws -> [UInt8] {
        let out = StateBytes()
        let w = try StateWriter(out)
        var m = FieldWriter()
        m.u32(2)
        m.u64(256 << 20)
        m.blob(Array("virtio-blk".utf8))
        try w.write(StateSection(tag: .machine, payload: m.output))
        try w.write(StateSection(tag: .vcpu, version: 3, payload: [UInt8](repeating: 0xab, count: 100)))
        try w.write(StateSection(tag: .domainXML, optional: true, payload: Array("<domain/>".utf8)))
        try w.finish()
        return out.bytes
    }

    func readAll(_ bytes: [UInt8], known: Set<SectionTag> = StateFileTests.known) throws(StateFileError) -> [StateSection] {
        let r = try StateReader(StateBytes(bytes), known: known)
        var out: [StateSection] = []
        while let s = try r.next() { out.append(s) }
        return out
    }

    @Test func sectionsRoundTripInOrder() throws {
        let bytes = try sample()
        #expect(Array(bytes.prefix(8)) == Array("APUSSTAT".utf8))
        let sections = try readAll(bytes)
        #expect(sections.map(\.tag) == [.machine, .vcpu, .domainXML])
        #expect(sections[1].version == 3 && sections[1].payload.count == 100)
        #expect(sections[2].optional && sections[2].payload == Array("<domain/>".utf8))
        var r = FieldReader(sections[0].payload)
        #expect(try r.u32() == 2 && r.u64() == 256 << 20 && r.blob() == Array("virtio-blk".utf8))
        try r.finish("the machine section")
        #expect(SectionTag.machine.description == "MACH" && SectionTag.end.description == "END")
    }

    @Test func everyTruncationIsRefusedClearly() throws {
        let bytes = try sample()
        for n in 0..<bytes.count {
            do {
                _ = try readAll(Array(bytes.prefix(n)))
                Issue.record("a file cut at \(n) of \(bytes.count) bytes was accepted")
            } catch {
                switch error {
                case .truncated, .notAStateFile: break
                default: Issue.record("cut at \(n): \(error)")
                }
            }
        }
    }

    @Test func everyFlippedByteIsCaught() throws {
        let bytes = try sample()
        for i in 0..<bytes.count {
            var damaged = bytes
            damaged[i] ^= 0x5a
            #expect(throws: StateFileError.self, "byte \(i) flipped") { _ = try readAll(damaged) }
        }
        // Past the header, a damaged payload names its section.
        var damaged = bytes
        damaged[StateFormat.headerSize + StateFormat.sectionHeaderSize + 3] ^= 1
        #expect(throws: StateFileError.checksum(.machine, offset: UInt64(StateFormat.headerSize))) { _ = try readAll(damaged) }
    }

    @Test func versionsAndMagic() throws {
        var bytes = try sample()
        bytes[8] = 2
        #expect(throws: StateFileError.newerVersion(2)) { _ = try readAll(bytes) }
        #expect(StateFileError.newerVersion(2).description == "saved by a newer Apus: state format 2; this build reads up to 1")
        bytes[8] = 0
        #expect(throws: StateFileError.badVersion(0)) { _ = try readAll(bytes) }
        #expect(throws: StateFileError.notAStateFile) { _ = try readAll(Array("QEVM\0\0\0\u{3}".utf8) + [UInt8](repeating: 0, count: 64)) }
    }

    @Test func unknownSectionsAreSkippedOnlyWhenOptional() throws {
        let bytes = try sample()
        // A reader that does not know DXML skips it (optional)...
        #expect(try readAll(bytes, known: [.machine, .vcpu]).map(\.tag) == [.machine, .vcpu])
        // ...but not VCPU, which is not.
        #expect(throws: StateFileError.unknownSection(.vcpu, offset: UInt64(StateFormat.headerSize + StateFormat.sectionHeaderSize + 26))) {
            _ = try readAll(bytes, known: [.machine])
        }
    }

    @Test func aHugeClaimedLengthIsRefusedBeforeAnythingIsRead() throws {
        var bytes = try sample()
        let at = StateFormat.headerSize + 8
        for i in 0..<8 { bytes[at + i] = 0xff }
        #expect(throws: StateFileError.sectionTooLarge(.machine, UInt64.max)) { _ = try readAll(bytes) }
        let w = try StateWriter(StateBytes())
        #expect(throws: StateFileError.self) { try w.write(StateSection(tag: .device, payload: [UInt8](repeating: 0, count: Int(StateFormat.maxSectionLength) + 1))) }
    }

    @Test func nothingAfterTheEnd() throws {
        let w = try StateWriter(StateBytes())
        try w.finish()
        #expect(throws: StateFileError.self) { try w.write(StateSection(tag: .machine, payload: [])) }
        #expect(throws: StateFileError.self) { try StateWriter(StateBytes()).write(StateSection(tag: .end, payload: [])) }
    }

    @Test func fieldReaderStaysInBounds() {
        var r = FieldReader([1, 2, 3])
        #expect(throws: StateFileError.self) { _ = try r.u32() }
        #expect((try? r.u16()) == 0x0201)
        #expect(throws: StateFileError.self) { try r.finish("two fields") }
        var blob = FieldReader([0xff, 0xff, 0xff, 0x7f, 1])
        #expect(throws: StateFileError.self) { _ = try blob.blob() }
    }

    // MARK: guest RAM

    func machineRAM() throws -> GuestMemory {
        try GuestMemory(ranges: [(GuestAddress(0), 4 << 20), (GuestAddress(1 << 32), 1 << 20)])
    }

    @Test func ramKeepsOnlyPagesThatAreNotZeroAndComesBackByteForByte() throws {
        let source = try machineRAM()
        try source.write(bytes: [1, 2, 3], at: GuestAddress(0))                       // first page
        try source.fill(0x7e, at: GuestAddress(0x10000), count: 3 * 4096)             // a run of three
        try source.write(UInt64(0xdead_beef), at: GuestAddress((4 << 20) - 8))        // the region's last page
        try source.write(UInt8(9), at: GuestAddress((1 << 32) + 4096 * 5 + 4095))     // the second region
        let file = StateBytes()
        let w = try StateWriter(file)
        let counts = try GuestRAMState.save(source, to: w, sectionBytes: 2 * 4096)
        try w.finish()
        #expect(counts.pagesWritten == 6)
        #expect(counts.zeroPagesSkipped == UInt64((5 << 20) / 4096) - 6)
        #expect(counts.sections >= 3, "sections stay under the size asked for")
        #expect(file.bytes.count < 7 * 4096 + 512, "the file holds the six pages, not 5 MiB")

        let restored = try machineRAM()
        var pages: UInt64 = 0
        for s in try readAll(file.bytes) { pages += try GuestRAMState.load(s, into: restored) }
        #expect(pages == 6)
        for region in source.regions {
            #expect(try source.readBytes(at: region.start, count: Int(region.size)) == restored.readBytes(at: region.start, count: Int(region.size)))
        }
    }

    @Test func ramRunsOutsideTheMachineOrMisalignedAreRefused() throws {
        let memory = try machineRAM()
        func section(_ start: UInt64, pages: UInt32, dataPages: Int) -> StateSection {
            var f = FieldWriter()
            f.u64(start)
            f.u32(pages)
            f.bytes([UInt8](repeating: 1, count: dataPages * 4096))
            return StateSection(tag: .ram, payload: f.output)
        }
        #expect(throws: StateFileError.self) { try GuestRAMState.load(section(8 << 20, pages: 1, dataPages: 1), into: memory) }
        #expect(throws: StateFileError.self) { try GuestRAMState.load(section((4 << 20) - 4096, pages: 2, dataPages: 2), into: memory) }
        #expect(throws: StateFileError.self) { try GuestRAMState.load(section(100, pages: 1, dataPages: 1), into: memory) }
        #expect(throws: StateFileError.self) { try GuestRAMState.load(section(0, pages: 3, dataPages: 1), into: memory) }
        #expect(throws: StateFileError.self) { try GuestRAMState.load(section(0, pages: 0, dataPages: 0), into: memory) }
        #expect(try memory.read(UInt8.self, at: GuestAddress(0)) == 0, "nothing was written by a refused section")
    }
}
