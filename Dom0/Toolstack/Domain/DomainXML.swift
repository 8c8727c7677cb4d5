/// libvirt domain XML in and out. Parsing validates with libvirt-like
/// messages; formatting writes everything Apus understood, so `dumpxml`
/// returns what was defined (normalized, as libvirt does).
public enum DomainXML {
    /// Parses and validates a domain document. With `strict` (virsh
    /// `--validate`), elements Apus does not know are errors; otherwise they
    /// are ignored, as libvirt ignores what its schema does not model.
    /// `defaultUUID` is used when the document has no <uuid> (so a file
    /// re-read against an existing domain keeps its UUID and default MACs).
    public static func parse(_ text: String, strict: Bool = false, defaultUUID: DomainUUID? = nil) throws(ToolstackError) -> DomainDefinition {
        try parse(try document(text), strict: strict, defaultUUID: defaultUUID)
    }

    /// The XML document of a domain definition, with libvirt's error wording.
    public static func document(_ text: String) throws(ToolstackError) -> XMLElement {
        do {
            return try XMLParser.parse(text)
        } catch {
            throw .xml("(domain_definition):\(error.line): \(error.message)")
        }
    }

    /// Validates an already parsed document (see ``parse(_:strict:defaultUUID:)``).
    public static func parse(_ root: XMLElement, strict: Bool = false, defaultUUID: DomainUUID? = nil) throws(ToolstackError) -> DomainDefinition {
        guard root.name == "domain" else { throw .xml("unexpected root element <\(root.name)>, expecting <domain>") }
        if strict { try checkKnown(root) }

        let type = root.attribute("type") ?? ""
        guard ["kvm", "apus", "qemu"].contains(type) else {
            throw type.isEmpty ? .xml("missing domain type attribute") : .unsupported("domain type '\(type)' is not supported by Apus (use 'kvm')")
        }
        guard let name = root.childText("name"), !name.isEmpty else { throw .xml("missing name information") }
        try validateName(name)
        var uuid = defaultUUID ?? DomainUUID.random()
        if let u = root.childText("uuid") {
            guard let parsed = DomainUUID(u) else { throw .xml("malformed uuid element") }
            guard parsed != .zero else { throw .xml("the all-zero UUID belongs to Domain-0") }
            uuid = parsed
        }
        var d = DomainDefinition(name: name, uuid: uuid)
        d.type = type
        d.title = root.childText("title")
        if let t = d.title, t.contains("\n") { throw .xml("title can't contain newlines") }
        d.description = root.element("description").map { $0.text }

        guard let memory = root.element("memory") else {
            throw .xml("Memory size must be specified via <memory> or in the <numa> configuration")
        }
        d.memoryKiB = try scaledKiB(memory, what: "memory")
        if let current = root.element("currentMemory") {
            d.currentMemoryKiB = try scaledKiB(current, what: "currentMemory")
        } else {
            d.currentMemoryKiB = d.memoryKiB
        }
        if d.currentMemoryKiB > d.memoryKiB { d.currentMemoryKiB = d.memoryKiB } // libvirt clamps
        guard d.memoryKiB >= DomainDefinition.minMemoryKiB else { throw .unsupported("memory must be at least \(DomainDefinition.minMemoryKiB) KiB") }
        guard d.memoryKiB <= DomainDefinition.maxMemoryKiB else { throw .unsupported("memory must be at most \(DomainDefinition.maxMemoryKiB) KiB") }

        if let vcpu = root.element("vcpu") {
            guard let n = Int(vcpu.text.trimmingXMLWhitespace()), n >= 1 else { throw .xml("Invalid vcpus count") }
            guard n <= DomainDefinition.maxVCPUs else { throw .unsupported("Maximum CPUs greater than specified machine type limit \(DomainDefinition.maxVCPUs)") }
            d.vcpus = n
        }

        guard let os = root.element("os") else { throw .xml("missing <os> element") }
        guard let osType = os.element("type") else { throw .xml("missing os type") }
        d.osType = osType.text.trimmingXMLWhitespace()
        guard d.osType == "hvm" else { throw .unsupported("os type '\(d.osType)' is not supported by Apus (hvm only)") }
        if let arch = osType.attribute("arch") {
            guard arch == "x86_64" else { throw .unsupported("architecture '\(arch)' is not supported (x86_64 only)") }
        }
        d.kernel = os.childText("kernel").flatMap { $0.isEmpty ? nil : $0 }
        d.initrd = os.childText("initrd").flatMap { $0.isEmpty ? nil : $0 }
        d.cmdline = os.childText("cmdline")

        d.onPoweroff = try action(root, "on_poweroff", default: .destroy)
        d.onReboot = try action(root, "on_reboot", default: .restart)
        d.onCrash = try action(root, "on_crash", default: .destroy)

        if let devices = root.element("devices") {
            for disk in devices.elements("disk") { d.disks.append(try parseDisk(disk)) }
            for iface in devices.elements("interface") { d.interfaces.append(try parseInterface(iface, index: d.interfaces.count, uuid: d.uuid)) }
            d.console = !devices.elements("serial").isEmpty || !devices.elements("console").isEmpty
            for e in devices.elements("serial") + devices.elements("console") {
                if let t = e.attribute("type"), t != "pty" { throw .unsupported("serial/console type '\(t)' is not supported (pty only)") }
            }
        } else {
            d.console = false
        }
        var targets = Set<String>()
        for disk in d.disks where !targets.insert(disk.target).inserted {
            throw .xml("target '\(disk.target)' duplicated for disk sources '\(disk.source)'")
        }
        var macs = Set<String>()
        for i in d.interfaces where !macs.insert(i.mac).inserted {
            throw .xml("MAC address '\(i.mac)' is used by more than one interface")
        }
        return d
    }

    static func validateName(_ name: String) throws(ToolstackError) {
        guard !name.contains("/") else { throw .xml("name \(name) cannot contain '/'") }
        guard name.utf8.count <= 255, !name.hasPrefix("."), name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0 != "\\" }) else {
            throw .xml("invalid domain name '\(name)'")
        }
        guard name != "Domain-0" else { throw .invalidArgument("the name 'Domain-0' is reserved") }
    }

    /// Reads a memory element with its `unit` (libvirt's scaled integers).
    static func scaledKiB(_ e: XMLElement, what: String) throws(ToolstackError) -> UInt64 {
        guard let value = UInt64(e.text.trimmingXMLWhitespace()) else { throw .xml("could not parse \(what) size '\(e.text)'") }
        let unit = e.attribute("unit") ?? "KiB"
        let multiplier: UInt64
        switch unit {
        case "b", "bytes": multiplier = 1
        case "KB": multiplier = 1000
        case "k", "K", "KiB": multiplier = 1024
        case "MB": multiplier = 1_000_000
        case "M", "MiB": multiplier = 1 << 20
        case "GB": multiplier = 1_000_000_000
        case "G", "GiB": multiplier = 1 << 30
        case "TB": multiplier = 1_000_000_000_000
        case "T", "TiB": multiplier = 1 << 40
        default: throw .xml("unknown suffix '\(unit)'")
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow, bytes <= UInt64.max - 1023 else { throw .xml("\(what) size is too large") }
        return (bytes + 1023) / 1024
    }

    static func action(_ root: XMLElement, _ name: String, default fallback: LifecycleAction) throws(ToolstackError) -> LifecycleAction {
        guard let text = root.childText(name) else { return fallback }
        guard let a = LifecycleAction(rawValue: text) else { throw .xml("invalid \(name) value: '\(text)'") }
        return a
    }

    static func parseDisk(_ e: XMLElement) throws(ToolstackError) -> DiskDefinition {
        let typeText = e.attribute("type") ?? "file"
        guard let type = DiskDefinition.SourceType(rawValue: typeText) else {
            throw .unsupported("disk type '\(typeText)' is not supported (file or block)")
        }
        if let device = e.attribute("device"), device != "disk" {
            throw .unsupported("disk device '\(device)' is not supported (disk only)")
        }
        let format = e.element("driver")?.attribute("type") ?? "raw"
        guard format == "raw" else { throw .unsupported("disk format '\(format)' is not supported (raw only)") }
        guard let sourceElement = e.element("source"),
              let source = sourceElement.attribute(type == .file ? "file" : "dev"), !source.isEmpty else {
            throw .xml("disk has no source \(type == .file ? "file" : "dev")")
        }
        guard source.hasPrefix("/") else { throw .xml("disk source '\(source)' must be an absolute path") }
        guard let target = e.element("target")?.attribute("dev") else { throw .xml("missing disk target device") }
        guard target.hasPrefix("vd"), target.count >= 3, target.dropFirst(2).allSatisfy({ $0 >= "a" && $0 <= "z" }) else {
            throw .unsupported("disk target '\(target)' is not supported (virtio disks are vda, vdb, ...)")
        }
        if let bus = e.element("target")?.attribute("bus"), bus != "virtio" {
            throw .unsupported("disk bus '\(bus)' is not supported (virtio only)")
        }
        return DiskDefinition(type: type, source: source, target: target, readOnly: e.element("readonly") != nil, format: format)
    }

    static func parseInterface(_ e: XMLElement, index: Int, uuid: DomainUUID) throws(ToolstackError) -> InterfaceDefinition {
        let typeText = e.attribute("type") ?? ""
        guard let type = InterfaceDefinition.SourceType(rawValue: typeText) else {
            throw .unsupported("interface type '\(typeText)' is not supported (bridge or network: a port on Dom0's switch)")
        }
        let source = e.element("source")?.attribute(type == .bridge ? "bridge" : "network") ?? "default"
        let model = e.element("model")?.attribute("type") ?? "virtio"
        guard model == "virtio" else { throw .unsupported("interface model '\(model)' is not supported (virtio only)") }
        let mac = e.element("mac")?.attribute("address")?.lowercased() ?? defaultMAC(uuid: uuid, index: index)
        guard let parsed = parseMAC(mac) else { throw .xml("unable to parse mac address '\(mac)'") }
        guard parsed[0] & 1 == 0 else { throw .xml("expected unicast mac address, found multicast '\(mac)'") }
        return InterfaceDefinition(type: type, source: source, mac: formatMAC(parsed), targetDevice: e.element("target")?.attribute("dev"), model: model)
    }

    /// A stable locally administered MAC from the domain's UUID (52:54:00, as QEMU and libvirt use).
    static func defaultMAC(uuid: DomainUUID, index: Int) -> String {
        formatMAC([0x52, 0x54, 0x00, uuid.bytes[13], uuid.bytes[14], UInt8(truncatingIfNeeded: Int(uuid.bytes[15]) + index)])
    }

    public static func parseMAC(_ s: String) -> [UInt8]? {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 2, let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }

    public static func formatMAC(_ b: [UInt8]) -> String {
        b.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: ":")
    }

    /// Elements Apus models (for `--validate`).
    static let known: [String: Set<String>] = [
        "domain": ["name", "uuid", "title", "description", "memory", "currentMemory", "vcpu", "os", "on_poweroff", "on_reboot", "on_crash", "devices", "features", "clock", "cpu", "metadata", "pm"],
        "os": ["type", "kernel", "initrd", "cmdline", "boot"],
        "devices": ["disk", "interface", "serial", "console", "emulator", "memballoon", "input", "graphics", "video"],
        "disk": ["driver", "source", "target", "readonly", "alias", "address", "serial"],
        "interface": ["mac", "source", "model", "target", "alias", "address"],
        "serial": ["target", "alias", "source", "log"],
        "console": ["target", "alias", "source", "log"],
    ]

    static func checkKnown(_ e: XMLElement) throws(ToolstackError) {
        guard let allowed = known[e.name] else { return }
        for child in e.elements() {
            guard allowed.contains(child.name) else {
                throw ToolstackError(.xmlError, "XML error: XML document failed to validate against schema: element '\(child.name)' is not allowed in <\(e.name)> (line \(child.line))")
            }
            try checkKnown(child)
        }
    }

    // MARK: formatting

    /// The domain as libvirt domain XML; `id` is included for running domains.
    public static func format(_ d: DomainDefinition, id: Int? = nil) -> String {
        var root = XMLElement("domain", attributes: [("type", d.type)] + (id.map { [(name: "id", value: String($0))] } ?? []))
        func add(_ e: XMLElement) { root.children.append(.element(e)) }
        func text(_ name: String, _ value: String, _ attrs: [(name: String, value: String)] = []) -> XMLElement {
            XMLElement(name, attributes: attrs, children: [.text(value)])
        }
        add(text("name", d.name))
        add(text("uuid", d.uuid.description))
        if let t = d.title { add(text("title", t)) }
        if let desc = d.description { add(text("description", desc)) }
        add(text("memory", String(d.memoryKiB), [("unit", "KiB")]))
        add(text("currentMemory", String(d.currentMemoryKiB), [("unit", "KiB")]))
        add(text("vcpu", String(d.vcpus), [("placement", "static")]))
        var os = XMLElement("os")
        os.children.append(.element(text("type", d.osType, [("arch", d.arch), ("machine", "apus")])))
        if let k = d.kernel { os.children.append(.element(text("kernel", k))) }
        if let i = d.initrd { os.children.append(.element(text("initrd", i))) }
        if let c = d.cmdline { os.children.append(.element(text("cmdline", c))) }
        add(os)
        add(text("on_poweroff", d.onPoweroff.rawValue))
        add(text("on_reboot", d.onReboot.rawValue))
        add(text("on_crash", d.onCrash.rawValue))
        var devices = XMLElement("devices")
        for disk in d.disks {
            var e = XMLElement("disk", attributes: [("type", disk.type.rawValue), ("device", "disk")])
            e.children.append(.element(XMLElement("driver", attributes: [("name", "apus"), ("type", disk.format)])))
            e.children.append(.element(XMLElement("source", attributes: [(disk.type == .file ? "file" : "dev", disk.source)])))
            e.children.append(.element(XMLElement("target", attributes: [("dev", disk.target), ("bus", "virtio")])))
            if disk.readOnly { e.children.append(.element(XMLElement("readonly"))) }
            devices.children.append(.element(e))
        }
        for i in d.interfaces {
            var e = XMLElement("interface", attributes: [("type", i.type.rawValue)])
            e.children.append(.element(XMLElement("mac", attributes: [("address", i.mac)])))
            e.children.append(.element(XMLElement("source", attributes: [(i.type == .bridge ? "bridge" : "network", i.source)])))
            if let t = i.targetDevice { e.children.append(.element(XMLElement("target", attributes: [("dev", t)]))) }
            e.children.append(.element(XMLElement("model", attributes: [("type", i.model)])))
            devices.children.append(.element(e))
        }
        if d.console {
            var serial = XMLElement("serial", attributes: [("type", "pty")])
            serial.children.append(.element(XMLElement("target", attributes: [("port", "0")])))
            devices.children.append(.element(serial))
            var console = XMLElement("console", attributes: [("type", "pty")])
            console.children.append(.element(XMLElement("target", attributes: [("type", "serial"), ("port", "0")])))
            devices.children.append(.element(console))
        }
        add(devices)
        return XMLWriter.write(root)
    }
}
