import ApusSys

/// Where a state file's bytes go.
public protocol StateSink: AnyObject {
    func write(_ bytes: [UInt8]) throws(StateFileError)
}

/// Where a state file's bytes come from: `read` returns at most `count`
/// bytes, fewer only at the end.
public protocol StateSource: AnyObject {
    func read(_ count: Int) throws(StateFileError) -> [UInt8]
}

/// A state file in memory (tests, fuzzing, small files).
public final class StateBytes: StateSink, StateSource {
    public private(set) var bytes: [UInt8]
    private var position = 0
    public init(_ bytes: [UInt8] = []) { self.bytes = bytes }
    public func write(_ b: [UInt8]) throws(StateFileError) { bytes += b }
    public func read(_ count: Int) throws(StateFileError) -> [UInt8] {
        let n = min(count, bytes.count - position)
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }
}

/// A state file on a descriptor (a file, or a pipe: nothing seeks).
public final class StateFileDescriptor: StateSink, StateSource {
    public let fd: FileDescriptor
    public init(_ fd: FileDescriptor) { self.fd = fd }
    public func write(_ bytes: [UInt8]) throws(StateFileError) {
        do {
            try fd.writeAll(bytes)
        } catch {
            throw .io("cannot write the state file: \(error)")
        }
    }
    public func read(_ count: Int) throws(StateFileError) -> [UInt8] {
        var out: [UInt8] = []
        while out.count < count {
            let chunk: [UInt8]
            do {
                chunk = try fd.read(upToCount: count - out.count)
            } catch {
                throw .io("cannot read the state file: \(error)")
            }
            if chunk.isEmpty { break }
            // A file gives the whole section in one read: no second copy.
            if out.isEmpty { out = chunk } else { out += chunk }
        }
        return out
    }
}

/// One section as read back: its tag, version and payload (checked).
public struct StateSection: Equatable, Sendable {
    public let tag: SectionTag
    public let version: UInt16
    public let optional: Bool
    public let payload: [UInt8]
    public init(tag: SectionTag, version: UInt16 = 1, optional: Bool = false, payload: [UInt8]) {
        self.tag = tag
        self.version = version
        self.optional = optional
        self.payload = payload
    }
}

extension StateSection {
    /// The section's header as a file holds it (tag, version, flags,
    /// length, the CRC-32 over header and payload); the payload follows it.
    public func encodedHeader() throws(StateFileError) -> [UInt8] {
        guard UInt64(payload.count) <= StateFormat.maxSectionLength else { throw .sectionTooLarge(tag, UInt64(payload.count)) }
        var h = FieldWriter()
        h.u32(tag.rawValue)
        h.u16(version)
        h.u16(optional ? StateFormat.optionalFlag : 0)
        h.u64(UInt64(payload.count))
        let crc = StateFormat.crc32(payload, continuing: StateFormat.crc32(h.output))
        h.u32(crc)
        h.u32(0)
        return h.output
    }
}

/// A section's header as a file holds it, parsed and checked (its reserved
/// field zero, its length within the limit); the CRC is checked with the payload.
public struct SectionHeader: Equatable, Sendable {
    public let tag: SectionTag
    public let version: UInt16
    public let flags: UInt16
    public let length: UInt64
    public let crc: UInt32

    /// Parses the ``StateFormat/sectionHeaderSize`` bytes of a header found at byte `offset`.
    public init(parsing bytes: [UInt8], at offset: UInt64) throws(StateFileError) {
        var r = FieldReader(bytes)
        tag = SectionTag(rawValue: try r.u32())
        version = try r.u16()
        flags = try r.u16()
        length = try r.u64()
        crc = try r.u32()
        guard try r.u32() == 0 else { throw .malformed("the section header at byte \(offset) has a reserved field that is not zero") }
        try r.finish("a section header")
        guard length <= StateFormat.maxSectionLength else { throw .sectionTooLarge(tag, length) }
    }
}

/// Writes a state file: the header, then sections, then ``finish()``.
public final class StateWriter {
    private let sink: StateSink
    private var finished = false
    /// Bytes written so far.
    public private(set) var offset: UInt64 = 0

    public init(_ sink: StateSink) throws(StateFileError) {
        self.sink = sink
        var h = FieldWriter()
        h.bytes(StateFormat.magic)
        h.u32(StateFormat.version)
        h.u32(0)
        try put(h.output)
    }

    public func write(_ section: StateSection) throws(StateFileError) {
        guard !finished else { throw .malformed("a section after the end section") }
        guard section.tag != .end else { throw .malformed("the end section is written by finish()") }
        try emit(section)
    }

    /// Writes the end section. Nothing may follow.
    public func finish() throws(StateFileError) {
        guard !finished else { return }
        try emit(StateSection(tag: .end, payload: []))
        finished = true
    }

    private func emit(_ s: StateSection) throws(StateFileError) {
        try put(try s.encodedHeader())
        try put(s.payload)
    }

    private func put(_ b: [UInt8]) throws(StateFileError) {
        try sink.write(b)
        offset += UInt64(b.count)
    }
}

/// Reads a state file back, section by section, checking each before it
/// is returned: the header's magic and version, every section's length
/// against the limit, its checksum, and that the end section comes.
public final class StateReader {
    private let source: StateSource
    /// The format version the file was written with.
    public let version: UInt32
    /// Section tags this reader's caller understands; an unknown one not
    /// marked optional is an error, an optional one is skipped.
    private let known: Set<SectionTag>
    private var offset: UInt64 = 0
    private var ended = false

    public init(_ source: StateSource, known: Set<SectionTag>) throws(StateFileError) {
        self.source = source
        self.known = known.union([.end])
        let h = try source.read(StateFormat.headerSize)
        guard h.count == StateFormat.headerSize else {
            throw h.count >= StateFormat.magic.count && Array(h.prefix(StateFormat.magic.count)) == StateFormat.magic
                ? .truncated("the file header") : .notAStateFile
        }
        var r = FieldReader(h)
        guard (try? r.bytes(StateFormat.magic.count)) == StateFormat.magic else { throw .notAStateFile }
        let v = try r.u32()
        guard v != 0 else { throw .badVersion(v) }
        guard v <= StateFormat.version else { throw .newerVersion(v) }
        guard try r.u32() == 0 else { throw .malformed("the file header's reserved field is not zero") }
        version = v
        offset = UInt64(StateFormat.headerSize)
    }

    /// The next section, or nil after the end section.
    public func next() throws(StateFileError) -> StateSection? {
        while !ended {
            let at = offset
            let h = try source.read(StateFormat.sectionHeaderSize)
            guard h.count == StateFormat.sectionHeaderSize else {
                throw .truncated(h.isEmpty ? "no end section after byte \(at)" : "a section header at byte \(at)")
            }
            let header = try SectionHeader(parsing: h, at: at)
            let tag = header.tag, length = header.length
            let payload = try source.read(Int(length))
            guard payload.count == Int(length) else { throw .truncated("section \(tag) at byte \(at) (\(payload.count) of \(length) bytes)") }
            offset += UInt64(StateFormat.sectionHeaderSize) + length
            guard StateFormat.crc32(payload, continuing: StateFormat.crc32(Array(h[0..<16]))) == header.crc else { throw .checksum(tag, offset: at) }
            if tag == .end {
                guard length == 0 else { throw .malformed("the end section has a payload") }
                ended = true
                return nil
            }
            let optional = header.flags & StateFormat.optionalFlag != 0
            guard known.contains(tag) else {
                if optional { continue }
                throw .unknownSection(tag, offset: at)
            }
            return StateSection(tag: tag, version: header.version, optional: optional, payload: payload)
        }
        return nil
    }
}

/// Little-endian fields into a section's payload.
public struct FieldWriter {
    public private(set) var output: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { output.append(v) }
    public mutating func u16(_ v: UInt16) { for i in 0..<2 { output.append(UInt8(truncatingIfNeeded: v >> (8 * UInt16(i)))) } }
    public mutating func u32(_ v: UInt32) { for i in 0..<4 { output.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    public mutating func u64(_ v: UInt64) { for i in 0..<8 { output.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    public mutating func bytes(_ b: [UInt8]) { output += b }
    /// A length-prefixed (u32) byte string.
    public mutating func blob(_ b: [UInt8]) {
        u32(UInt32(clamping: b.count))
        output += b
    }
}

/// Little-endian fields out of a payload, every read bounds-checked.
public struct FieldReader {
    private let input: [UInt8]
    public private(set) var position = 0
    public init(_ input: [UInt8]) { self.input = input }
    public var remaining: Int { input.count - position }
    private mutating func take(_ n: Int) throws(StateFileError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw .malformed("a field of \(n) bytes at \(position) runs past the section's \(input.count)") }
        defer { position += n }
        return input[position..<(position + n)]
    }
    private mutating func int<T: FixedWidthInteger & UnsignedInteger>(_: T.Type) throws(StateFileError) -> T {
        var v: T = 0
        for (i, b) in try take(MemoryLayout<T>.size).enumerated() { v |= T(b) << (8 * i) }
        return v
    }
    public mutating func u8() throws(StateFileError) -> UInt8 { try int(UInt8.self) }
    public mutating func u16() throws(StateFileError) -> UInt16 { try int(UInt16.self) }
    public mutating func u32() throws(StateFileError) -> UInt32 { try int(UInt32.self) }
    public mutating func u64() throws(StateFileError) -> UInt64 { try int(UInt64.self) }
    public mutating func bytes(_ n: Int) throws(StateFileError) -> [UInt8] { Array(try take(n)) }
    /// The next `n` bytes without copying them.
    public mutating func slice(_ n: Int) throws(StateFileError) -> ArraySlice<UInt8> { try take(n) }
    public mutating func blob() throws(StateFileError) -> [UInt8] { try bytes(Int(try u32())) }
    /// The payload must be used up (a longer one is from another layout).
    public func finish(_ what: String) throws(StateFileError) {
        guard remaining == 0 else { throw .malformed("\(remaining) bytes left over after \(what)") }
    }
}
