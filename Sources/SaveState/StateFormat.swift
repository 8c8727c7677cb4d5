import ApusSys

/// Apus's saved-state file (`virsh save`, managed save, snapshots' memory):
/// versioned and self-describing, read back by a process that trusts
/// nothing in it. Everything little-endian.
///
///     file header, 16 bytes:
///       @0  magic "APUSSTAT"
///       @8  u32 format version (``StateFormat/version``)
///       @12 u32 reserved (0)
///     sections, one after another, each:
///       @0  u32 tag (four ASCII bytes, ``SectionTag``)
///       @4  u16 section version (the payload's own layout)
///       @6  u16 flags (bit 0: optional: a reader that does not know the tag skips it)
///       @8  u64 payload length (at most ``StateFormat/maxSectionLength``)
///       @16 u32 CRC-32 of bytes 0..<16 and the payload
///       @20 u32 reserved (0)
///       @24 payload
///     the end section (tag "END ", length 0) last.
///
/// Sections are bounded so a reader never allocates more than one of them,
/// and a writer can stream a machine's RAM without holding it twice.
public enum StateFormat {
    public static let magic: [UInt8] = Array("APUSSTAT".utf8)
    /// The format this build writes and the newest it reads.
    public static let version: UInt32 = 1
    public static let headerSize = 16
    public static let sectionHeaderSize = 24
    /// The largest payload a section may have (RAM is split across sections).
    public static let maxSectionLength: UInt64 = 64 << 20
    /// Section flag: a reader that does not know the tag may skip it.
    public static let optionalFlag: UInt16 = 1

    /// The sections' checksum (CRC-32, IEEE).
    public static func crc32(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 { CRC32.checksum(bytes, continuing: crc) }
}

/// A section's kind: four ASCII bytes, read as a little-endian u32.
public struct SectionTag: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// From four ASCII characters (shorter names are padded with spaces).
    public init(_ name: StaticString) {
        var bytes = [UInt8](repeating: 0x20, count: 4)
        name.withUTF8Buffer { b in for (i, c) in b.prefix(4).enumerated() { bytes[i] = c } }
        rawValue = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
    }
    /// The tag as text; bytes outside printable ASCII are shown in hex.
    public var description: String {
        let bytes = (0..<4).map { UInt8(truncatingIfNeeded: rawValue >> (8 * UInt32($0))) }
        guard bytes.allSatisfy({ (0x20...0x7e).contains($0) }) else { return "0x" + String(rawValue, radix: 16) }
        return String(decoding: bytes, as: UTF8.self).trimmingSuffixSpaces
    }

    /// The machine: vCPU count, RAM layout, the devices present.
    public static let machine = SectionTag("MACH")
    /// One vCPU's registers and pending events.
    public static let vcpu = SectionTag("VCPU")
    /// The in-kernel interrupt controllers, PIT and clock.
    public static let irqchip = SectionTag("IRQC")
    /// A platform or virtio device's state.
    public static let device = SectionTag("DEV")
    /// A part of guest RAM: runs of pages that are not all zero.
    public static let ram = SectionTag("RAM")
    /// The vhost-user backends to start again (socket, image, format).
    public static let backends = SectionTag("BKND")
    /// The domain's XML, for apusd (SAVE_IMAGE_GET_XML_DESC).
    public static let domainXML = SectionTag("DXML")
    /// apusd's notes on a save image: the state a restore starts in.
    public static let saveInfo = SectionTag("SAVI")
    /// The last section.
    public static let end = SectionTag("END")
}

extension String {
    fileprivate var trimmingSuffixSpaces: String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// Why a state file cannot be written or read back.
public enum StateFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case notAStateFile
    case newerVersion(UInt32)
    case badVersion(UInt32)
    case truncated(String)
    case checksum(SectionTag, offset: UInt64)
    case sectionTooLarge(SectionTag, UInt64)
    case unknownSection(SectionTag, offset: UInt64)
    case malformed(String)
    case io(String)

    public var description: String {
        switch self {
        case .notAStateFile: "not an Apus saved-state file (no APUSSTAT magic)"
        case .newerVersion(let v): "saved by a newer Apus: state format \(v); this build reads up to \(StateFormat.version)"
        case .badVersion(let v): "bad state format version \(v)"
        case .truncated(let what): "the state file is truncated: \(what)"
        case .checksum(let tag, let offset): "the state file is corrupt: section \(tag) at byte \(offset) fails its checksum"
        case .sectionTooLarge(let tag, let n): "section \(tag) claims \(n) bytes (the limit is \(StateFormat.maxSectionLength))"
        case .unknownSection(let tag, let offset): "unknown section \(tag) at byte \(offset), not marked optional (saved by a newer Apus?)"
        case .malformed(let why): "the state file is malformed: \(why)"
        case .io(let why): why
        }
    }
}
