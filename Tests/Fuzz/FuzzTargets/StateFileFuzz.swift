import GuestMemory
import SaveState

/// Saved-state files from untrusted bytes (a file `virsh restore` is given
/// may be anything): the header, every section's length and checksum, and
/// RAM runs applied to a small machine's memory. Any error is fine; a
/// crash, a hang, an allocation beyond the section limit or a write
/// outside guest RAM is not. Inputs are checked against their own CRCs,
/// so the target also recomputes them (`fixChecksums`) to reach the
/// payload parsers past the checksum.
public enum StateFileFuzz {
    static let memory = try? GuestMemory(ranges: [(GuestAddress(0), 1 << 20), (GuestAddress(1 << 24), 1 << 16)])

    /// Returns how many sections of the input (as given) were read and applied.
    @discardableResult
    public static func run(_ bytes: [UInt8]) -> Int {
        let n = parse(bytes)
        parse(fixChecksums(bytes))
        return n
    }

    @discardableResult
    static func parse(_ bytes: [UInt8]) -> Int {
        guard let reader = try? StateReader(StateBytes(bytes), known: [.machine, .ram, .domainXML]) else { return 0 }
        var sections = 0
        while sections < 4096, let s = try? reader.next() {
            sections += 1
            if s.tag == .ram, let memory { _ = try? GuestRAMState.load(s, into: memory) }
            if s.tag == .machine {
                var r = FieldReader(s.payload)
                while (try? r.blob()) != nil {}
            }
        }
        return sections
    }

    /// The same bytes with each section's CRC recomputed.
    static func fixChecksums(_ input: [UInt8]) -> [UInt8] {
        var b = input
        var at = StateFormat.headerSize
        while at + StateFormat.sectionHeaderSize <= b.count {
            var length: UInt64 = 0
            for i in 0..<8 { length |= UInt64(b[at + 8 + i]) << (8 * UInt64(i)) }
            guard length <= UInt64(b.count - at - StateFormat.sectionHeaderSize) else { break }
            let end = at + StateFormat.sectionHeaderSize + Int(length)
            let crc = StateFormat.crc32(Array(b[(at + 24)..<end]), continuing: StateFormat.crc32(Array(b[at..<(at + 16)])))
            for i in 0..<4 { b[at + 16 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
            at = end
        }
        return b
    }
}
