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
        var run: (start: UInt64, data: [UInt8])?
        let limit = max(pageSize + 12, min(sectionBytes, Int(StateFormat.maxSectionLength)))
        func endRun() {
            guard let r = run else { return }
            var f = FieldWriter()
            f.u64(r.start)
            f.u32(UInt32(r.data.count / pageSize))
            payload += f.output
            payload += r.data
            run = nil
        }
        func endSection() throws(StateFileError) {
            endRun()
            guard !payload.isEmpty else { return }
            try writer.write(StateSection(tag: .ram, version: sectionVersion, payload: payload))
            counts.sections += 1
            payload.removeAll(keepingCapacity: true)
        }
        var page: [UInt8] = []
        page.reserveCapacity(pageSize)
        for region in memory.regions {
            guard region.start.raw % UInt64(pageSize) == 0, region.size % UInt64(pageSize) == 0 else {
                throw .malformed("RAM region at \(region.start) of \(region.size) bytes is not page-aligned")
            }
            var address = region.start.raw
            while address < region.end {
                page.removeAll(keepingCapacity: true)
                do {
                    try memory.appendBytes(at: GuestAddress(address), count: pageSize, to: &page)
                } catch {
                    throw .io("cannot read guest RAM at \(GuestAddress(address)): \(error)")
                }
                if isZero(page) {
                    endRun()
                    counts.zeroPagesSkipped += 1
                } else {
                    if run == nil { run = (address, []) }
                    run?.data += page
                    counts.pagesWritten += 1
                    if payload.count + (run?.data.count ?? 0) + 12 + pageSize > limit { try endSection() }
                }
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
            let data = try r.bytes(Int(length))
            do {
                try memory.write(bytes: data, at: GuestAddress(start))
            } catch {
                throw .io("cannot write guest RAM at \(GuestAddress(start)): \(error)")
            }
            pages += UInt64(count)
        }
        return pages
    }

    static func isZero(_ page: [UInt8]) -> Bool {
        var acc: UInt64 = 0
        page.withUnsafeBytes { raw in
            // SAFETY: the buffer is the live array; loads stay inside it
            // (8-byte steps over a whole number of words, then the tail).
            let words = raw.count / 8
            for i in 0..<words { acc |= raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) }
            for i in (words * 8)..<raw.count { acc |= UInt64(raw[i]) }
        }
        return acc == 0
    }
}
