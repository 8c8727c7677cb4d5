/// The part of GRUB's configuration language a boot loader needs to find
/// the entry GRUB would boot: `set`, `menuentry`, `submenu`, `if`/`elif`/
/// `else` over simple `[ ... ]` tests, `search --set`, `linux` and `initrd`,
/// with `$var` and `${var}` expansion and GRUB's quoting. Everything else
/// (insmod, load_video, functions, ...) is skipped. Bounded: the input's
/// size, nesting depth and entry count are limited.
public struct GrubConfig: Sendable {
    /// A boot entry: what its body would do, in order.
    public struct Entry: Equatable, Sendable {
        public var title: String
        public var id: String?
        /// Device settings in order: `search` (by UUID, label or file) and `set root=`.
        public var roots: [RootSetting] = []
        public var kernel: String?
        public var arguments: [String] = []
        public var initrds: [String] = []
    }

    public enum RootSetting: Equatable, Sendable {
        case uuid(String), label(String), file(String), device(String)
    }

    /// Entries and submenus at one level, in order.
    public indirect enum Item: Equatable, Sendable {
        case entry(Entry)
        case submenu(title: String, id: String?, items: [Item])
    }

    public var items: [Item] = []
    /// Variables set at the top level (`default`, `root`, ...).
    public var variables: [String: String] = [:]
    /// `search`/`set root` at the top level before the entries.
    public var roots: [RootSetting] = []

    static let maximumBytes = 1 << 20
    static let maximumDepth = 16
    static let maximumItems = 4096

    public static func parse(_ text: String) throws(BootError) -> GrubConfig {
        guard text.utf8.count <= maximumBytes else { throw BootError("grub.cfg is over \(maximumBytes) bytes") }
        var lexer = Lexer(Array(text.utf8))
        var config = GrubConfig()
        var interpreter = Interpreter()
        let statements = try lexer.statements(until: [], depth: 0)
        // What GRUB 2 itself defines, so the feature tests Debian's grub.cfg makes come out as on a PC.
        var vars: [String: String] = ["feature_menuentry_id": "y", "feature_platform_search_hint": "y", "feature_all_video_module": "y",
                                      "feature_default_font_path": "y", "feature_timeout_style": "y", "grub_platform": "pc", "grub_cpu": "i386"]
        config.items = try interpreter.run(statements, vars: &vars, inEntry: nil, depth: 0).items
        config.variables = vars
        config.roots = interpreter.topRoots
        return config
    }

    /// The entry `default` chooses (GRUB's rules: a number, a `N>M` path into
    /// submenus, or an entry's title or id; the first entry otherwise).
    public func defaultEntry() -> Entry? {
        let choice = variables["default"] ?? "0"
        if let e = select(path: choice.split(separator: ">").map { String($0) }, in: items) { return e }
        return firstEntry(items)
    }

    private func select(path: [String], in items: [Item]) -> Entry? {
        guard let head = path.first else { return nil }
        let matched: Item?
        if let n = Int(head) {
            matched = n >= 0 && n < items.count ? items[n] : nil
        } else {
            matched = items.first { item in
                switch item {
                case .entry(let e): return e.title == head || e.id == head
                case .submenu(let t, let id, _): return t == head || id == head
                }
            }
        }
        switch matched {
        case .entry(let e)?: return path.count == 1 ? e : nil
        case .submenu(_, _, let sub)?: return path.count > 1 ? select(path: Array(path.dropFirst()), in: sub) : firstEntry(sub)
        case nil: return nil
        }
    }

    private func firstEntry(_ items: [Item]) -> Entry? {
        for i in items {
            switch i {
            case .entry(let e): return e
            case .submenu(_, _, let sub): if let e = firstEntry(sub) { return e }
            }
        }
        return nil
    }
}

// MARK: lexing

/// A word with the parts that came from quotes marked, so expansion knows
/// what to split (GRUB does not split the results of expansion in quotes).
struct Word: Equatable {
    enum Part: Equatable { case literal(String), expandable(String) }
    var parts: [Part]
}

indirect enum Statement {
    case command([Word])
    case block(keyword: String, words: [Word], body: [Statement])        // menuentry, submenu, function
    case conditional(branches: [(condition: [Word], body: [Statement])], otherwise: [Statement])
}

struct Lexer {
    let b: [UInt8]
    var i = 0
    init(_ b: [UInt8]) { self.b = b }

    /// Statements until one of `terminators` starts a command (returned consumed but not included).
    mutating func statements(until terminators: Set<String>, depth: Int) throws(BootError) -> [Statement] {
        guard depth <= GrubConfig.maximumDepth else { throw BootError("grub.cfg nests deeper than \(GrubConfig.maximumDepth)") }
        var out: [Statement] = []
        while true {
            skipSpace(newlines: true)
            if i >= b.count {
                if terminators.isEmpty { return out }
                throw BootError("grub.cfg ends inside a block (expected \(terminators.sorted().joined(separator: " or ")))")
            }
            if b[i] == UInt8(ascii: "}") {
                if terminators.contains("}") { i += 1; return out }
                throw BootError("grub.cfg: unexpected '}'")
            }
            if b[i] == UInt8(ascii: "{") {
                // A group `{ ... }` (or the body of a command that takes none): its statements run in place.
                i += 1
                out += try statements(until: ["}"], depth: depth + 1)
                continue
            }
            let words = try commandWords()
            guard let first = words.first else { continue }
            let name = first.plain
            if let name, terminators.contains(name) {
                lastTerminator = name
                pendingWords = words
                return out
            }
            switch name {
            case "menuentry", "submenu", "function":
                skipSpace(newlines: true)
                guard i < b.count, b[i] == UInt8(ascii: "{") else { throw BootError("grub.cfg: \(name ?? "") without '{'") }
                i += 1
                let body = try statements(until: ["}"], depth: depth + 1)
                out.append(.block(keyword: name ?? "", words: Array(words.dropFirst()), body: body))
            case "if":
                var branches: [(condition: [Word], body: [Statement])] = []
                var condition = Array(words.dropFirst())
                var otherwise: [Statement] = []
                while true {
                    skipSpace(newlines: true)
                    guard try commandWords().first?.plain == "then" else { throw BootError("grub.cfg: 'if' without 'then'") }
                    let body = try statements(until: ["elif", "else", "fi"], depth: depth + 1)
                    branches.append((condition, body))
                    if lastTerminator == "elif" {
                        condition = Array(pendingWords.dropFirst())
                        continue
                    }
                    if lastTerminator == "else" { otherwise = try statements(until: ["fi"], depth: depth + 1) }
                    break
                }
                out.append(.conditional(branches: branches, otherwise: otherwise))
            default:
                out.append(.command(words))
            }
            if out.count > GrubConfig.maximumItems * 4 { throw BootError("grub.cfg has too many statements") }
        }
    }

    var lastTerminator: String?
    var pendingWords: [Word] = []

    /// The words of one command, up to a newline, ';' or a block brace. The
    /// keywords that open or close a body (`then`, `else`, `fi`, `do`,
    /// `done`) are commands of their own, whatever follows on the line.
    private mutating func commandWords() throws(BootError) -> [Word] {
        var words: [Word] = []
        while true {
            skipSpace(newlines: false)
            guard i < b.count else { break }
            let c = b[i]
            if c == UInt8(ascii: "\n") || c == UInt8(ascii: ";") { i += 1; break }
            if c == UInt8(ascii: "#") {
                while i < b.count, b[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            }
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "}") { break }
            words.append(try word())
            if words.count == 1, let w = words[0].plain, ["then", "else", "fi", "do", "done"].contains(w) { break }
            if words.count > 4096 { throw BootError("grub.cfg: a command of over 4096 words") }
        }
        return words
    }

    private mutating func word() throws(BootError) -> Word {
        var parts: [Word.Part] = []
        var current: [UInt8] = []
        func flush(_ expandable: Bool) {
            guard !current.isEmpty else { return }
            let s = String(decoding: current, as: UTF8.self)
            parts.append(expandable ? .expandable(s) : .literal(s))
            current = []
        }
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\n") || c == UInt8(ascii: ";")
                || c == UInt8(ascii: "{") || c == UInt8(ascii: "}") { break }
            if c == UInt8(ascii: "'") {
                flush(true)
                i += 1
                while i < b.count, b[i] != UInt8(ascii: "'") { current.append(b[i]); i += 1 }
                guard i < b.count else { throw BootError("grub.cfg: unterminated single quote") }
                i += 1
                flush(false)
                if parts.isEmpty { parts.append(.literal("")) }
                continue
            }
            if c == UInt8(ascii: "\"") {
                flush(true)
                i += 1
                while i < b.count, b[i] != UInt8(ascii: "\"") {
                    if b[i] == UInt8(ascii: "\\"), i + 1 < b.count { i += 1 }
                    current.append(b[i]); i += 1
                }
                guard i < b.count else { throw BootError("grub.cfg: unterminated double quote") }
                i += 1
                // Expanded, but as one word.
                let s = String(decoding: current, as: UTF8.self)
                parts.append(.expandable("\u{1}" + s))
                current = []
                continue
            }
            if c == UInt8(ascii: "\\"), i + 1 < b.count {
                if b[i + 1] == UInt8(ascii: "\n") { i += 2; continue }
                current.append(b[i + 1]); i += 2
                continue
            }
            current.append(c)
            i += 1
        }
        flush(true)
        return Word(parts: parts)
    }

    private mutating func skipSpace(newlines: Bool) {
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\\"), i + 1 < b.count, b[i + 1] == UInt8(ascii: "\n") {
                i += 2 // a line continued
            } else if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") || (newlines && (c == UInt8(ascii: "\n") || c == UInt8(ascii: ";"))) {
                i += 1
            } else if newlines && c == UInt8(ascii: "#") {
                while i < b.count, b[i] != UInt8(ascii: "\n") { i += 1 }
            } else {
                return
            }
        }
    }
}

extension Word {
    /// The word's text when it has no expansions.
    var plain: String? {
        var s = ""
        for p in parts {
            switch p {
            case .literal(let t): s += t
            case .expandable(let t):
                let t = t.hasPrefix("\u{1}") ? String(t.dropFirst()) : t
                if t.contains("$") { return nil }
                s += t
            }
        }
        return s
    }

    /// The word with variables expanded.
    func expand(_ vars: [String: String]) -> String {
        var s = ""
        for p in parts {
            switch p {
            case .literal(let t): s += t
            case .expandable(let t): s += Word.substitute(t.hasPrefix("\u{1}") ? String(t.dropFirst()) : t, vars)
            }
        }
        return s
    }

    static func substitute(_ t: String, _ vars: [String: String]) -> String {
        var out = ""
        let chars = Array(t)
        var k = 0
        func isName(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" }
        while k < chars.count {
            guard chars[k] == "$", k + 1 < chars.count else { out.append(chars[k]); k += 1; continue }
            if chars[k + 1] == "{", let close = chars[(k + 2)...].firstIndex(of: "}") {
                out += vars[String(chars[(k + 2)..<close])] ?? ""
                k = close + 1
            } else if isName(chars[k + 1]) {
                var e = k + 1
                while e < chars.count, isName(chars[e]) { e += 1 }
                out += vars[String(chars[(k + 1)..<e])] ?? ""
                k = e
            } else {
                out.append("$"); k += 1
            }
        }
        return out
    }
}

// MARK: running

struct Interpreter {
    var topRoots: [GrubConfig.RootSetting] = []
    var itemCount = 0

    struct Level { var items: [GrubConfig.Item] = [] }

    mutating func run(_ statements: [Statement], vars: inout [String: String], inEntry entry: EntryBox?, depth: Int) throws(BootError) -> Level {
        var level = Level()
        for s in statements {
            switch s {
            case .command(let words):
                let args = words.map { $0.expand(vars) }
                guard let name = args.first else { continue }
                // `name=value` assigns as `set` does.
                if args.count == 1, let eq = name.firstIndex(of: "="), eq != name.startIndex,
                   name[..<eq].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                    vars[String(name[..<eq])] = String(name[name.index(after: eq)...])
                    continue
                }
                switch name {
                case "set":
                    for a in args.dropFirst() {
                        guard let eq = a.firstIndex(of: "=") else { continue }
                        let key = String(a[..<eq]), value = String(a[a.index(after: eq)...])
                        vars[key] = value
                        if key == "root" { addRoot(.device(Self.device(value)), entry) }
                    }
                case "search", "search.fs_uuid", "search.fs_label", "search.file":
                    if let r = Self.search(name, Array(args.dropFirst())) {
                        addRoot(r.setting, entry)
                        if let v = r.variable, v != "root" { vars[v] = "" }
                    }
                case "linux", "linux16", "linuxefi":
                    entry?.value.kernel = args.count > 1 ? args[1] : nil
                    entry?.value.arguments = Array(args.dropFirst(2))
                case "initrd", "initrd16", "initrdefi":
                    entry?.value.initrds = Array(args.dropFirst())
                default:
                    break
                }
            case .conditional(let branches, let otherwise):
                var taken: [Statement] = otherwise
                for b in branches where Self.test(b.condition.map { $0.expand(vars) }) {
                    taken = b.body
                    break
                }
                let inner = try run(taken, vars: &vars, inEntry: entry, depth: depth + 1)
                level.items += inner.items
            case .block(let keyword, let words, let body):
                guard entry == nil else { continue } // entries do not nest inside entries
                let args = words.map { $0.expand(vars) }
                let title = args.first ?? ""
                var id: String?
                if let k = args.firstIndex(of: "--id"), k + 1 < args.count { id = args[k + 1] }
                itemCount += 1
                guard itemCount <= GrubConfig.maximumItems else { throw BootError("grub.cfg has over \(GrubConfig.maximumItems) entries") }
                switch keyword {
                case "menuentry":
                    let box = EntryBox(GrubConfig.Entry(title: title, id: id))
                    var local = vars // an entry's body runs in its own scope
                    _ = try run(body, vars: &local, inEntry: box, depth: depth + 1)
                    level.items.append(.entry(box.value))
                case "submenu":
                    var local = vars
                    let inner = try run(body, vars: &local, inEntry: nil, depth: depth + 1)
                    level.items.append(.submenu(title: title, id: id, items: inner.items))
                default:
                    break // functions are never called by what Apus reads
                }
            }
        }
        return level
    }

    private mutating func addRoot(_ r: GrubConfig.RootSetting, _ entry: EntryBox?) {
        if let entry { entry.value.roots.append(r) } else { topRoots.append(r) }
    }

    /// "(hd0,gpt2)" or "hd0,gpt2" as "hd0,gpt2".
    static func device(_ s: String) -> String {
        s.hasPrefix("(") && s.hasSuffix(")") ? String(s.dropFirst().dropLast()) : s
    }

    /// `search [--fs-uuid|--label|--file] [--set[=VAR]] [--no-floppy] [--hint...] NAME`.
    static func search(_ command: String, _ args: [String]) -> (setting: GrubConfig.RootSetting, variable: String?)? {
        var kind = command == "search.fs_uuid" ? "u" : command == "search.fs_label" ? "l" : "f"
        var variable: String? = nil
        var names: [String] = []
        var k = 0
        while k < args.count {
            let a = args[k]
            switch a {
            case "--fs-uuid", "-u": kind = "u"
            case "--label", "-l": kind = "l"
            case "--file", "-f": kind = "f"
            case "--set", "-s":
                // `--set VAR` or `--set` alone (root).
                if k + 1 < args.count, !args[k + 1].hasPrefix("-"), k + 2 < args.count { variable = args[k + 1]; k += 1 } else { variable = "root" }
            default:
                if a.hasPrefix("--set=") { variable = String(a.dropFirst(6)) }
                else if a.hasPrefix("--hint") { if !a.contains("="), k + 1 < args.count { k += 1 } }
                else if !a.hasPrefix("-") { names.append(a) }
            }
            k += 1
        }
        guard let name = names.first, variable == "root" || variable == nil else { return nil }
        switch kind {
        case "u": return (.uuid(name.lowercased()), "root")
        case "l": return (.label(name), "root")
        default: return (.file(name), "root")
        }
    }

    /// `[ ... ]` tests Debian's grub.cfg uses; anything else is false.
    static func test(_ words: [String]) -> Bool {
        var w = words
        guard w.first == "[" || w.first == "test" else { return false }
        if w.first == "[" { guard w.last == "]" else { return false }; w = Array(w.dropFirst().dropLast()) } else { w = Array(w.dropFirst()) }
        switch w.count {
        case 1: return !w[0].isEmpty
        case 2:
            switch w[0] {
            case "-n": return !w[1].isEmpty
            case "-z": return w[1].isEmpty
            case "!": return w[1].isEmpty
            default: return false // -s, -f, -e: files GRUB would look at; not here
            }
        case 3:
            switch w[1] {
            case "=", "==": return w[0] == w[2]
            case "!=": return w[0] != w[2]
            default: return false
            }
        default: return false
        }
    }
}

/// The entry being filled in by its body's statements.
final class EntryBox {
    var value: GrubConfig.Entry
    init(_ v: GrubConfig.Entry) { value = v }
}
