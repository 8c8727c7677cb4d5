import DiskImage
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
        try parse(try document(text), source: text, strict: strict, defaultUUID: defaultUUID)
    }

    /// The XML document of a domain definition, with libvirt's error wording.
    public static func document(_ text: String) throws(ToolstackError) -> XMLElement {
        do {
            return try XMLParser.parse(text)
        } catch {
            throw .xml("(domain_definition):\(error.line): \(error.message)")
        }
    }

    /// Validates an already parsed document (see ``parse(_:strict:defaultUUID:)``);
    /// `source` is its text, from which custom metadata is kept as written.
    public static func parse(_ root: XMLElement, source: String? = nil, strict: Bool = false, defaultUUID: DomainUUID? = nil) throws(ToolstackError) -> DomainDefinition {
        guard root.name == "domain" else { throw .xml("unexpected root element <\(root.name)>, expecting <domain>") }
        if strict { try checkSchema(root) }
        let kept = try policy(root)

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
        d.kept = kept
        if let metadata = root.element("metadata") {
            let bytes = source.map { Array($0.utf8) }
            for child in metadata.elements() {
                if let bytes, let span = child.span, span.upperBound <= bytes.count {
                    d.metadata.append(String(decoding: bytes[span], as: UTF8.self))
                } else {
                    d.metadata.append(XMLWriter.write(child).trimmingXMLWhitespace())
                }
            }
        }
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
            if let c = vcpu.attribute("current") {
                guard let current = Int(c), current >= 1 else { throw .xml("Invalid current vcpus count") }
                guard current <= n else { throw .invalidArgument("requested vcpus is greater than max allowable vcpus for the domain: \(current) > \(n)") }
                d.currentVCPUs = current < n ? current : nil
            }
            if let placement = vcpu.attribute("placement"), placement != "static" {
                throw refuse("<vcpu placement='\(placement)'> (vCPUs are not placed on host NUMA nodes)")
            }
            if vcpu.attribute("cpuset") != nil { throw refuse("<vcpu cpuset=...> (vCPU pinning)") }
        }

        d.tuning = try parseTuning(root)

        guard let os = root.element("os") else { throw .xml("missing <os> element") }
        guard let osType = os.element("type") else { throw .xml("missing os type") }
        d.osType = osType.text.trimmingXMLWhitespace()
        guard d.osType == "hvm" else { throw .unsupported("os type '\(d.osType)' is not supported by Apus (hvm only)") }
        if let arch = osType.attribute("arch") {
            guard arch == "x86_64" else { throw .unsupported("architecture '\(arch)' is not supported (x86_64 only)") }
        }
        if let machine = osType.attribute("machine"), machine != "apus" {
            throw .unsupported("machine type '\(machine)' is not supported by Apus (apus: virtio-mmio devices, no PCI bus)")
        }
        d.kernel = os.childText("kernel").flatMap { $0.isEmpty ? nil : $0 }
        d.initrd = os.childText("initrd").flatMap { $0.isEmpty ? nil : $0 }
        d.cmdline = os.childText("cmdline")
        if let b = root.element("bootloader") { d.bootloader = b.text.trimmingXMLWhitespace() }
        if d.kernel == nil, d.initrd != nil { throw .xml("<initrd> without <kernel>") }

        d.onPoweroff = try action(root, "on_poweroff", default: .destroy)
        d.onReboot = try action(root, "on_reboot", default: .restart)
        d.onCrash = try action(root, "on_crash", default: .destroy)

        if let devices = root.element("devices") {
            for disk in devices.elements("disk") { d.disks.append(try parseDisk(disk)) }
            for iface in devices.elements("interface") { d.interfaces.append(try parseInterface(iface, index: d.interfaces.count, uuid: d.uuid)) }
            for fs in devices.elements("filesystem") { d.filesystems.append(try parseFilesystem(fs)) }
            d.console = !devices.elements("serial").isEmpty || !devices.elements("console").isEmpty
            for e in devices.elements("serial") + devices.elements("console") {
                if let t = e.attribute("type"), t != "pty" { throw .unsupported("serial/console type '\(t)' is not supported (pty only)") }
                if let t = e.element("target")?.attribute("type"), !["serial", "isa-serial"].contains(t) {
                    throw refuse("<\(e.name)><target type='\(t)'> (the console is the 8250 serial port)")
                }
                _ = try deviceChildren(e, modelled: ["target", "alias", "source", "address"]) { _ in false }
            }
            guard devices.elements("serial").count <= 1 else { throw refuse("more than one <serial> port") }
        } else {
            d.console = false
        }
        guard d.disks.count + d.interfaces.count + d.filesystems.count <= DomainDefinition.maxDevices else {
            throw .unsupported("a domain has at most \(DomainDefinition.maxDevices) disks, interfaces and filesystems together")
        }
        var tags = Set<String>()
        for fs in d.filesystems where !tags.insert(fs.tag).inserted {
            throw .xml("filesystem target '\(fs.tag)' is used more than once")
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

    /// One device of `attach-device` / `detach-device` / `update-device`.
    public enum Device: Sendable {
        case disk(DiskDefinition)
        /// An interface, and whether its XML named a MAC.
        case interface(InterfaceDefinition, macGiven: Bool)
    }

    /// Parses a device document (`<disk>` or `<interface>`) with the same
    /// rules as inside `<devices>`.
    public static func parseDevice(_ text: String, uuid: DomainUUID) throws(ToolstackError) -> Device {
        let e: XMLElement
        do {
            e = try XMLParser.parse(text)
        } catch {
            throw .xml("(device_definition):\(error.line): \(error.message)")
        }
        switch e.name {
        case "disk": return .disk(try parseDisk(e))
        case "filesystem":
            throw .unsupported("attaching or detaching a <filesystem> is not supported by Apus: add it to the domain's definition (virsh edit) and start the domain again")
        case "interface":
            return .interface(try parseInterface(e, index: 0, uuid: uuid), macGiven: e.element("mac")?.attribute("address") != nil)
        default:
            guard schemaElements.contains(e.name) else { throw .xml("unknown device type '\(e.name)'") }
            throw refuseDevices(e.name)
        }
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

    /// `<filesystem type='mount' accessmode='passthrough'>` with
    /// `<driver type='virtiofs'/>`, a `<source dir>` and a `<target dir>`
    /// (the tag); virtiofsd's options from `<binary>`.
    static func parseFilesystem(_ e: XMLElement) throws(ToolstackError) -> FilesystemDefinition {
        let type = e.attribute("type") ?? "mount"
        guard type == "mount" else { throw refuse("<filesystem type='\(type)'> (a host directory, type='mount', only)") }
        let access = e.attribute("accessmode") ?? "passthrough"
        guard access == "passthrough" else { throw refuse("<filesystem accessmode='\(access)'> (virtiofsd passes the guest's owners through)") }
        let driver = e.element("driver")
        guard let kind = driver?.attribute("type"), kind == "virtiofs" else {
            throw refuse("<filesystem> with driver '\(driver?.attribute("type") ?? "path")' (9p: Apus shares directories with virtiofs, <driver type='virtiofs'/>)")
        }
        guard let source = e.element("source")?.attribute("dir"), !source.isEmpty else { throw .xml("missing source information for filesystem device") }
        guard let tag = e.element("target")?.attribute("dir"), !tag.isEmpty else { throw .xml("missing target information for filesystem device") }
        guard tag.utf8.count <= 36 else { throw .xml("filesystem target '\(tag)' is longer than virtio-fs's 36 bytes") }
        guard !tag.contains(","), tag.unicodeScalars.allSatisfy({ $0.value >= 0x20 }) else {
            throw .xml("filesystem target '\(tag)' may not contain commas or control characters")
        }
        guard e.element("readonly") == nil else { throw refuse("a read-only virtiofs filesystem (virtiofsd shares read-write)") }
        var fs = FilesystemDefinition(source: source, tag: tag)
        if let b = e.element("binary") {
            if let path = b.attribute("path") {
                guard FilesystemDefinition.knownBinaries.contains(path) else {
                    throw refuse("<binary path='\(path)'> (apusd runs virtiofsd as root: only \(FilesystemDefinition.knownBinaries.joined(separator: " or ")))")
                }
                fs.binary = path
            }
            fs.xattr = try onOff(b.attribute("xattr"), "<binary xattr>")
            for c in b.elements() {
                switch c.name {
                case "cache":
                    let mode = c.attribute("mode") ?? "auto"
                    guard ["auto", "always", "none"].contains(mode) else { throw refuse("<cache mode='\(mode)'> (auto, always or none)") }
                    fs.cache = mode
                case "lock":
                    fs.posixLock = try onOff(c.attribute("posix"), "<lock posix>")
                    fs.flock = try onOff(c.attribute("flock"), "<lock flock>")
                default:
                    throw refuse("<filesystem><binary><\(c.name)>")
                }
            }
        }
        if let address = e.element("address"), let t = address.attribute("type"), t != "virtio-mmio" {
            throw refuse("a filesystem on a \(t) bus (devices are virtio-mmio)")
        }
        fs.kept = try deviceChildren(e, modelled: ["driver", "binary", "source", "target", "alias", "address"]) { _ in false }
        if let queue = driver?.attribute("queue") {
            guard let n = Int(queue), n > 0, n <= 1024, n & (n - 1) == 0 else { throw .xml("filesystem queue size '\(queue)' must be a power of two up to 1024") }
            fs.queue = n
        }
        return fs
    }

    static func onOff(_ value: String?, _ what: String) throws(ToolstackError) -> Bool {
        switch value {
        case nil, "off": return false
        case "on": return true
        case let v?: throw .xml("\(what) must be 'on' or 'off', not '\(v)'")
        }
    }

    static func parseDisk(_ e: XMLElement) throws(ToolstackError) -> DiskDefinition {
        let typeText = e.attribute("type") ?? "file"
        guard let type = DiskDefinition.SourceType(rawValue: typeText) else {
            throw .unsupported("disk type '\(typeText)' is not supported (file, block or volume)")
        }
        if let device = e.attribute("device"), device != "disk" {
            throw .unsupported("disk device '\(device)' is not supported (disk only)")
        }
        let driver = e.element("driver")
        let format: DiskFormat
        do {
            format = try DiskFormat(name: driver?.attribute("type") ?? "raw")
        } catch {
            throw .unsupported("\(error)")
        }
        if let cache = driver?.attribute("cache"), !["none", "writeback", "writethrough", "directsync", "default"].contains(cache) {
            throw refuse("<driver cache='\(cache)'>")
        }
        var options: [(name: String, value: String)] = []
        for a in driver?.attributes ?? [] where !["name", "type", "cache"].contains(a.name) {
            switch (a.name, a.value) {
            case ("io", "native"), ("io", "threads"), ("io", "io_uring"), ("discard", "unmap"), ("discard", "ignore"),
                 ("detect_zeroes", "off"), ("detect_zeroes", "on"), ("detect_zeroes", "unmap"):
                options.append(a)
            default:
                throw refuse("<driver \(a.name)='\(a.value)'>")
            }
        }
        if let address = e.element("address"), let t = address.attribute("type"), t != "virtio-mmio" {
            throw refuse("a disk on a \(t) bus (devices are virtio-mmio)")
        }
        let keptChildren = try deviceChildren(e, modelled: ["driver", "source", "target", "readonly", "alias", "address", "serial"]) { $0.name == "boot" }
        var source = ""
        var volume: DiskDefinition.VolumeReference?
        if type == .volume {
            guard let s = e.element("source"), let pool = s.attribute("pool"), !pool.isEmpty, let name = s.attribute("volume"), !name.isEmpty else {
                throw .xml("a volume disk needs <source pool='...' volume='...'/>")
            }
            volume = DiskDefinition.VolumeReference(pool: pool, name: name)
        } else {
            guard let sourceElement = e.element("source"),
                  let path = sourceElement.attribute(type == .file ? "file" : "dev"), !path.isEmpty else {
                throw .xml("disk has no source \(type == .file ? "file" : "dev")")
            }
            guard path.hasPrefix("/") else { throw .xml("disk source '\(path)' must be an absolute path") }
            source = path
        }
        guard var target = e.element("target")?.attribute("dev") else { throw .xml("missing disk target device") }
        let bus = e.element("target")?.attribute("bus")
        // Apus's disks are all virtio: a disk a tool put on an emulated bus
        // (virt-install picks ide for a driver it does not know as QEMU)
        // becomes the virtio disk of the same letter, hda or sda → vda.
        if let bus, ["ide", "sata", "scsi"].contains(bus), target.hasPrefix("hd") || target.hasPrefix("sd") {
            target = "vd" + target.dropFirst(2)
        } else if let bus, bus != "virtio" {
            throw .unsupported("disk bus '\(bus)' is not supported (virtio only)")
        }
        guard target.hasPrefix("vd"), target.count >= 3, target.dropFirst(2).allSatisfy({ $0 >= "a" && $0 <= "z" }) else {
            throw .unsupported("disk target '\(target)' is not supported (virtio disks are vda, vdb, ...)")
        }
        var disk = DiskDefinition(type: type, source: source, target: target, readOnly: e.element("readonly") != nil, format: format)
        disk.volume = volume
        // A volume's format is the pool's record of it (known once resolved).
        disk.formatDeclared = driver?.attribute("type") != nil
        if let serial = e.childText("serial") {
            guard serial.utf8.count <= 20, serial.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }) else {
                throw .xml("disk serial '\(serial)' must be at most 20 printable characters")
            }
            disk.serial = serial
        }
        disk.cache = driver?.attribute("cache")
        disk.driverOptions = options
        disk.kept = keptChildren
        return disk
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
        if let address = e.element("address"), let t = address.attribute("type"), t != "virtio-mmio" {
            throw refuse("an interface on a \(t) bus (devices are virtio-mmio)")
        }
        let keptChildren = try deviceChildren(e, modelled: ["mac", "source", "model", "target", "alias", "address"]) { c in
            c.name == "boot" || (c.name == "link" && c.attribute("state") == "up")
        }
        var target = e.element("target")?.attribute("dev")
        // Names libvirt generates are not the owner's: a new one is given at each start.
        if let t = target, generatedTargetPrefixes.contains(where: { t.hasPrefix($0) }) { target = nil }
        if let t = target {
            guard !t.isEmpty, t.utf8.count < 16, !t.contains("/"), t.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
                throw .xml("interface target '\(t)' is not a valid interface name")
            }
        }
        var iface = InterfaceDefinition(type: type, source: source, mac: formatMAC(parsed), targetDevice: target, model: model)
        iface.kept = keptChildren
        return iface
    }

    /// The namespace URI of a custom metadata element (its prefix's xmlns).
    public static func metadataNamespace(_ raw: String) -> String? {
        guard let e = try? XMLParser.parse(raw) else { return nil }
        let prefix = e.name.split(separator: ":", maxSplits: 1).count == 2 ? String(e.name.split(separator: ":")[0]) : nil
        return e.attribute(prefix.map { "xmlns:" + $0 } ?? "xmlns")
    }

    /// A custom metadata element for SET_METADATA: `xml` with its root in
    /// namespace `uri` under `prefix`, as libvirt stores it.
    public static func metadataElement(_ xml: String, uri: String, prefix: String) throws(ToolstackError) -> String {
        guard !uri.isEmpty, !prefix.isEmpty, prefix.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0 == "_" || $0 == "-" || ("0"..."9").contains($0)) }) else {
            throw .invalidArgument("a metadata element needs a namespace URI and a valid key")
        }
        var e: XMLElement
        do {
            e = try XMLParser.parse(xml)
        } catch {
            throw .xml("(metadata_xml):\(error.line): \(error.message)")
        }
        let local = e.name.split(separator: ":").last.map(String.init) ?? e.name
        e.name = prefix + ":" + local
        e.attributes.removeAll { $0.name == "xmlns" || $0.name == "xmlns:" + prefix }
        e.attributes.insert((name: "xmlns:" + prefix, value: uri), at: 0)
        return XMLWriter.write(e.normalized).trimmingXMLWhitespace()
    }

    /// Interface names libvirt generates (and drops from definitions).
    public static let generatedTargetPrefixes = ["vnet", "vif", "macvtap", "macvlan"]

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

    // MARK: formatting

    /// What only a running domain's XML shows: device aliases, generated
    /// interface names, the console's pty.
    public struct LiveDetails: Sendable, Equatable {
        /// The host-side name of each interface's port, in order.
        public var interfaceTargets: [String]
        /// The pty `virsh ttyconsole` prints.
        public var consolePTY: String?
        public init(interfaceTargets: [String] = [], consolePTY: String? = nil) {
            self.interfaceTargets = interfaceTargets
            self.consolePTY = consolePTY
        }
    }

    /// The domain as libvirt domain XML; `id` and `live` for running domains.
    public static func format(_ d: DomainDefinition, id: Int? = nil, live: LiveDetails? = nil) -> String {
        var root = XMLElement("domain", attributes: [("type", d.type)] + (id.map { [(name: "id", value: String($0))] } ?? []))
        func add(_ e: XMLElement) { root.children.append(.element(e)) }
        func text(_ name: String, _ value: String, _ attrs: [(name: String, value: String)] = []) -> XMLElement {
            XMLElement(name, attributes: attrs, children: [.text(value)])
        }
        func element(_ name: String, _ attrs: [(name: String, value: String)] = [], _ children: [XMLElement] = []) -> XMLElement {
            XMLElement(name, attributes: attrs, children: children.map { .element($0) })
        }
        add(text("name", d.name))
        add(text("uuid", d.uuid.description))
        if let t = d.title { add(text("title", t)) }
        if let desc = d.description { add(text("description", desc)) }
        if !d.metadata.isEmpty { add(XMLElement("metadata", children: d.metadata.map { .raw($0) })) }
        add(text("memory", String(d.memoryKiB), [("unit", "KiB")]))
        add(text("currentMemory", String(d.currentMemoryKiB), [("unit", "KiB")]))
        let tuning = formatTuning(d.tuning)
        if let e = tuning.blkiotune { add(e) }
        if let e = tuning.memtune { add(e) }
        var vcpuAttrs: [(name: String, value: String)] = [("placement", "static")]
        if let current = d.currentVCPUs, current < d.vcpus { vcpuAttrs.append(("current", String(current))) }
        add(text("vcpu", String(d.vcpus), vcpuAttrs))
        if let e = tuning.cputune { add(e) }
        if let b = d.bootloader { add(text("bootloader", b)) }
        var os = XMLElement("os")
        os.children.append(.element(text("type", d.osType, [("arch", d.arch), ("machine", "apus")])))
        if let k = d.kernel { os.children.append(.element(text("kernel", k))) }
        if let i = d.initrd { os.children.append(.element(text("initrd", i))) }
        if let c = d.cmdline { os.children.append(.element(text("cmdline", c))) }
        os.children += d.kept.os.map { .element($0) }
        add(os)
        d.kept.beforeLifecycle.forEach(add)
        add(text("on_poweroff", d.onPoweroff.rawValue))
        add(text("on_reboot", d.onReboot.rawValue))
        add(text("on_crash", d.onCrash.rawValue))
        d.kept.afterLifecycle.forEach(add)
        var devices = XMLElement("devices")
        func device(_ e: XMLElement) { devices.children.append(.element(e)) }
        if let emulator = d.kept.devices.first, emulator.name == "emulator" { device(emulator) }
        for (i, disk) in d.disks.enumerated() {
            var driver: [(name: String, value: String)] = [("name", "apus")]
            if disk.formatDeclared || !disk.source.isEmpty { driver.append(("type", disk.format.rawValue)) }
            if let cache = disk.cache { driver.append(("cache", cache)) }
            driver += disk.driverOptions
            var children = [element("driver", driver),
                            element("source", disk.volume.map { [("pool", $0.pool), ("volume", $0.name)] }
                                              ?? [(disk.type == .file ? "file" : "dev", disk.source)]),
                            element("target", [("dev", disk.target), ("bus", "virtio")])]
            if disk.readOnly { children.append(element("readonly")) }
            if let serial = disk.serial { children.append(text("serial", serial)) }
            children += disk.kept
            if live != nil { children.append(element("alias", [("name", "virtio-disk\(i)")])) }
            children.append(element("address", [("type", "virtio-mmio")]))
            device(element("disk", [("type", disk.type.rawValue), ("device", "disk")], children))
        }
        for (i, fs) in d.filesystems.enumerated() {
            var children = [element("driver", [("type", "virtiofs")] + (fs.queue.map { [("queue", String($0))] } ?? []))]
            var binaryAttrs: [(name: String, value: String)] = []
            if let b = fs.binary { binaryAttrs.append(("path", b)) }
            if fs.xattr { binaryAttrs.append(("xattr", "on")) }
            var binaryChildren: [XMLElement] = []
            if let c = fs.cache { binaryChildren.append(element("cache", [("mode", c)])) }
            if fs.posixLock || fs.flock { binaryChildren.append(element("lock", [("posix", fs.posixLock ? "on" : "off"), ("flock", fs.flock ? "on" : "off")])) }
            if !binaryAttrs.isEmpty || !binaryChildren.isEmpty { children.append(element("binary", binaryAttrs, binaryChildren)) }
            children += [element("source", [("dir", fs.source)]), element("target", [("dir", fs.tag)])]
            children += fs.kept
            if live != nil { children.append(element("alias", [("name", "fs\(i)")])) }
            children.append(element("address", [("type", "virtio-mmio")]))
            device(element("filesystem", [("type", "mount"), ("accessmode", "passthrough")], children))
        }
        for (i, iface) in d.interfaces.enumerated() {
            var children = [element("mac", [("address", iface.mac)]),
                            element("source", [(iface.type == .bridge ? "bridge" : "network", iface.source)])]
            let liveTarget = live.flatMap { i < $0.interfaceTargets.count ? $0.interfaceTargets[i] : nil }
            if let t = liveTarget ?? iface.targetDevice { children.append(element("target", [("dev", t)])) }
            children.append(element("model", [("type", iface.model)]))
            children += iface.kept
            if live != nil { children.append(element("alias", [("name", "net\(i)")])) }
            children.append(element("address", [("type", "virtio-mmio")]))
            device(element("interface", [("type", iface.type.rawValue)], children))
        }
        if d.console {
            let pty = live?.consolePTY
            var serial = [element("target", [("type", "isa-serial"), ("port", "0")], [element("model", [("name", "isa-serial")])])]
            var console = [element("target", [("type", "serial"), ("port", "0")])]
            if let pty {
                serial.insert(element("source", [("path", pty)]), at: 0)
                console.insert(element("source", [("path", pty)]), at: 0)
            }
            if live != nil {
                serial.append(element("alias", [("name", "serial0")]))
                console.append(element("alias", [("name", "serial0")]))
            }
            device(element("serial", [("type", "pty")], serial))
            device(element("console", [("type", "pty")] + (pty.map { [(name: "tty", value: $0)] } ?? []), console))
        }
        for e in d.kept.devices where e.name != "emulator" { device(e) }
        add(devices)
        d.kept.afterDevices.forEach(add)
        return XMLWriter.write(root)
    }
}
