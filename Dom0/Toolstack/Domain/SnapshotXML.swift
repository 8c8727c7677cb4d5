import ApusSys

/// A domain snapshot as libvirt describes it (`<domainsnapshot>`, see
/// libvirt's formatsnapshot.rst): what the client asks for on create, and
/// what apusd keeps and shows (snapshot-dumpxml) afterwards.
public struct DomainSnapshot: Equatable, Sendable {
    /// The domain's state when the snapshot was taken (libvirt's names).
    public enum State: String, Sendable {
        case running, paused, shutoff
        case diskSnapshot = "disk-snapshot"
    }
    /// How one disk is kept: in its qcow2 file, not at all.
    public enum DiskMode: String, Sendable { case `internal`, no, external }
    public struct Disk: Equatable, Sendable {
        public var target: String
        public var mode: DiskMode
        /// An external snapshot's new image (the overlay the disk writes to afterwards).
        public var source: String?
        public init(target: String, mode: DiskMode, source: String? = nil) { self.target = target; self.mode = mode; self.source = source }
    }

    public var name: String
    public var description: String?
    public var state: State = .shutoff
    public var parent: String?
    public var creationTime: Int64 = 0
    /// Whether the memory state was kept (a running or paused domain).
    public var memory = false
    public var disks: [Disk] = []
    /// The domain's definition when it was taken.
    public var domain: DomainDefinition?

    public init(name: String) { self.name = name }

    /// Longest snapshot name (a file name in apusd's state directory).
    public static let maximumNameBytes = 200

    /// A name apusd keeps as a file name and passes to apus-blkback.
    public static func checkName(_ name: String) throws(ToolstackError) {
        guard !name.isEmpty, name.utf8.count <= maximumNameBytes, name != ".", name != "..",
              !name.unicodeScalars.contains(where: { $0 == "/" || $0.value < 0x20 || $0.value == 0x7F }) else {
            throw .invalidArgument("invalid snapshot name '\(name)': 1 to \(maximumNameBytes) bytes, no '/' or control characters")
        }
    }

    /// What a client asks for in SNAPSHOT_CREATE_XML: name, description,
    /// memory and per-disk modes (a missing name is chosen by the caller).
    public static func parseRequest(_ text: String) throws(ToolstackError) -> (snapshot: DomainSnapshot, memorySpecified: DiskMode?) {
        let root: XMLElement
        do {
            root = try XMLParser.parse(text)
        } catch {
            throw .xml("snapshot XML: \(error)")
        }
        guard root.name == "domainsnapshot" else { throw .xml("expected <domainsnapshot>, got <\(root.name)>") }
        var s = DomainSnapshot(name: root.childText("name") ?? "")
        if !s.name.isEmpty { try checkName(s.name) }
        s.description = root.childText("description")
        var memory: DiskMode?
        if let m = root.element("memory") {
            switch m.attribute("snapshot") {
            case "internal"?: memory = .internal
            case "no"?: memory = .no
            case "external"?: memory = .external
            case let other?: throw .xml("unknown memory snapshot mode '\(other)'")
            case nil: break
            }
        }
        for d in root.element("disks")?.elements("disk") ?? [] {
            guard let target = d.attribute("name") else { throw .xml("a snapshot <disk> needs a name") }
            let modeName = d.attribute("snapshot") ?? (d.element("source") != nil ? "external" : "internal")
            guard let mode = DiskMode(rawValue: modeName) else { throw .xml("unknown snapshot mode '\(modeName)' for disk \(target)") }
            let source = d.element("source").flatMap { $0.attribute("file") }
            if let source, !source.hasPrefix("/") { throw .xml("snapshot file '\(source)' for disk \(target) must be an absolute path") }
            s.disks.append(Disk(target: target, mode: mode, source: source))
        }
        return (s, memory)
    }

    /// The snapshot as snapshot-dumpxml shows it (and as apusd stores it,
    /// with `current`).
    public func format(current: Bool? = nil) -> String {
        var out = "<domainsnapshot>\n"
        out += "  <name>\(XMLWriter.escape(name))</name>\n"
        if let description { out += "  <description>\(XMLWriter.escape(description))</description>\n" }
        out += "  <state>\(state.rawValue)</state>\n"
        if let parent { out += "  <parent>\n    <name>\(XMLWriter.escape(parent))</name>\n  </parent>\n" }
        out += "  <creationTime>\(creationTime)</creationTime>\n"
        out += "  <memory snapshot='\(memory ? "internal" : "no")'/>\n"
        if !disks.isEmpty {
            out += "  <disks>\n"
            for d in disks {
                let name = "name='\(XMLWriter.escape(d.target, attribute: true))' snapshot='\(d.mode.rawValue)'"
                if let source = d.source {
                    out += "    <disk \(name) type='file'>\n      <driver type='qcow2'/>\n"
                    out += "      <source file='\(XMLWriter.escape(source, attribute: true))'/>\n    </disk>\n"
                } else {
                    out += "    <disk \(name)/>\n"
                }
            }
            out += "  </disks>\n"
        }
        if let domain {
            for line in DomainXML.format(domain).split(separator: "\n", omittingEmptySubsequences: true) { out += "  " + line + "\n" }
        }
        if let current { out += "  <active>\(current ? 1 : 0)</active>\n" }
        return out + "</domainsnapshot>\n"
    }

    /// Reads what ``format(current:)`` wrote (apusd's own metadata).
    public static func parseStored(_ text: String) throws(ToolstackError) -> (snapshot: DomainSnapshot, current: Bool) {
        let root: XMLElement
        do {
            root = try XMLParser.parse(text)
        } catch {
            throw .xml("snapshot metadata: \(error)")
        }
        guard root.name == "domainsnapshot", let name = root.childText("name") else { throw .xml("snapshot metadata without a name") }
        var s = DomainSnapshot(name: name)
        s.description = root.childText("description")
        s.state = root.childText("state").flatMap(State.init(rawValue:)) ?? .shutoff
        s.parent = root.element("parent")?.childText("name")
        s.creationTime = root.childText("creationTime").flatMap { Int64($0) } ?? 0
        s.memory = root.element("memory")?.attribute("snapshot") == "internal"
        for d in root.element("disks")?.elements("disk") ?? [] {
            if let t = d.attribute("name"), let m = d.attribute("snapshot").flatMap(DiskMode.init(rawValue:)) {
                s.disks.append(Disk(target: t, mode: m, source: d.element("source")?.attribute("file")))
            }
        }
        if let dom = root.element("domain") { s.domain = try DomainXML.parse(dom, strict: false) }
        return (s, root.childText("active") == "1")
    }
}
