// A small AML decoder for tests: reads back what Machine's AML encoder
// writes (scopes, devices, names, methods, integers, strings, buffers,
// packages), so the DSDT can be checked as a tree rather than as bytes.

enum AMLValue: Equatable {
    case integer(UInt64)
    case string(String)
    case buffer([UInt8])
    case package([AMLValue])
}

indirect enum AMLNode: Equatable {
    case scope(String, [AMLNode])
    case device(String, [AMLNode])
    case name(String, AMLValue)
    case method(String, arguments: Int, body: [UInt8])

    var nameString: String {
        switch self {
        case .scope(let n, _), .device(let n, _), .name(let n, _), .method(let n, _, _): return n
        }
    }
}

struct AMLDecodeError: Error, CustomStringConvertible {
    let offset: Int
    let message: String
    var description: String { "AML decode error at \(offset): \(message)" }
}

struct AMLDecoder {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func byte() throws -> UInt8 {
        guard pos < bytes.count else { throw AMLDecodeError(offset: pos, message: "unexpected end") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func le(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(try byte()) << (8 * UInt64(i)) }
        return v
    }

    /// Returns the end offset of the package that starts at the PkgLength.
    mutating func packageEnd() throws -> Int {
        let start = pos
        let lead = try byte()
        let extra = Int(lead >> 6)
        var length: Int
        if extra == 0 {
            length = Int(lead & 0x3F)
        } else {
            length = Int(lead & 0x0F)
            for i in 0..<extra { length |= Int(try byte()) << (4 + 8 * i) }
        }
        let end = start + length
        guard end <= bytes.count else { throw AMLDecodeError(offset: start, message: "package runs past end") }
        return end
    }

    mutating func nameSeg() throws -> String {
        var s = ""
        for _ in 0..<4 { s.unicodeScalars.append(Unicode.Scalar(try byte())) }
        while s.hasSuffix("_") && s.count > 1 { s.removeLast() }
        return s
    }

    mutating func nameString() throws -> String {
        var prefix = ""
        if pos < bytes.count && bytes[pos] == 0x5C { prefix = "\\"; pos += 1 }
        let lead = try byte()
        switch lead {
        case 0x00: return prefix
        case 0x2E: return prefix + (try nameSeg()) + "." + (try nameSeg())
        case 0x2F:
            let n = Int(try byte())
            var parts: [String] = []
            for _ in 0..<n { parts.append(try nameSeg()) }
            return prefix + parts.joined(separator: ".")
        default:
            pos -= 1
            return prefix + (try nameSeg())
        }
    }

    mutating func value() throws -> AMLValue {
        let op = try byte()
        switch op {
        case 0x00: return .integer(0)
        case 0x01: return .integer(1)
        case 0xFF: return .integer(UInt64.max)
        case 0x0A: return .integer(try le(1))
        case 0x0B: return .integer(try le(2))
        case 0x0C: return .integer(try le(4))
        case 0x0E: return .integer(try le(8))
        case 0x0D:
            var s = ""
            while true {
                let c = try byte()
                if c == 0 { break }
                s.unicodeScalars.append(Unicode.Scalar(c))
            }
            return .string(s)
        case 0x11:
            let end = try packageEnd()
            guard case .integer(let size) = try value() else { throw AMLDecodeError(offset: pos, message: "buffer size") }
            let data = Array(bytes[pos..<end])
            guard data.count == Int(size) else { throw AMLDecodeError(offset: pos, message: "buffer size \(size) != \(data.count)") }
            pos = end
            return .buffer(data)
        case 0x12:
            let end = try packageEnd()
            let count = Int(try byte())
            var elements: [AMLValue] = []
            while pos < end { elements.append(try value()) }
            guard elements.count == count else { throw AMLDecodeError(offset: pos, message: "package count") }
            return .package(elements)
        default:
            throw AMLDecodeError(offset: pos - 1, message: "unknown data opcode 0x\(String(op, radix: 16))")
        }
    }

    mutating func termList(until end: Int) throws -> [AMLNode] {
        var nodes: [AMLNode] = []
        while pos < end {
            let op = try byte()
            switch op {
            case 0x10:
                let e = try packageEnd()
                let name = try nameString()
                nodes.append(.scope(name, try termList(until: e)))
            case 0x5B:
                guard try byte() == 0x82 else { throw AMLDecodeError(offset: pos - 1, message: "unsupported extended opcode") }
                let e = try packageEnd()
                let name = try nameString()
                nodes.append(.device(name, try termList(until: e)))
            case 0x08:
                let name = try nameString()
                nodes.append(.name(name, try value()))
            case 0x14:
                let e = try packageEnd()
                let name = try nameString()
                let flags = try byte()
                nodes.append(.method(name, arguments: Int(flags & 7), body: Array(bytes[pos..<e])))
                pos = e
            default:
                throw AMLDecodeError(offset: pos - 1, message: "unknown opcode 0x\(String(op, radix: 16))")
            }
        }
        guard pos == end else { throw AMLDecodeError(offset: pos, message: "overran a package") }
        return nodes
    }

    static func decode(_ aml: [UInt8]) throws -> [AMLNode] {
        var d = AMLDecoder(aml)
        return try d.termList(until: aml.count)
    }
}

extension [AMLNode] {
    func child(_ name: String) -> AMLNode? { first { $0.nameString == name } }
    func value(_ name: String) -> AMLValue? {
        if case .name(_, let v)? = child(name) { return v }
        return nil
    }
}

extension AMLNode {
    var children: [AMLNode] {
        switch self {
        case .scope(_, let c), .device(_, let c): return c
        default: return []
        }
    }
}

/// Resource descriptors decoded from a _CRS buffer.
enum DecodedResource: Equatable {
    case io(base: UInt16, length: UInt8)
    case irq(mask: UInt16)
    case memory32Fixed(base: UInt32, length: UInt32)
    case interrupt(flags: UInt8, gsis: [UInt32])
}

func decodeResources(_ b: [UInt8]) throws -> [DecodedResource] {
    var out: [DecodedResource] = []
    var i = 0
    func u16(_ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) | UInt32(u16(o + 2)) << 16 }
    while i < b.count {
        let tag = b[i]
        if tag & 0x80 == 0 {
            let len = Int(tag & 7)
            guard i + 1 + len <= b.count else { throw AMLDecodeError(offset: i, message: "small resource overruns") }
            switch tag >> 3 {
            case 0x08: out.append(.io(base: u16(i + 2), length: b[i + 7]))
            case 0x04: out.append(.irq(mask: u16(i + 1)))
            case 0x0F: return out // end tag
            default: throw AMLDecodeError(offset: i, message: "small resource 0x\(String(tag, radix: 16))")
            }
            i += 1 + len
        } else {
            guard i + 3 <= b.count else { throw AMLDecodeError(offset: i, message: "large resource header") }
            let len = Int(u16(i + 1))
            guard i + 3 + len <= b.count else { throw AMLDecodeError(offset: i, message: "large resource overruns") }
            switch tag {
            case 0x86: out.append(.memory32Fixed(base: u32(i + 4), length: u32(i + 8)))
            case 0x89:
                let count = Int(b[i + 4])
                out.append(.interrupt(flags: b[i + 3], gsis: (0..<count).map { u32(i + 5 + 4 * $0) }))
            default: throw AMLDecodeError(offset: i, message: "large resource 0x\(String(tag, radix: 16))")
            }
            i += 3 + len
        }
    }
    throw AMLDecodeError(offset: i, message: "no end tag")
}
