import DiskImage
/// Xen xl.cfg files to and from Apus's domain model: the keys xl.cfg(5)
/// defines that Apus runs (name, uuid, memory, maxmem, vcpus, maxvcpus,
/// kernel, ramdisk, cmdline/extra/root, disk, vif, on_*, type). Keys that
/// make no sense here get a warning naming their line, never silence.
public enum XLDomain {
    /// A converted domain and what was ignored on the way.
    public struct Result: Sendable {
        public var definition: DomainDefinition
        public var warnings: [String]
        /// Whether the file asks for the domain to run (`start = 1` or
        /// `autostart = 1`, Apus's extensions for `apus apply`).
        public var start: Bool
        /// Whether the domain also starts with the host (`autostart = 1`).
        public var autostart: Bool
        /// Whether the file set `uuid` (otherwise one was made up or defaulted).
        public var hasUUID: Bool
    }

    /// Keys xl knows that do not apply to an Apus domain (accepted with a warning).
    static let ignoredKeys: Set<String> = [
        "builder", "device_model_version", "device_model_override", "bootloader_args", "boot",
        "cpus", "cpus_soft", "cpu_weight", "cap", "pool", "seclabel", "acpi", "apic", "pae", "hap", "nestedhvm",
        "viridian", "vnc", "vnclisten", "vncpasswd", "sdl", "serial", "usb", "usbdevice", "videoram", "vga",
        "stdvga", "localtime", "rtc_timeoffset", "pci", "vfb", "vkb", "vtpm", "p9", "channel", "shadow_memory",
        "max_grant_frames", "max_maptrack_frames", "e820_host", "tsc_mode", "nomigrate", "driver_domain",
        "device_tree", "xen_platform_pci", "soundhw", "keymap", "gfx_passthru", "firmware", "bios",
    ]

    /// Reads an xl.cfg file into a domain definition.
    /// `defaultUUID` is used when the file has no `uuid` key.
    public static func parse(_ text: String, file: String = "xl.cfg", defaultUUID: DomainUUID? = nil) throws(XLConfigError) -> Result {
        let cfg = try XLConfigFile.parse(text, file: file)
        var warnings: [String] = []
        func fail(_ s: XLConfigFile.Setting?, _ message: String) -> XLConfigError {
            XLConfigError(file: file, line: s?.line ?? 1, column: s?.column ?? 1, message: message)
        }
        /// The first of `keys` the file sets (for error positions).
        func setting(_ keys: String...) -> XLConfigFile.Setting? { keys.lazy.compactMap { cfg[$0] }.first }
        func string(_ key: String) throws(XLConfigError) -> String? {
            guard let s = cfg[key] else { return nil }
            guard case .string(let v) = s.value else { throw fail(s, "'\(key)' must be a quoted string") }
            return v
        }
        func number(_ key: String) throws(XLConfigError) -> Int64? {
            guard let s = cfg[key] else { return nil }
            switch s.value {
            case .number(let n): return n
            case .string(let v):
                guard let n = Int64(v) else { throw fail(s, "'\(key)' must be a number") }
                return n
            case .list: throw fail(s, "'\(key)' must be a number")
            }
        }
        func list(_ key: String) throws(XLConfigError) -> [(String, XLConfigFile.Setting)] {
            guard let s = cfg[key] else { return [] }
            switch s.value {
            case .list(let items):
                var out: [(String, XLConfigFile.Setting)] = []
                for item in items {
                    guard case .string(let v) = item else { throw fail(s, "'\(key)' entries must be quoted strings") }
                    out.append((v, s))
                }
                return out
            case .string(let v): return [(v, s)]
            case .number: throw fail(s, "'\(key)' must be a list of strings")
            }
        }

        let known: Set<String> = ["name", "uuid", "memory", "maxmem", "vcpus", "maxvcpus", "kernel", "ramdisk", "cmdline",
                                  "extra", "root", "disk", "vif", "on_poweroff", "on_reboot", "on_crash", "type",
                                  "description", "start", "autostart", "bootloader"]
        for s in cfg.settings where !known.contains(s.key) {
            let why = ignoredKeys.contains(s.key) ? "is not used by Apus" : "is not a key Apus knows"
            warnings.append("\(file):\(s.line): warning: '\(s.key)' \(why); ignored")
        }

        guard let nameSetting = cfg["name"], let name = try string("name"), !name.isEmpty else {
            throw XLConfigError(file: file, line: 1, column: 1, message: "missing 'name'")
        }
        do { try DomainXML.validateName(name) } catch {
            let m = error.message
            throw fail(nameSetting, m.hasPrefix("XML error: ") ? String(m.dropFirst("XML error: ".count)) : m)
        }
        var uuid = defaultUUID ?? DomainUUID.random()
        if let u = try string("uuid") {
            guard let parsed = DomainUUID(u), parsed != .zero else { throw fail(setting("uuid"), "malformed uuid '\(u)'") }
            uuid = parsed
        }
        var d = DomainDefinition(name: name, uuid: uuid)
        d.description = try string("description")

        var typeValue = try string("type")
        if typeValue == nil { typeValue = try string("builder") }
        if let t = typeValue {
            let s = setting("type", "builder")
            switch t {
            case "pvh", "hvm": break
            case "pv": warnings.append("\(file):\(s?.line ?? 1): warning: type 'pv' boots as a direct-kernel (PVH-style) Apus domain")
            default: throw fail(s, "unknown domain type '\(t)' (pvh, hvm or pv)")
            }
        }

        // Memory: MiB. `memory` is what the guest starts with, `maxmem` the
        // ceiling (libvirt's currentMemory and memory).
        let maxmem = try number("maxmem")
        let memoryMiB = try number("memory") ?? maxmem ?? 128
        let maxMiB = maxmem ?? memoryMiB
        let memorySetting = setting("memory", "maxmem")
        guard memoryMiB > 0, maxMiB > 0 else { throw fail(memorySetting, "memory must be a positive number of MiB") }
        guard maxMiB >= memoryMiB else { throw fail(setting("maxmem"), "maxmem (\(maxMiB)) is smaller than memory (\(memoryMiB))") }
        guard UInt64(maxMiB) <= DomainDefinition.maxMemoryKiB / 1024 else {
            throw fail(memorySetting, "memory must be at most \(DomainDefinition.maxMemoryKiB / 1024) MiB")
        }
        guard UInt64(memoryMiB) * 1024 >= DomainDefinition.minMemoryKiB else {
            throw fail(memorySetting, "memory must be at least \(DomainDefinition.minMemoryKiB / 1024) MiB")
        }
        d.memoryKiB = UInt64(maxMiB) * 1024
        d.currentMemoryKiB = UInt64(memoryMiB) * 1024

        let vcpus = try number("vcpus")
        let maxVCPUs = try number("maxvcpus")
        let count = vcpus ?? maxVCPUs ?? 1
        guard count >= 1, count <= Int64(DomainDefinition.maxVCPUs) else {
            throw fail(setting("vcpus", "maxvcpus"), "vcpus must be between 1 and \(DomainDefinition.maxVCPUs)")
        }
        if let maxVCPUs, let vcpus, maxVCPUs != vcpus {
            warnings.append("\(file):\(setting("maxvcpus")?.line ?? 1): warning: 'maxvcpus' ignored: Apus domains run 'vcpus' (\(vcpus)) vCPUs")
        }
        d.vcpus = Int(count)

        d.kernel = try string("kernel")
        d.bootloader = try string("bootloader")
        d.initrd = try string("ramdisk")
        var cmdline = try string("cmdline")
        if cmdline == nil {
            var parts: [String] = []
            if let root = try string("root") { parts.append("root=" + root) }
            if let extra = try string("extra") { parts.append(extra) }
            if !parts.isEmpty { cmdline = parts.joined(separator: " ") }
        } else if cfg["root"] != nil || cfg["extra"] != nil {
            warnings.append("\(file):\(setting("cmdline")?.line ?? 1): warning: 'cmdline' given: 'root' and 'extra' are ignored (as xl does)")
        }
        d.cmdline = cmdline

        for (key, keyPath) in [("on_poweroff", \DomainDefinition.onPoweroff), ("on_reboot", \.onReboot), ("on_crash", \.onCrash)] {
            guard let v = try string(key) else { continue }
            guard let action = LifecycleAction(rawValue: v) else {
                throw fail(setting(key), "unknown \(key) action '\(v)' (destroy, restart, preserve, rename-restart, coredump-destroy, coredump-restart)")
            }
            d[keyPath: keyPath] = action
        }

        for (spec, setting) in try list("disk") {
            do {
                d.disks.append(try parseDisk(spec))
            } catch {
                throw fail(setting, "disk '\(spec)': \(error.message)")
            }
        }
        var targets = Set<String>()
        for disk in d.disks where !targets.insert(disk.target).inserted {
            throw fail(setting("disk"), "disk vdev '\(disk.target)' used twice")
        }
        for (spec, setting) in try list("vif") {
            do {
                let (iface, ignored) = try parseVif(spec, index: d.interfaces.count, uuid: d.uuid)
                d.interfaces.append(iface)
                for k in ignored { warnings.append("\(file):\(setting.line): warning: vif '\(k)' is not used by Apus; ignored") }
            } catch {
                throw fail(setting, "vif '\(spec)': \(error.message)")
            }
        }
        var macs = Set<String>()
        for i in d.interfaces where !macs.insert(i.mac).inserted {
            throw fail(setting("vif"), "MAC address '\(i.mac)' is used by more than one vif")
        }
        let autostart = try (number("autostart") ?? 0) != 0
        let startKey = try (number("start") ?? 0) != 0
        let start = autostart || startKey
        return Result(definition: d, warnings: warnings, start: start, autostart: autostart, hasUUID: cfg["uuid"] != nil)
    }

    struct SpecError: Error { let message: String }

    /// One xl-disk-configuration string: positional `target,format,vdev,access`
    /// and/or `key=value` parameters (`target=` last, as it may hold commas).
    static func parseDisk(_ spec: String) throws(SpecError) -> DiskDefinition {
        var target: String?
        var format: String?
        var vdev: String?
        var access: String?
        var positional = 0
        var rest = Substring(spec)
        while !rest.isEmpty {
            while rest.first == " " { rest = rest.dropFirst() }
            if rest.hasPrefix("target=") {
                target = String(rest.dropFirst("target=".count))
                break
            }
            let field: Substring
            if let comma = rest.firstIndex(of: ",") {
                field = rest[..<comma]
                rest = rest[rest.index(after: comma)...]
            } else {
                field = rest
                rest = ""
            }
            let item = field.trimmingCharacters(in: " ")
            if let eq = item.firstIndex(of: "=") {
                let key = String(item[..<eq]), value = String(item[item.index(after: eq)...])
                switch key {
                case "format": format = value
                case "vdev": vdev = value
                case "access": access = value
                case "devtype":
                    guard value == "disk" else { throw SpecError(message: "devtype '\(value)' is not supported (disk only)") }
                case "backendtype", "script", "backend", "discard", "no-discard", "direct-io-safe":
                    break
                default: throw SpecError(message: "unknown disk parameter '\(key)'")
                }
            } else {
                switch item {
                case "cdrom": throw SpecError(message: "cdrom devices are not supported")
                case "discard", "no-discard", "direct-io-safe": continue
                default: break
                }
                switch positional {
                case 0: if !item.isEmpty { target = item }
                case 1: if !item.isEmpty { format = item }
                case 2: vdev = item
                case 3: if !item.isEmpty { access = item }
                default: throw SpecError(message: "too many positional parameters")
                }
                positional += 1
            }
        }
        guard var path = target else { throw SpecError(message: "missing target (the image path)") }
        // Legacy prefixes: "phy:" / "file:" / "aio:", and a format ("qcow2:", "tap:qcow2:", "raw:").
        for prefix in ["tap:", "tap2:", "phy:", "file:", "aio:"] where path.hasPrefix(prefix) { path = String(path.dropFirst(prefix.count)) }
        for f in DiskFormat.allCases where path.hasPrefix(f.rawValue + ":") {
            if format == nil { format = f.rawValue }
            path = String(path.dropFirst(f.rawValue.count + 1))
        }
        guard !path.isEmpty else { throw SpecError(message: "missing target (the image path)") }
        let fmt: DiskFormat
        do {
            fmt = try DiskFormat(name: format ?? "raw")
        } catch {
            throw SpecError(message: "\(error)")
        }
        guard let v = vdev else { throw SpecError(message: "missing vdev") }
        let device = try virtioName(v)
        let readOnly: Bool
        switch access ?? "rw" {
        case "r", "ro": readOnly = true
        case "w", "rw": readOnly = false
        default: throw SpecError(message: "access '\(access ?? "")' is not r, ro, w or rw")
        }
        return DiskDefinition(type: path.hasPrefix("/dev/") ? .block : .file, source: path, target: device, readOnly: readOnly, format: fmt)
    }

    /// xvdX, hdX, sdX and vdX all name virtio disk vdX in Apus.
    static func virtioName(_ vdev: String) throws(SpecError) -> String {
        for prefix in ["xvd", "hd", "sd", "vd"] where vdev.hasPrefix(prefix) {
            let letters = vdev.dropFirst(prefix.count)
            if !letters.isEmpty, letters.count <= 2, letters.allSatisfy({ $0 >= "a" && $0 <= "z" }) { return "vd" + letters }
        }
        throw SpecError(message: "vdev '\(vdev)' is not a disk name Apus knows (xvda, hda, sda or vda...)")
    }

    /// One vif string: `mac=...,bridge=...,model=...,vifname=...`.
    static func parseVif(_ spec: String, index: Int, uuid: DomainUUID) throws(SpecError) -> (InterfaceDefinition, [String]) {
        var mac: String?
        var bridge: String?
        var vifname: String?
        var ignored: [String] = []
        for field in spec.split(separator: ",") {
            let item = field.trimmingCharacters(in: " ")
            guard !item.isEmpty else { continue }
            guard let eq = item.firstIndex(of: "=") else { throw SpecError(message: "expected key=value, found '\(item)'") }
            let key = String(item[..<eq]), value = String(item[item.index(after: eq)...])
            switch key {
            case "mac": mac = value
            case "bridge": bridge = value
            case "vifname": vifname = value
            case "model", "type", "ip", "script", "rate", "backend", "gatewaydev", "accel", "mtu": ignored.append(key)
            default: throw SpecError(message: "unknown vif parameter '\(key)'")
            }
        }
        let address = (mac ?? DomainXML.defaultMAC(uuid: uuid, index: index)).lowercased()
        guard let bytes = DomainXML.parseMAC(address) else { throw SpecError(message: "unable to parse mac address '\(address)'") }
        guard bytes[0] & 1 == 0 else { throw SpecError(message: "expected a unicast mac address, found '\(address)'") }
        let iface = InterfaceDefinition(type: bridge == nil ? .network : .bridge, source: bridge ?? "default",
                                        mac: DomainXML.formatMAC(bytes), targetDevice: vifname)
        return (iface, ignored)
    }

    /// Writes a domain as an xl.cfg file (the keys above; title, and
    /// anything else xl.cfg cannot say, is left out).
    public static func format(_ d: DomainDefinition) -> String {
        var s: [XLConfigFile.Setting] = []
        func add(_ key: String, _ value: XLConfigFile.Value) { s.append(.init(key: key, value: value, line: 0, column: 0)) }
        add("name", .string(d.name))
        add("uuid", .string(d.uuid.description))
        if let desc = d.description { add("description", .string(desc)) }
        add("type", .string("pvh"))
        add("memory", .number(Int64((d.currentMemoryKiB + 1023) / 1024)))
        if d.memoryKiB != d.currentMemoryKiB { add("maxmem", .number(Int64((d.memoryKiB + 1023) / 1024))) }
        add("vcpus", .number(Int64(d.vcpus)))
        if let k = d.kernel { add("kernel", .string(k)) }
        if let b = d.bootloader { add("bootloader", .string(b)) }
        if let r = d.initrd { add("ramdisk", .string(r)) }
        if let c = d.cmdline { add("cmdline", .string(c)) }
        add("on_poweroff", .string(d.onPoweroff.rawValue))
        add("on_reboot", .string(d.onReboot.rawValue))
        add("on_crash", .string(d.onCrash.rawValue))
        if !d.disks.isEmpty {
            add("disk", .list(d.disks.map { disk in
                .string("format=\(disk.format.rawValue),vdev=x\(disk.target),access=\(disk.readOnly ? "ro" : "rw"),target=\(disk.source)")
            }))
        }
        if !d.interfaces.isEmpty {
            add("vif", .list(d.interfaces.map { i in
                var parts = ["mac=\(i.mac)"]
                if i.type == .bridge { parts.append("bridge=\(i.source)") }
                if let t = i.targetDevice { parts.append("vifname=\(t)") }
                return .string(parts.joined(separator: ","))
            }))
        }
        return XLConfigFile(settings: s).formatted()
    }
}

extension Substring {
    func trimmingCharacters(in c: Character) -> String {
        var s = self
        while s.first == c { s = s.dropFirst() }
        while s.last == c { s = s.dropLast() }
        return String(s)
    }
}

extension ToolstackError {
    /// A configuration file's syntax or content error, as libvirt reports
    /// one (VIR_ERR_CONF_SYNTAX).
    public static func configSyntax(_ e: XLConfigError) -> ToolstackError {
        ToolstackError(.configSyntax, "configuration file syntax error: \(e.description)")
    }
}

/// The native formats apusd converts with `virsh domxml-from-native` and
/// `domxml-to-native`.
public enum NativeConfig {
    public static let xenXL = "xen-xl"

    public static func toXML(format: String, config: String) throws(ToolstackError) -> String {
        guard format == xenXL else { throw ToolstackError.invalidArgument("unsupported config type \(format)") }
        do {
            return DomainXML.format(try XLDomain.parse(config).definition)
        } catch {
            throw .configSyntax(error)
        }
    }

    public static func fromXML(format: String, xml: String) throws(ToolstackError) -> String {
        guard format == xenXL else { throw ToolstackError.invalidArgument("unsupported config type \(format)") }
        return XLDomain.format(try DomainXML.parse(xml))
    }
}
