import GuestMemory

/// Guest RAM in a state file: only pages that are not all zero, as runs of
/// consecutive pages in ``SectionTag/ram`` sections of bounded size (a
/// restored machine's RAM starts zeroed, so a page left out is a zero page).
///
///     RAM section payload (version 1), runs one after another:
///       u64 guest-physical address (page-aligned)
///       u32 pages (at least 1)
///       pages × 4096 bytes
public enum GuestRAMState {
    public static let pageSize = 4096
    public static let sectionVersion: UInt16 = 1

    /// What a save wrote.
    public struct Counts: Equatable, Sendable {
        public var pagesWritten: UInt64 = 0
        public var zeroPagesSkipped: UInt64 = 0
        public var sections = 0
    }

    /// Writes the pages of `memory` that are not all zero, in sections of at
    /// most about `sectionBytes`.
    @discardableResult
    public static func save(_ memory: GuestMemory, to writer: StateWriter,
                            sectionBytes: Int = 16 << 20) throws(StateFileError) -> Counts {
        var counts = Counts()
        var payload: [UInt8] = []
        var runStart: UInt64?
        var runData: [UInt8] = []
        let limit = max(pageSize + 12, min(sectionBytes, Int(StateFormat.maxSectionLength)))
        func endRun() {
            guard let start = runStart else { return }
            var f = FieldWriter()
            f.u64(start)
            f.u32(UInt32(runData.count / pageSize))
            payload += f.output
            payload += runData
            runStart = nil
            runData.removeAll(keepingCapacity: true)
        }
        func endSection() throws(StateFileError) {
            endRun()
            guard !payload.isEmpty else { return }
            try writer.write(StateSection(tag: .ram, version: sectionVersion, payload: payload))
            counts.sections += 1
            payload.removeAll(keepingCapacity: true)
        }
        for region in memory.regions {
            guard region.start.raw % UInt64(pageSize) == 0, region.size % UInt64(pageSize) == 0 else {
                throw .malformed("RAM region at \(region.start) of \(region.size) bytes is not page-aligned")
            }
            var address = region.start.raw
            while address < region.end {
                let page = GuestAddress(address)
                // Tested in place: only pages that are not zero are copied.
                do {
                    if try memory.isZero(at: page, count: pageSize) {
                        endRun()
                        counts.zeroPagesSkipped += 1
                    } else {
                        if runStart == nil { runStart = address }
                        try memory.appendBytes(at: page, count: pageSize, to: &runData)
                        counts.pagesWritten += 1
                    }
                } catch {
                    throw .io("cannot read guest RAM at \(page): \(error)")
                }
                if payload.count + runData.count + 12 + pageSize > limit { try endSection() }
                address += UInt64(pageSize)
            }
            endRun()
        }
        try endSection()
        return counts
    }

    /// Copies one RAM section's pages into `memory`; every run must lie
    /// inside it. Returns the pages written.
    @discardableResult
    public static func load(_ section: StateSection, into memory: GuestMemory) throws(StateFileError) -> UInt64 {
        guard section.tag == .ram else { throw .malformed("section \(section.tag) is not RAM") }
        guard section.version == sectionVersion else { throw .malformed("RAM section version \(section.version) (this build reads \(sectionVersion))") }
        var r = FieldReader(section.payload)
        var pages: UInt64 = 0
        while r.remaining > 0 {
            let start = try r.u64()
            let count = try r.u32()
            guard start % UInt64(pageSize) == 0 else { throw .malformed("a RAM run at \(GuestAddress(start)) is not page-aligned") }
            guard count > 0, UInt64(count) * UInt64(pageSize) <= UInt64(r.remaining) else {
                throw .malformed("a RAM run at \(GuestAddress(start)) claims \(count) pages; the section holds \(r.remaining / pageSize) more")
            }
            let length = UInt64(count) * UInt64(pageSize)
            guard memory.isValid(GuestAddress(start), length: length) else {
                throw .malformed("a RAM run of \(count) pages at \(GuestAddress(start)) lies outside the machine's RAM")
            }
            let data = try r.slice(Int(length))
            do {
                try memory.write(bytes: data, at: GuestAddress(start))
            } catch {
                throw .io("cannot write guest RAM at \(GuestAddress(start)): \(error)")
            }
            pages += UInt64(count)
        }
        return pages
    }
}
