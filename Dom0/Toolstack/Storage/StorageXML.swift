import DiskImage

/// `<permissions>` of a pool's target or a volume (libvirt's storage XML).
public struct StoragePermissions: Sendable, Equatable {
    public var mode: UInt32?
    public var owner: UInt32?
    public var group: UInt32?
    public var label: String?
    public init(mode: UInt32? = nil, owner: UInt32? = nil, group: UInt32? = nil, label: String? = nil) {
        self.mode = mode; self.owner = owner; self.group = group; self.label = label
    }
}

/// A storage pool's definition: what `pool-define` takes and `pool-dumpxml`
/// shows (its sizes are the pool's state, added when formatting).
public struct StoragePoolDefinition: Sendable, Equatable {
    /// The pool types Apus implements.
    public enum Kind: String, Sendable { case dir }
    public var kind: Kind
    public var name: String
    public var uuid: DomainUUID
    /// `<target><path>`: the directory holding the volumes.
    public var path: String
    public var permissions: StoragePermissions

    public init(kind: Kind = .dir, name: String, uuid: DomainUUID, path: String, permissions: StoragePermissions = StoragePermissions()) {
        self.kind = kind; self.name = name; self.uuid = uuid; self.path = path; self.permissions = permissions
    }
}

/// What a volume is asked to be (`vol-create`'s XML) or is (`vol-dumpxml`).
public struct StorageVolumeDefinition: Sendable, Equatable {
    public var name: String
    /// Virtual size in bytes.
    public var capacity: UInt64
    /// Bytes to allocate up front (raw: preallocated when it equals the capacity).
    public var allocation: UInt64?
    public var format: DiskFormat
    /// `<backingStore>`: the image this one is an overlay of (qcow2 only).
    public var backing: (path: String, format: DiskFormat)?
    public var permissions: StoragePermissions
    /// `<target><clusterSize>` for qcow2 (bytes).
    public var clusterSize: UInt64?

    public init(name: String, capacity: UInt64, allocation: UInt64? = nil, format: DiskFormat = .raw,
                backing: (path: String, format: DiskFormat)? = nil, permissions: StoragePermissions = StoragePermissions()) {
        self.name = name; self.capacity = capacity; self.allocation = allocation; self.format = format
        self.backing = backing; self.permissions = permissions
    }

    public static func == (a: StorageVolumeDefinition, b: StorageVolumeDefinition) -> Bool {
        a.name == b.name && a.capacity == b.capacity && a.allocation == b.allocation && a.format == b.format
            && a.backing?.path == b.backing?.path && a.backing?.format == b.backing?.format && a.permissions == b.permissions
            && a.clusterSize == b.clusterSize
    }
}

/// A volume's state as `vol-dumpxml`, `vol-info` and `domblkinfo` report it.
public struct StorageVolumeInfo: Sendable, Equatable {
    public var pool: String
    public var name: String
    /// The volume's key: its path, as libvirt's dir pools use.
    public var key: String
    public var path: String
    public var format: DiskFormat
    public var capacity: UInt64
    public var allocation: UInt64
    public var physical: UInt64
    public var permissions: StoragePermissions
    public var backing: (path: String, format: DiskFormat)?
    public var clusterSize: UInt64?
    public var qcow2Version: UInt32?
    /// atime, mtime, ctime (seconds, nanoseconds).
    public var times: [(Int, Int)] = []

    public static func == (a: StorageVolumeInfo, b: StorageVolumeInfo) -> Bool {
        a.pool == b.pool && a.name == b.name && a.key == b.key && a.path == b.path && a.format == b.format && a.capacity == b.capacity
            && a.allocation == b.allocation && a.physical == b.physical && a.backing?.path == b.backing?.path
    }
}

/// libvirt's storage pool and volume XML, in and out.
public enum StorageXML {
    // MARK: parsing

    static func document(_ text: String, what: String) throws(ToolstackError) -> XMLElement {
        do {
            return try XMLParser.parse(text)
        } catch {
            throw .xml("(\(what)_definition):\(error.line): \(error.message)")
        }
    }

    /// A pool document. Types other than dir are refused naming the type.
    public static func parsePool(_ text: String) throws(ToolstackError) -> StoragePoolDefinition {
        let root = try document(text, what: "storage_pool")
        guard root.name == "pool" else { throw .xml("unexpected root element <\(root.name)>, expecting <pool>") }
        guard let typeText = root.attribute("type") else { throw .xml("storage pool missing type attribute") }
        guard let kind = StoragePoolDefinition.Kind(rawValue: typeText) else {
            let known = ["dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd", "sheepdog",
                         "gluster", "zfs", "vstorage"]
            guard known.contains(typeText) else { throw .xml("unknown storage pool type \(typeText)") }
            throw .unsupported("storage pool type '\(typeText)' is not supported by Apus (only 'dir')")
        }
        guard let name = root.childText("name")?.trimmingXMLWhitespace(), !name.isEmpty else { throw .xml("missing pool source name element") }
        try checkName(name, what: "pool")
        let uuid: DomainUUID
        if let u = root.childText("uuid")?.trimmingXMLWhitespace() {
            guard let parsed = DomainUUID(u) else { throw .xml("malformed uuid element") }
            uuid = parsed
        } else {
            uuid = .random()
        }
        guard let target = root.element("target"), var path = target.childText("path")?.trimmingXMLWhitespace(), !path.isEmpty else {
            throw .xml("missing storage pool target path")
        }
        guard path.hasPrefix("/") else { throw .xml("storage pool target path '\(path)' must be absolute") }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        guard !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw .xml("storage pool target path '\(path)' must not contain '.' or '..'")
        }
        return StoragePoolDefinition(kind: kind, name: name, uuid: uuid, path: path, permissions: try permissions(target.element("permissions")))
    }

    /// A volume document (`vol-create`, `vol-create-from`).
    public static func parseVolume(_ text: String) throws(ToolstackError) -> StorageVolumeDefinition {
        let root = try document(text, what: "storage_volume")
        guard root.name == "volume" else { throw .xml("unexpected root element <\(root.name)>, expecting <volume>") }
        if let t = root.attribute("type"), t != "file" {
            throw .unsupported("volume type '\(t)' is not supported in a dir pool (file only)")
        }
        guard let name = root.childText("name")?.trimmingXMLWhitespace(), !name.isEmpty else { throw .xml("missing volume name element") }
        try checkName(name, what: "volume")
        guard let capacityElement = root.element("capacity") else { throw .xml("missing capacity element") }
        let capacity = try bytes(capacityElement, what: "capacity")
        let allocation = try root.element("allocation").map { e throws(ToolstackError) in try bytes(e, what: "allocation") }
        let target = root.element("target")
        var format = DiskFormat.raw
        if let f = target?.element("format")?.attribute("type") {
            format = try volumeFormat(f)
        }
        var def = StorageVolumeDefinition(name: name, capacity: capacity, allocation: allocation, format: format,
                                          permissions: try permissions(target?.element("permissions")))
        if let c = target?.element("clusterSize") {
            let size = try bytes(c, what: "clusterSize", defaultUnit: "B")
            guard size >= 512, size <= 2 << 20, size & (size - 1) == 0 else { throw .xml("cluster size \(size) must be a power of two from 512 bytes to 2 MiB") }
            def.clusterSize = size
        }
        if let backing = root.element("backingStore"), let path = backing.childText("path")?.trimmingXMLWhitespace(), !path.isEmpty {
            guard format == .qcow2 else { throw .unsupported("a backing store needs a qcow2 volume") }
            let backingFormat = try backing.element("format")?.attribute("type").map { t throws(ToolstackError) in try volumeFormat(t) }
            def.backing = (path, backingFormat ?? .raw)
        }
        return def
    }

    static func volumeFormat(_ name: String) throws(ToolstackError) -> DiskFormat {
        switch name {
        case "raw": return .raw
        case "qcow2": return .qcow2
        case "none", "auto", "cow", "qcow", "qed", "vmdk", "vpc", "vdi", "vhdx", "bochs", "cloop", "dmg", "iso", "ploop", "luks", "fat", "dir":
            throw .unsupported("volume format '\(name)' is not supported (raw or qcow2)")
        default:
            throw .xml("unknown volume format type \(name)")
        }
    }

    static func checkName(_ name: String, what: String) throws(ToolstackError) {
        guard !name.contains("/"), name != ".", name != "..", name.utf8.count <= 255,
              name.unicodeScalars.allSatisfy({ $0.value >= 0x20 }) else {
            throw .xml("\(what) name '\(name)' cannot contain '/' or control characters, or be '.' or '..'")
        }
    }

    static func permissions(_ e: XMLElement?) throws(ToolstackError) -> StoragePermissions {
        guard let e else { return StoragePermissions() }
        var p = StoragePermissions()
        if let m = e.childText("mode")?.trimmingXMLWhitespace() {
            guard let mode = UInt32(m, radix: 8), mode <= 0o777 else { throw .xml("malformed octal mode") }
            p.mode = mode
        }
        func id(_ name: String) throws(ToolstackError) -> UInt32? {
            guard let t = e.childText(name)?.trimmingXMLWhitespace() else { return nil }
            if t == "-1" { return nil }
            guard let v = UInt32(t) else { throw .xml("malformed \(name) element") }
            return v
        }
        p.owner = try id("owner")
        p.group = try id("group")
        p.label = e.childText("label")
        return p
    }

    /// A scaled integer in bytes (libvirt's virScaleInteger: b/bytes, the
    /// 1000-based KB..EB and the 1024-based k/KiB..E/EiB, any case).
    public static func bytes(_ e: XMLElement, what: String, defaultUnit: String = "bytes") throws(ToolstackError) -> UInt64 {
        guard let value = UInt64(e.text.trimmingXMLWhitespace()) else { throw .xml("malformed \(what) element") }
        let unit = e.attribute("unit") ?? defaultUnit
        guard let multiplier = scale(unit) else { throw .invalidArgument("unknown suffix '\(unit)'") }
        let (b, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow, b <= UInt64(Int64.max) else { throw .invalidArgument("value too large: \(value)\(unit)") }
        return b
    }

    static func scale(_ unit: String) -> UInt64? {
        let u = unit.lowercased()
        if u.isEmpty || u == "b" || u == "byte" || u == "bytes" { return 1 }
        guard let first = u.first, let power = "kmgtpe".firstIndex(of: first).map({ "kmgtpe".distance(from: "kmgtpe".startIndex, to: $0) + 1 }) else { return nil }
        let rest = u.dropFirst()
        let base: UInt64
        switch rest {
        case "", "ib": base = 1024
        case "b": base = 1000
        default: return nil
        }
        var m: UInt64 = 1
        for _ in 0..<power { m *= base }
        return m
    }

    // MARK: formatting

    /// `pool-dumpxml`: the definition with the pool's sizes (zero when inactive, as libvirt shows).
    public static func format(_ pool: StoragePoolDefinition, capacity: UInt64 = 0, allocation: UInt64 = 0, available: UInt64 = 0) -> String {
        var root = XMLElement("pool", attributes: [("type", pool.kind.rawValue)])
        root.children = [
            .element(text("name", pool.name)), .element(text("uuid", pool.uuid.description)),
            .element(text("capacity", String(capacity), [("unit", "bytes")])),
            .element(text("allocation", String(allocation), [("unit", "bytes")])),
            .element(text("available", String(available), [("unit", "bytes")])),
            .element(XMLElement("source")),
            .element(XMLElement("target", children: [.element(text("path", pool.path))]
                                + (pool.permissions == StoragePermissions() ? [] : [.element(permissionsElement(pool.permissions))]))),
        ]
        return write(root)
    }

    /// `vol-dumpxml`.
    public static func format(_ v: StorageVolumeInfo) -> String {
        var root = XMLElement("volume", attributes: [("type", "file")])
        var target = XMLElement("target", children: [.element(text("path", v.path)), .element(XMLElement("format", attributes: [("type", v.format.rawValue)])),
                                                      .element(permissionsElement(v.permissions))])
        if v.times.count == 3 {
            let names = ["atime", "mtime", "ctime"]
            target.children.append(.element(XMLElement("timestamps", children: zip(names, v.times).map { n, t in
                .element(text(n, "\(t.0).\(String(repeating: "0", count: max(0, 9 - String(t.1).count)))\(t.1)"))
            })))
        }
        if v.format == .qcow2 {
            if let version = v.qcow2Version { target.children.append(.element(text("compat", version >= 3 ? "1.1" : "0.10"))) }
            if let c = v.clusterSize { target.children.append(.element(text("clusterSize", String(c), [("unit", "B")]))) }
        }
        root.children = [
            .element(text("name", v.name)), .element(text("key", v.key)),
            .element(text("capacity", String(v.capacity), [("unit", "bytes")])),
            .element(text("allocation", String(v.allocation), [("unit", "bytes")])),
            .element(text("physical", String(v.physical), [("unit", "bytes")])),
            .element(target),
        ]
        if let b = v.backing {
            root.children.append(.element(XMLElement("backingStore", children: [.element(text("path", b.path)),
                                                                                 .element(XMLElement("format", attributes: [("type", b.format.rawValue)]))])))
        }
        return write(root)
    }

    /// What is known of the permissions (a definition's: what was asked for;
    /// an active pool's or a volume's: what the file has).
    static func permissionsElement(_ p: StoragePermissions) -> XMLElement {
        var e = XMLElement("permissions")
        if let m = p.mode { e.children.append(.element(text("mode", "0" + String(m, radix: 8)))) }
        if let o = p.owner { e.children.append(.element(text("owner", String(o)))) }
        if let g = p.group { e.children.append(.element(text("group", String(g)))) }
        if let l = p.label { e.children.append(.element(text("label", l))) }
        return e
    }

    static func text(_ name: String, _ value: String, _ attributes: [(name: String, value: String)] = []) -> XMLElement {
        XMLElement(name, attributes: attributes, children: [.text(value)])
    }

    /// libvirt writes an empty `<source>` as an open and a close tag.
    static func write(_ root: XMLElement) -> String {
        XMLWriter.write(root).replacingEmptySource()
    }
}

extension String {
    fileprivate func replacingEmptySource() -> String {
        var out = ""
        for line in split(separator: "\n", omittingEmptySubsequences: false) {
            if String(line).trimmingXMLWhitespace() == "<source/>" {
                let pad = line.prefix { $0 == " " }
                out += pad + "<source>\n" + pad + "</source>\n"
            } else {
                out += line + "\n"
            }
        }
        return String(out.dropLast())
    }
}
