/// A parsed XML element: name, attributes in document order, children.
public struct XMLElement: Equatable, Sendable {
    public var name: String
    public var attributes: [(name: String, value: String)]
    public var children: [XMLNode]
    /// Where the element started (for messages).
    public var line: Int
    public var column: Int
    /// The element's bytes in the parsed document (for keeping an element
    /// exactly as written: custom metadata). Not part of equality.
    public var span: Range<Int>?

    public init(_ name: String, attributes: [(name: String, value: String)] = [], children: [XMLNode] = [], line: Int = 0, column: Int = 0) {
        self.name = name; self.attributes = attributes; self.children = children; self.line = line; self.column = column
    }

    public static func == (a: XMLElement, b: XMLElement) -> Bool {
        a.name == b.name && a.children == b.children && a.attributes.count == b.attributes.count
            && zip(a.attributes, b.attributes).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// The element without whitespace-only text between child elements (the
    /// layout a writer adds), recursively, and without source positions: what
    /// stays equal across a write and a re-read.
    public var normalized: XMLElement {
        var e = XMLElement(name, attributes: attributes)
        let hasElements = children.contains { if case .element = $0 { return true }; return false }
        for c in children {
            switch c {
            case .element(let child): e.children.append(.element(child.normalized))
            case .text(let t) where hasElements && t.trimmingXMLWhitespace().isEmpty: continue
            default: e.children.append(c)
            }
        }
        return e
    }

    /// The value of attribute `name`.
    public func attribute(_ name: String) -> String? { attributes.first { $0.name == name }?.value }

    /// Child elements, optionally only those named `name`.
    public func elements(_ name: String? = nil) -> [XMLElement] {
        children.compactMap { if case .element(let e) = $0, name == nil || e.name == name { return e }; return nil }
    }

    /// The first child element named `name`.
    public func element(_ name: String) -> XMLElement? { elements(name).first }

    /// The concatenated text content of this element (children's text, not descendants').
    public var text: String {
        children.map { if case .text(let t) = $0 { return t }; return "" }.joined()
    }

    /// Trimmed text of child `name`, if present.
    public func childText(_ name: String) -> String? {
        element(name).map { $0.text.trimmingXMLWhitespace() }
    }
}

public indirect enum XMLNode: Equatable, Sendable {
    case element(XMLElement)
    case text(String)
    /// Markup written out verbatim (an element kept byte for byte).
    case raw(String)
}

/// A parse error with its position, phrased like libxml2's (which libvirt users know).
public struct XMLParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public let message: String
    public var description: String { "line \(line), column \(column): \(message)" }
}

extension String {
    func trimmingXMLWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}

/// A small, strict XML 1.0 parser for configuration documents: elements,
/// attributes, text, CDATA, comments, processing instructions and the five
/// predefined plus numeric character references. DTDs are refused (no
/// entity expansion). Documents are bounded in size and depth.
public struct XMLParser {
    public static let maxBytes = 4 << 20
    public static let maxDepth = 64
    /// Attributes of one element: configuration elements have a handful;
    /// a bound keeps a hostile document from costing more than its bytes.
    public static let maxAttributes = 1024

    let bytes: [UInt8]
    var i = 0
    var line = 1
    var column = 1

    public static func parse(_ text: String) throws(XMLParseError) -> XMLElement {
        var p = XMLParser(bytes: Array(text.utf8))
        return try p.document()
    }

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ message: String) -> XMLParseError { XMLParseError(line: line, column: column, message: message) }

    var atEnd: Bool { i >= bytes.count }
    func peek(_ offset: Int = 0) -> UInt8? { i + offset < bytes.count ? bytes[i + offset] : nil }

    mutating func advance() {
        guard i < bytes.count else { return }
        if bytes[i] == UInt8(ascii: "\n") { line += 1; column = 1 }
        // Count columns in characters, not UTF-8 continuation bytes.
        else if bytes[i] & 0xC0 != 0x80 { column += 1 }
        i += 1
    }

    func starts(with s: String) -> Bool {
        let u = Array(s.utf8)
        return i + u.count <= bytes.count && Array(bytes[i..<(i + u.count)]) == u
    }

    mutating func expect(_ s: String) throws(XMLParseError) {
        guard starts(with: s) else { throw error("expected '\(s)'") }
        for _ in s.utf8 { advance() }
    }

    mutating func skipWhitespace() {
        while let c = peek(), c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { advance() }
    }

    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c == UInt8(ascii: ":") || c >= 0x80
    }
    static func isName(_ c: UInt8) -> Bool {
        isNameStart(c) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
    }

    mutating func name() throws(XMLParseError) -> String {
        guard let c = peek(), Self.isNameStart(c) else { throw error("expected a name") }
        let start = i
        while let c = peek(), Self.isName(c) { advance() }
        return String(decoding: bytes[start..<i], as: UTF8.self)
    }

    mutating func document() throws(XMLParseError) -> XMLElement {
        guard bytes.count <= Self.maxBytes else { throw error("document larger than \(Self.maxBytes) bytes") }
        if starts(with: "\u{FEFF}") { for _ in 0..<3 { advance() } }
        try misc()
        if starts(with: "<!DOCTYPE") { throw error("DOCTYPE is not allowed") }
        guard peek() == UInt8(ascii: "<") else {
            throw atEnd ? error("Document is empty") : error("Start tag expected, '<' not found")
        }
        let root = try element(depth: 0)
        try misc()
        guard atEnd else { throw error("Extra content at the end of the document") }
        return root
    }

    /// Comments, processing instructions and whitespace outside the root.
    mutating func misc() throws(XMLParseError) {
        while true {
            skipWhitespace()
            if starts(with: "<?") { try skip(until: "?>", what: "processing instruction") }
            else if starts(with: "<!--") { try skip(until: "-->", what: "comment") }
            else { return }
        }
    }

    mutating func skip(until terminator: String, what: String) throws(XMLParseError) {
        while !atEnd && !starts(with: terminator) { advance() }
        guard !atEnd else { throw error("unterminated \(what)") }
        for _ in terminator.utf8 { advance() }
    }

    mutating func element(depth: Int) throws(XMLParseError) -> XMLElement {
        guard depth < Self.maxDepth else { throw error("elements nested deeper than \(Self.maxDepth)") }
        let (l, c) = (line, column)
        let start = i
        try expect("<")
        let tag = try name()
        var attributes: [(name: String, value: String)] = []
        var names: Set<String> = []
        while true {
            let hadSpace = peek().map { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D } ?? false
            skipWhitespace()
            if starts(with: "/>") {
                try expect("/>")
                var e = XMLElement(tag, attributes: attributes, line: l, column: c)
                e.span = start..<i
                return e
            }
            if peek() == UInt8(ascii: ">") { advance(); break }
            guard hadSpace else { throw error("attributes construct error") }
            let attr = try name()
            skipWhitespace()
            try expect("=")
            skipWhitespace()
            guard let q = peek(), q == UInt8(ascii: "\"") || q == UInt8(ascii: "'") else {
                throw error("AttValue: \" or ' expected")
            }
            advance()
            var value = ""
            while let ch = peek(), ch != q {
                if ch == UInt8(ascii: "<") { throw error("Unescaped '<' not allowed in attributes values") }
                if ch == UInt8(ascii: "&") { value += try reference() } else { value += try character() }
            }
            guard !atEnd else { throw error("AttValue: ' expected") }
            advance()
            guard names.insert(attr).inserted else { throw error("Attribute \(attr) redefined") }
            guard attributes.count < Self.maxAttributes else { throw error("more than \(Self.maxAttributes) attributes in element \(tag)") }
            attributes.append((attr, value))
        }
        var children: [XMLNode] = []
        var text = ""
        func flush() { if !text.isEmpty { children.append(.text(text)); text = "" } }
        while true {
            guard !atEnd else { throw error("Premature end of data in tag \(tag) line \(l)") }
            if starts(with: "</") {
                try expect("</")
                let end = try name()
                guard end == tag else { throw error("Opening and ending tag mismatch: \(tag) line \(l) and \(end)") }
                skipWhitespace()
                try expect(">")
                flush()
                var e = XMLElement(tag, attributes: attributes, children: children, line: l, column: c)
                e.span = start..<i
                return e
            } else if starts(with: "<!--") {
                try skip(until: "-->", what: "comment")
            } else if starts(with: "<![CDATA[") {
                try expect("<![CDATA[")
                // CDATA skips markup, not the rules on characters.
                while !atEnd && !starts(with: "]]>") { text += try character() }
                guard !atEnd else { throw error("unterminated CDATA section") }
                try expect("]]>")
            } else if starts(with: "<?") {
                try skip(until: "?>", what: "processing instruction")
            } else if peek() == UInt8(ascii: "<") {
                flush()
                children.append(.element(try element(depth: depth + 1)))
            } else if peek() == UInt8(ascii: "&") {
                text += try reference()
            } else {
                text += try character()
            }
        }
    }

    /// One UTF-8 character (validated).
    mutating func character() throws(XMLParseError) -> String {
        guard let c = peek() else { throw error("unexpected end") }
        let length = c < 0x80 ? 1 : c >> 5 == 0x6 ? 2 : c >> 4 == 0xE ? 3 : c >> 3 == 0x1E ? 4 : 0
        guard length > 0, i + length <= bytes.count else { throw error("Input is not proper UTF-8") }
        let slice = Array(bytes[i..<(i + length)])
        guard let s = String(validating: slice, as: UTF8.self) else { throw error("Input is not proper UTF-8") }
        if length == 1 && c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D { throw error("invalid character 0x\(String(c, radix: 16))") }
        for _ in 0..<length { advance() }
        return s
    }

    mutating func reference() throws(XMLParseError) -> String {
        try expect("&")
        if peek() == UInt8(ascii: "#") {
            advance()
            var radix = 10
            if peek() == UInt8(ascii: "x") { radix = 16; advance() }
            let start = i
            while let c = peek(), c != UInt8(ascii: ";"), i - start < 8 { advance() }
            let digits = String(decoding: bytes[start..<i], as: UTF8.self)
            try expect(";")
            guard let v = UInt32(digits, radix: radix), let u = Unicode.Scalar(v), v >= 0x20 || v == 9 || v == 10 || v == 13 else {
                throw error("invalid character reference &#\(radix == 16 ? "x" : "")\(digits);")
            }
            return String(Character(u))
        }
        let entity = try name()
        try expect(";")
        switch entity {
        case "lt": return "<"
        case "gt": return ">"
        case "amp": return "&"
        case "apos": return "'"
        case "quot": return "\""
        default: throw error("Entity '\(entity)' not defined")
        }
    }
}

/// Writes XML with two-space indentation, as libvirt's dumpxml does.
public enum XMLWriter {
    public static func escape(_ s: String, attribute: Bool = false) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"" where attribute: out += "&quot;"
            case "'" where attribute: out += "&apos;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func write(child e: XMLElement, indent: Int) -> String { write(e, indent: indent) }

    public static func write(_ e: XMLElement, indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent)
        var s = pad + "<" + e.name
        for a in e.attributes { s += " \(a.name)='\(escape(a.value, attribute: true))'" }
        let nested = e.children.filter { if case .text = $0 { return false }; return true }
        let text = e.text
        if nested.isEmpty {
            if text.isEmpty { return s + "/>\n" }
            return s + ">" + escape(text) + "</\(e.name)>\n"
        }
        s += ">\n"
        for child in nested {
            switch child {
            case .element(let c): s += write(child: c, indent: indent + 1)
            case .raw(let markup): s += pad + "  " + markup + "\n"
            case .text: break
            }
        }
        return s + pad + "</\(e.name)>\n"
    }
}
