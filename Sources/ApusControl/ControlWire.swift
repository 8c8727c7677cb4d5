/// The control sockets of apus-hv, apus-blkback and apus-netback speak one
/// line-oriented protocol, defined here once and used by every side:
///
///     request   COMMAND [ARG...] LF      words split on spaces; an argument
///                                        that holds a space, a quote or a
///                                        control character is a JSON string
///     reply     {"ok":true,...} LF       the command's typed reply
///               {"ok":false,"error":"..."} LF
///
/// so a human can still `echo status | socat - UNIX:control.sock`.

/// Why a control call failed.
public enum ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The socket is not there or nobody listens (the process is gone or starting).
    case unreachable(String)
    /// No reply within the deadline.
    case timedOut(String)
    /// The peer answered `{"ok":false,"error":...}`.
    case refused(String)
    /// The request line is not a command this peer knows.
    case badRequest(String)
    /// The reply could not be read as the expected type.
    case malformedReply(String)

    public var description: String {
        switch self {
        case .unreachable(let s): return s
        case .timedOut(let s): return s
        case .refused(let s): return s
        case .badRequest(let s): return s
        case .malformedReply(let s): return s
        }
    }
}

/// A command a control socket accepts: parsed from and written as words.
public protocol ControlCommand: Sendable, Equatable {
    /// Parses a request's words (the first is the command name).
    init(words: [String]) throws(ControlError)
    /// The words that make this request.
    var words: [String] { get }
    /// One line listing the commands, for "unknown command" answers.
    static var usage: String { get }
}

/// A typed reply: its fields beside `"ok":true`.
public protocol ControlReply: Sendable {
    init(fields: JSONFields) throws(ControlError)
    var fields: [(String, JSONValue)] { get }
}

/// The reply of commands that only succeed or fail.
public struct Acknowledged: ControlReply, Equatable {
    public init() {}
    public init(fields: JSONFields) {}
    public var fields: [(String, JSONValue)] { [] }
}

/// A command paired with the type of its reply: what a client sends.
public struct ControlCall<Reply: ControlReply>: Sendable {
    public let words: [String]
    public init<C: ControlCommand>(_ command: C) { words = command.words }
}

// MARK: lines

public enum ControlLine {
    /// Longest request line a server reads.
    public static let maxRequest = 4096
    /// Longest reply line a client reads.
    public static let maxReply = 1 << 20

    /// The request line for `words` (without the newline).
    public static func request(_ words: [String]) -> String {
        words.map { w in
            let plain = !w.isEmpty && w.unicodeScalars.allSatisfy { $0.value > 0x20 && $0 != "\"" && $0 != "\\" && $0.value != 0x7F }
            if plain { return w }
            var out = ""
            JSONValue.writeString(w, to: &out)
            return out
        }.joined(separator: " ")
    }

    /// Splits a request line into words (JSON-string words unquoted).
    public static func words(_ line: String) throws(ControlError) -> [String] {
        var out: [String] = []
        var p = JSONParser(Array(line.utf8))
        while true {
            while p.i < p.bytes.count, p.bytes[p.i] == 0x20 || p.bytes[p.i] == 0x09 { p.i += 1 }
            guard p.i < p.bytes.count else { return out }
            if p.bytes[p.i] == UInt8(ascii: "\"") {
                do {
                    out.append(try p.string())
                } catch {
                    throw .badRequest("bad quoted argument in: \(String(line.prefix(64)))")
                }
            } else {
                let start = p.i
                while p.i < p.bytes.count, p.bytes[p.i] != 0x20, p.bytes[p.i] != 0x09 { p.i += 1 }
                out.append(String(decoding: p.bytes[start..<p.i], as: UTF8.self))
            }
        }
    }

    /// The reply line for a successful command.
    public static func success(_ reply: any ControlReply) -> String {
        JSONValue.object([("ok", .bool(true))] + reply.fields).text
    }

    /// The reply line for a failed command.
    public static func failure(_ message: String) -> String {
        JSONValue.object([("ok", .bool(false)), ("error", .string(message))]).text
    }

    /// Reads a reply line as `Reply` (or the peer's refusal).
    public static func reply<Reply: ControlReply>(_ line: String, as: Reply.Type) throws(ControlError) -> Reply {
        let v = try JSONValue.parse(line)
        let f = JSONFields(v)
        guard try f.bool("ok") else { throw .refused(f.optionalString("error") ?? "refused") }
        return try Reply(fields: f)
    }

    /// An "unknown command" error naming what the peer accepts.
    public static func unknown(_ words: [String], usage: String) -> ControlError {
        .badRequest("unknown command: \(String(words.joined(separator: " ").prefix(64))) (\(usage))")
    }
}

// MARK: argument helpers for command parsers

extension Array where Element == String {
    /// The argument at `i` as an unsigned integer.
    public func controlNumber<T: FixedWidthInteger>(_ i: Int, _ what: String) throws(ControlError) -> T {
        guard i < count, let v = T(self[i]) else { throw .badRequest("\(first ?? ""): \(what) must be a number") }
        return v
    }
}
