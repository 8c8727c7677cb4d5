/// Xen's xl.cfg syntax (xl.cfg(5), libxlu's config grammar): `KEY = VALUE`
/// settings separated by newlines or `;`, `KEY += VALUE` to append, `#`
/// comments, values that are strings ('single' or "double" quoted, with C
/// escapes in double quotes), numbers (decimal or 0x hex) or lists
/// `[ v, v, ]` that may span lines. Errors carry file:line:column.
public struct XLConfigFile: Equatable, Sendable {
    public indirect enum Value: Equatable, Sendable {
        case string(String)
        case number(Int64)
        case list([Value])

        /// The value as xl would write it.
        public var text: String {
            switch self {
            case .string(let s): XLConfigFile.quote(s)
            case .number(let n): String(n)
            case .list(let items): "[ " + items.map(\.text).joined(separator: ", ") + " ]"
            }
        }
    }

    public struct Setting: Equatable, Sendable {
        public var key: String
        public var value: Value
        public var line: Int
        public var column: Int
    }

    /// Settings in file order, each key once (`+=` folded into its key).
    public var settings: [Setting] = []

    public init(settings: [Setting] = []) { self.settings = settings }

    public subscript(key: String) -> Setting? { settings.first { $0.key == key } }

    public static let maxBytes = 1 << 20
    public static let maxListItems = 4096

    /// Parses `text`; `file` names it in errors.
    public static func parse(_ text: String, file: String = "xl.cfg") throws(XLConfigError) -> XLConfigFile {
        guard text.utf8.count <= maxBytes else { throw XLConfigError(file: file, line: 1, column: 1, message: "file larger than \(maxBytes) bytes") }
        var lexer = Lexer(Array(text.utf8), file: file)
        var config = XLConfigFile()
        while true {
            let token = try lexer.next()
            switch token.kind {
            case .end:
                return config
            case .newline, .semicolon:
                continue
            case .identifier(let key):
                let op = try lexer.next()
                let append: Bool
                switch op.kind {
                case .equals: append = false
                case .plusEquals: append = true
                default: throw lexer.error(op, "expected '=' or '+=' after '\(key)'")
                }
                let value = try parseValue(&lexer)
                let after = try lexer.next()
                switch after.kind {
                case .newline, .semicolon, .end: break
                default: throw lexer.error(after, "expected the end of the line after the value of '\(key)'")
                }
                if let i = config.settings.firstIndex(where: { $0.key == key }) {
                    if append {
                        config.settings[i].value = try appended(config.settings[i].value, value, lexer: lexer, at: token, key: key)
                    } else {
                        config.settings[i] = Setting(key: key, value: value, line: token.line, column: token.column)
                    }
                } else {
                    config.settings.append(Setting(key: key, value: value, line: token.line, column: token.column))
                }
                if case .end = after.kind { return config }
            default:
                throw lexer.error(token, "expected a setting name")
            }
        }
    }

    static func appended(_ old: Value, _ new: Value, lexer: Lexer, at token: Token, key: String) throws(XLConfigError) -> Value {
        switch (old, new) {
        case (.list(let a), .list(let b)): return .list(a + b)
        case (.list(let a), _): return .list(a + [new])
        case (.string(let a), .string(let b)): return .string(a + b)
        default: throw lexer.error(token, "cannot append to '\(key)' (only lists and strings take '+=')")
        }
    }

    static func parseValue(_ lexer: inout Lexer) throws(XLConfigError) -> Value {
        let token = try lexer.next(skippingNewlines: false)
        switch token.kind {
        case .string(let s): return .string(s)
        case .number(let n): return .number(n)
        case .openBracket:
            var items: [Value] = []
            while true {
                var t = try lexer.next(skippingNewlines: true)
                if case .closeBracket = t.kind { return .list(items) }
                // Refused before descending: no input can recurse deeply.
                if case .openBracket = t.kind { throw lexer.error(t, "lists cannot be nested") }
                lexer.pushBack(t)
                items.append(try parseValue(&lexer))
                guard items.count <= maxListItems else { throw lexer.error(t, "list longer than \(maxListItems) items") }
                t = try lexer.next(skippingNewlines: true)
                switch t.kind {
                case .comma: continue
                case .closeBracket: return .list(items)
                default: throw lexer.error(t, "expected ',' or ']' in a list")
                }
            }
        case .end, .newline, .semicolon: throw lexer.error(token, "missing value")
        default: throw lexer.error(token, "expected a value (a quoted string, a number or a [list])")
        }
    }

    /// Quotes a string for an xl.cfg file.
    public static func quote(_ s: String) -> String {
        if !s.contains("'") && !s.contains("\n") && !s.contains("\\") { return "'" + s + "'" }
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    /// Writes the settings back as an xl.cfg file.
    public func formatted() -> String {
        settings.map { "\($0.key) = \($0.value.text)\n" }.joined()
    }

    // MARK: lexing

    struct Token {
        enum Kind {
            case identifier(String), string(String), number(Int64)
            case equals, plusEquals, openBracket, closeBracket, comma, semicolon, newline, end
        }
        var kind: Kind
        var line: Int
        var column: Int
    }

    struct Lexer {
        let bytes: [UInt8]
        let file: String
        var i = 0
        var line = 1
        var column = 1
        var pending: [Token] = []

        init(_ bytes: [UInt8], file: String) {
            self.bytes = bytes
            self.file = file
        }

        func error(_ t: Token, _ message: String) -> XLConfigError {
            XLConfigError(file: file, line: t.line, column: t.column, message: message)
        }

        func error(_ message: String) -> XLConfigError {
            XLConfigError(file: file, line: line, column: column, message: message)
        }

        mutating func pushBack(_ t: Token) { pending.append(t) }

        mutating func advance() {
            if bytes[i] == UInt8(ascii: "\n") { line += 1; column = 1 } else if bytes[i] & 0xC0 != 0x80 { column += 1 }
            i += 1
        }

        mutating func next(skippingNewlines: Bool = false) throws(XLConfigError) -> Token {
            while true {
                let t = try nextRaw()
                if skippingNewlines, case .newline = t.kind { continue }
                return t
            }
        }

        mutating func nextRaw() throws(XLConfigError) -> Token {
            if let t = pending.popLast() { return t }
            // Blanks and comments.
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") {
                    advance()
                } else if c == UInt8(ascii: "#") {
                    while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { advance() }
                } else {
                    break
                }
            }
            let startLine = line, startColumn = column
            func token(_ k: Token.Kind) -> Token { Token(kind: k, line: startLine, column: startColumn) }
            guard i < bytes.count else { return token(.end) }
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "\n"): advance(); return token(.newline)
            case UInt8(ascii: ";"): advance(); return token(.semicolon)
            case UInt8(ascii: "="): advance(); return token(.equals)
            case UInt8(ascii: "["): advance(); return token(.openBracket)
            case UInt8(ascii: "]"): advance(); return token(.closeBracket)
            case UInt8(ascii: ","): advance(); return token(.comma)
            case UInt8(ascii: "+"):
                advance()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else { throw error("expected '=' after '+'") }
                advance()
                return token(.plusEquals)
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                return token(.string(try quoted(c, startLine: startLine, startColumn: startColumn)))
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                return token(.number(try number(startLine: startLine, startColumn: startColumn)))
            default:
                guard isIdentifierStart(c) else {
                    throw error("unexpected character '\(String(decoding: [c], as: UTF8.self))'")
                }
                var name: [UInt8] = []
                while i < bytes.count, isIdentifierStart(bytes[i]) || (bytes[i] >= 0x30 && bytes[i] <= 0x39) {
                    name.append(bytes[i]); advance()
                }
                return token(.identifier(String(decoding: name, as: UTF8.self)))
            }
        }

        func isIdentifierStart(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_")
        }

        mutating func number(startLine: Int, startColumn: Int) throws(XLConfigError) -> Int64 {
            // A number runs to the next non-alphanumeric byte, so "64M" is
            // one malformed number rather than 64 and a stray name.
            var text: [UInt8] = []
            while i < bytes.count, let ch = Optional(bytes[i]),
                  (ch >= 0x30 && ch <= 0x39) || isIdentifierStart(ch) || (ch == UInt8(ascii: "-") && text.isEmpty) {
                text.append(ch); advance()
            }
            let s = String(decoding: text, as: UTF8.self)
            let negative = s.hasPrefix("-")
            let digits = negative ? String(s.dropFirst()) : s
            let value: Int64?
            if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
                value = Int64(digits.dropFirst(2), radix: 16)
            } else {
                value = Int64(digits, radix: 10)
            }
            guard let value, text.count <= 24 else {
                throw XLConfigError(file: file, line: startLine, column: startColumn, message: "malformed number '\(s.prefix(24))'")
            }
            return negative ? -value : value
        }

        mutating func quoted(_ quote: UInt8, startLine: Int, startColumn: Int) throws(XLConfigError) -> String {
            advance()
            var out: [UInt8] = []
            while true {
                guard i < bytes.count, bytes[i] != UInt8(ascii: "\n") else {
                    throw XLConfigError(file: file, line: startLine, column: startColumn, message: "unterminated string")
                }
                let c = bytes[i]
                if c == quote { advance(); return String(decoding: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") {
                    advance()
                    guard i < bytes.count else { continue }
                    let e = bytes[i]
                    advance()
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "0"): out.append(0)
                    case UInt8(ascii: "x"):
                        var hex: [UInt8] = []
                        while hex.count < 2, i < bytes.count, let h = Optional(bytes[i]),
                              (h >= 0x30 && h <= 0x39) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66) {
                            hex.append(h); advance()
                        }
                        guard let v = UInt8(String(decoding: hex, as: UTF8.self), radix: 16) else { throw error("malformed \\x escape") }
                        out.append(v)
                    default: out.append(e)
                    }
                    continue
                }
                out.append(c)
                advance()
            }
        }
    }
}

/// A syntax or content error in an xl.cfg file, with its position.
public struct XLConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file; self.line = line; self.column = column; self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}
