/// A JSON value: the payload of control-socket replies and apus-hv's status
/// file, written and read only through the typed messages of this module
/// (no other code handles their keys); also the encoder of apus-vhost-test's
/// JSON-lines reports, which are written, never read.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// Integers travel exactly (counters are 64-bit).
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    /// Members in order (replies are small; order keeps output stable).
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.integer(x), .integer(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member named `key` of an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }
}

// MARK: writing

extension JSONValue {
    /// Compact JSON text (one line: control replies are newline-framed).
    public var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let i): out += String(i)
        case .number(let d): out += d.isFinite ? "\(d)" : "null"
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(key, to: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.utf8.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

// MARK: reading

extension JSONValue {
    /// How deep arrays and objects may nest in what a peer sends.
    public static let maxDepth = 16

    /// Parses one JSON document (the whole text; trailing whitespace only).
    public static func parse(_ text: String) throws(ControlError) -> JSONValue {
        var p = JSONParser(Array(text.utf8))
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        guard p.atEnd else { throw p.error("trailing characters") }
        return v
    }
}

/// A recursive-descent parser over UTF-8 bytes, bounded in depth.
struct JSONParser {
    let bytes: [UInt8]
    var i = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { i >= bytes.count }

    func error(_ what: String) -> ControlError { .malformedReply("malformed JSON: \(what) at byte \(i)") }

    mutating func skipWhitespace() {
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    mutating func expect(_ literal: String) throws(ControlError) {
        for b in literal.utf8 {
            guard i < bytes.count, bytes[i] == b else { throw error("expected \(literal)") }
            i += 1
        }
    }

    mutating func value(depth: Int) throws(ControlError) -> JSONValue {
        guard depth < JSONValue.maxDepth else { throw error("nesting deeper than \(JSONValue.maxDepth)") }
        skipWhitespace()
        guard i < bytes.count else { throw error("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "["):
            i += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard i < bytes.count else { throw error("unterminated array") }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                try expect(",")
            }
        case UInt8(ascii: "{"):
            i += 1
            var members: [(String, JSONValue)] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                let key = try string()
                skipWhitespace()
                try expect(":")
                members.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                guard i < bytes.count else { throw error("unterminated object") }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                try expect(",")
            }
        default:
            return try number()
        }
    }

    mutating func string() throws(ControlError) -> String {
        i += 1 // opening quote
        var scalars = String.UnicodeScalarView()
        var run = i
        func flush(_ end: Int) {
            if end > run { scalars.append(contentsOf: String(decoding: bytes[run..<end], as: UTF8.self).unicodeScalars) }
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                flush(i)
                i += 1
                return String(scalars)
            }
            if b < 0x20 { throw error("control character in a string") }
            if b == UInt8(ascii: "\\") {
                flush(i)
                i += 1
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "b"): scalars.append("\u{8}")
                case UInt8(ascii: "f"): scalars.append("\u{c}")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("bad surrogate pair") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default: throw error("bad escape")
                }
                run = i
                continue
            }
            i += 1
        }
        throw error("unterminated string")
    }

    mutating func hex4() throws(ControlError) -> UInt32 {
        guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16) else {
            throw error("bad \\u escape")
        }
        i += 4
        return v
    }

    mutating func number() throws(ControlError) -> JSONValue {
        let start = i
        var integral = true
        while i < bytes.count {
            let b = bytes[i]
            if (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") {
                i += 1
            } else if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
                integral = false
                i += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if integral, let v = Int64(text) { return .integer(v) }
        guard !text.isEmpty, let d = Double(text) else { throw error("unexpected character") }
        return .number(d)
    }
}

// MARK: typed access

/// Reads the members of a reply object with errors that name the field.
public struct JSONFields: Sendable {
    public let value: JSONValue
    public init(_ value: JSONValue) { self.value = value }

    func missing(_ key: String, _ type: String) -> ControlError { .malformedReply("'\(key)' is missing or not \(type)") }

    public func int(_ key: String) throws(ControlError) -> Int64 {
        guard case .integer(let v)? = value[key] else { throw missing(key, "an integer") }
        return v
    }

    /// A counter: a non-negative integer.
    public func count(_ key: String) throws(ControlError) -> UInt64 {
        let v = try int(key)
        guard v >= 0 else { throw missing(key, "a non-negative integer") }
        return UInt64(v)
    }

    public func string(_ key: String) throws(ControlError) -> String {
        guard case .string(let v)? = value[key] else { throw missing(key, "a string") }
        return v
    }

    public func bool(_ key: String) throws(ControlError) -> Bool {
        guard case .bool(let v)? = value[key] else { throw missing(key, "a boolean") }
        return v
    }

    public func array(_ key: String) throws(ControlError) -> [JSONValue] {
        guard case .array(let v)? = value[key] else { throw missing(key, "an array") }
        return v
    }

    public func optionalString(_ key: String) -> String? {
        if case .string(let v)? = value[key] { return v }
        return nil
    }
}
