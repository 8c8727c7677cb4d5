/// What Apus does with each element of a domain document. Modelled
/// elements become the definition; harmless ones (they change nothing the
/// guest can see) are kept and written back by `dumpxml`; everything else
/// libvirt knows is refused with "unsupported configuration: ..." naming
/// it, so a domain never starts without a device its owner asked for.
/// Elements libvirt itself does not know are ignored, as libvirt ignores
/// them, unless `--validate` asks for the schema check.
extension DomainXML {
    /// Element names of libvirt 9.0's domain schema (domaincommon.rng,
    /// cputypes.rng, basictypes.rng).
    static let schemaElements: Set<String> = [
        "acceleration", "access", "acpi", "active_pcr_banks", "adapter", "add", "address", "alias", "alignsize",
        "allocation", "apic", "arch", "arg", "audio", "audit_control", "audit_write", "auth", "avic", "backend",
        "backenddomain", "backingStore", "bandwidth", "baseBoard", "baselabel", "binary", "bios", "blkiotune", "block",
        "block_suspend", "blockio", "boot", "bootloader", "bootloader_args", "bootmenu", "cache", "cachetune",
        "capabilities", "catchup", "cbitpos", "ccf-assist", "cell", "certificate", "cfpc", "channel", "char",
        "chassis", "chown", "cid", "cipher", "clipboard", "clock", "clusterSize", "cmdline", "coalesce", "codec",
        "commandline", "compat", "config", "console", "controller", "cookie", "cookies", "counter", "cpu", "cputune",
        "current", "currentMemory", "dac_override", "dac_read_search", "database", "datacenterpath", "defaultiothread",
        "del", "deprecation", "description", "device", "devices", "dhCert", "direct", "dirty-ring", "discard", "disk",
        "distances", "domain", "downscript", "driver", "dtb", "emulator", "emulator_period", "emulator_quota",
        "emulatorpin", "emulatorsched", "encryption", "entry", "env", "event", "evmcs", "feature", "features",
        "fibrechannel", "filesystem", "filetransfer", "filterref", "firmware", "format", "fowner", "frames",
        "frequencies", "frontend", "fsetid", "genid", "geometry", "gic", "gid", "gl", "global_period", "global_quota",
        "graphics", "group", "group_name", "guest", "handle", "hap", "hard_limit", "hidden", "hint-dedicated", "host",
        "hostdev", "hpt", "htm", "hub", "hugepages", "hyperv", "ibs", "identity", "idmap", "image", "imagelabel",
        "inactiveDomain", "inbound", "init", "initarg", "initdir", "initenv", "initgroup", "initiator", "initrd",
        "inituser", "input", "interconnects", "interface", "ioapic", "iommu", "iothread", "iothread_period",
        "iothread_quota", "iothreadids", "iothreadpin", "iothreads", "iothreadsched", "iotune", "ip", "ipc_lock",
        "ipc_owner", "ipi", "iqn", "ivgen", "jpeg", "kernel", "key", "keywrap", "kill", "kvm", "label", "latency",
        "launchSecurity", "lazy_refcounts", "lease", "line", "link", "linux_immutable", "listen", "loader", "local",
        "lock", "locked", "lockspace", "log", "mac", "mac_admin", "mac_override", "master", "maxMemory", "max_size",
        "maxpagesize", "maxphysaddr", "memballoon", "memnode", "memory", "memoryBacking", "memorytune", "memtune",
        "metadata", "metadata_cache", "microcode", "min_guarantee", "mirror", "mknod", "mode", "model", "monitor",
        "mouse", "msi", "msrs", "mtu", "name", "namespace", "nested-hv", "net_admin", "net_bind_service",
        "net_broadcast", "net_raw", "node", "nodemask", "nonpae", "nosharepages", "numa", "numatune", "nvram",
        "oemStrings", "on_crash", "on_lockfailure", "on_poweroff", "on_reboot", "os", "outbound", "output", "override",
        "owner", "pae", "page", "pages", "pagesize", "panic", "parallel", "parameters", "parentaddr", "partition",
        "passthrough", "path", "perf", "period", "permissions", "playback", "pm", "pmem", "pmu", "policy",
        "poll-control", "port", "portForward", "privnet", "product", "property", "protocol", "pv-ipi", "pvspinlock",
        "quota", "range", "rate", "read_bytes_sec", "read_bytes_sec_max", "read_bytes_sec_max_length", "read_iops_sec",
        "read_iops_sec_max", "read_iops_sec_max_length", "readahead", "readonly", "reconnect", "redirdev",
        "redirfilter", "reducedPhysBits", "reenlightenment", "relaxed", "requested", "reservations", "reset",
        "resolution", "resource", "rng", "rom", "root", "route", "runtime", "rx", "sandbox", "sbbc", "script",
        "seclabel", "secret", "serial", "server", "session", "setfcap", "setgid", "setpcap", "settings", "setuid",
        "shareable", "shareipc", "sharenet", "shares", "shareuts", "shmem", "sibling", "signature", "size",
        "size_iops_sec", "slice", "slices", "smartcard", "smbios", "smm", "snapshot", "sndbuf", "soft_limit", "sound",
        "source", "space_hard_limit", "space_soft_limit", "spinlocks", "ssl", "stats", "stimer", "streaming",
        "suspend-to-disk", "suspend-to-mem", "svm", "swap_hard_limit", "synic", "sys_admin", "sys_boot", "sys_chroot",
        "sys_module", "sys_nice", "sys_pacct", "sys_ptrace", "sys_rawio", "sys_resource", "sys_time", "sys_tty_config",
        "sysinfo", "syslog", "system", "table", "tag", "target", "tb-cache", "tcg", "teaming", "thread_pool",
        "timeout", "timer", "title", "tlbflush", "topology", "total_bytes_sec", "total_bytes_sec_max",
        "total_bytes_sec_max_length", "total_iops_sec", "total_iops_sec_max", "total_iops_sec_max_length", "tpm",
        "transient", "tseg", "tune", "tx", "type", "uid", "usbdev", "usecs", "uuid", "vapic", "vcpu", "vcpupin",
        "vcpus", "vcpusched", "vendor", "vendor_id", "video", "viridian", "virtualport", "vlan", "vmcoreinfo",
        "vmport", "vmx", "vpindex", "vsock", "wake_alarm", "watchdog", "weight", "write_bytes_sec",
        "write_bytes_sec_max", "write_bytes_sec_max_length", "write_iops_sec", "write_iops_sec_max",
        "write_iops_sec_max_length", "wwn", "xen", "zlib", "zpci",
    ]

    /// Children of <domain> the model reads.
    static let modelledDomainChildren: Set<String> = [
        "name", "uuid", "title", "description", "metadata", "memory", "currentMemory", "vcpu", "os",
        "on_poweroff", "on_reboot", "on_crash", "devices", "memtune", "cputune", "blkiotune",
    ]

    /// `--validate`: every element must be one libvirt's schema has
    /// (custom metadata is its owners').
    static func checkSchema(_ e: XMLElement) throws(ToolstackError) {
        for child in e.elements() {
            guard schemaElements.contains(child.name) else {
                throw ToolstackError(.xmlError, "XML error: XML document failed to validate against schema: Unable to validate doc against the domain schema: element '\(child.name)' is not allowed in <\(e.name)> (line \(child.line))")
            }
            if child.name != "metadata" { try checkSchema(child) }
        }
    }

    static func refuse(_ what: String) -> ToolstackError { .unsupported("\(what) is not supported by Apus") }
    static func refuseDevices(_ name: String) -> ToolstackError { .unsupported("<\(name)> devices are not supported by Apus") }

    /// Sorts the children of <domain> that the model does not read: kept
    /// (returned) or refused (thrown). Unknown names are ignored.
    static func policy(_ root: XMLElement) throws(ToolstackError) -> KeptElements {
        var kept = KeptElements()
        for e in root.elements() where !modelledDomainChildren.contains(e.name) && schemaElements.contains(e.name) {
            switch e.name {
            case "features":
                for f in e.elements() where !["acpi", "apic", "pae"].contains(f.name) {
                    throw refuse("the <\(f.name)> feature")
                }
                kept.beforeLifecycle.append(e.normalized)
            case "cpu":
                // Apus passes the host's CPU through: host-passthrough (and
                // host-model, its nearest) describe what the guest gets.
                let mode = e.attribute("mode") ?? "custom"
                guard ["host-passthrough", "host-model", "maximum"].contains(mode) else {
                    throw refuse("<cpu mode='\(mode)'> (the guest sees the host's CPU: use host-passthrough)")
                }
                if let child = e.elements().first { throw refuse("<cpu><\(child.name)>") }
                kept.beforeLifecycle.append(e.normalized)
            case "clock":
                let offset = e.attribute("offset") ?? "utc"
                guard offset == "utc" else { throw refuse("<clock offset='\(offset)'> (the RTC runs in UTC)") }
                for t in e.elements() {
                    let name = t.attribute("name") ?? ""
                    let present = t.attribute("present") ?? "yes"
                    switch (t.name, name, present) {
                    case ("timer", "hpet", "no"), ("timer", "rtc", "yes"), ("timer", "pit", "yes"), ("timer", "kvmclock", "yes"): break
                    default: throw refuse("<clock><timer name='\(name)' present='\(present)'>")
                    }
                }
                kept.beforeLifecycle.append(e.normalized)
            case "pm":
                for p in e.elements() where p.attribute("enabled") != "no" {
                    throw refuse("<pm><\(p.name) enabled='\(p.attribute("enabled") ?? "")'> (no S3/S4)")
                }
                kept.afterLifecycle.append(e.normalized)
            case "memoryBacking":
                // Guest RAM is a shared memfd whenever a vhost-user backend
                // maps it (what virtiofs asks for), private otherwise.
                for c in e.elements() {
                    switch (c.name, c.attribute("type") ?? c.attribute("mode") ?? "") {
                    case ("source", "memfd"), ("access", "shared"): break
                    default: throw refuse("<memoryBacking><\(c.name)\(c.attributes.first.map { " \($0.name)='\($0.value)'" } ?? "")>")
                    }
                }
                kept.beforeLifecycle.append(e.normalized)
            case "seclabel":
                guard e.attribute("type") == "none" else { throw refuse("<seclabel type='\(e.attribute("type") ?? "dynamic")'> (no security driver)") }
                kept.afterDevices.append(e.normalized)
            case "bootloader", "bootloader_args":
                break // modelled (bootloader) or meaningless without Xen's pygrub (bootloader_args)
            case "resource":
                kept.afterDevices.append(e.normalized)
            default:
                throw refuse("<\(e.name)>")
            }
        }
        if let os = root.element("os") {
            for e in os.elements() where !["type", "kernel", "initrd", "cmdline"].contains(e.name) && schemaElements.contains(e.name) {
                guard ["boot", "bootmenu"].contains(e.name) else { throw refuse("<os><\(e.name)>") }
                kept.os.append(e.normalized)
            }
        }
        if let devices = root.element("devices") {
            for e in devices.elements() where !["disk", "interface", "filesystem", "serial", "console"].contains(e.name) && schemaElements.contains(e.name) {
                switch e.name {
                case "emulator":
                    kept.devices.insert(e.normalized, at: 0)
                case "memballoon":
                    guard e.attribute("model") == "none" else { throw refuse("<memballoon model='\(e.attribute("model") ?? "")'> (no balloon device)") }
                    kept.devices.append(e.normalized)
                case "input":
                    guard e.attribute("type") == "keyboard", (e.attribute("bus") ?? "ps2") == "ps2" else {
                        throw refuse("<input type='\(e.attribute("type") ?? "")' bus='\(e.attribute("bus") ?? "")'> (the only input is the i8042 keyboard)")
                    }
                    kept.devices.append(e.normalized)
                case "panic":
                    guard (e.attribute("model") ?? "isa") == "isa" else { throw refuse("<panic model='\(e.attribute("model") ?? "")'> (pvpanic is ISA)") }
                    kept.devices.append(e.normalized)
                case "controller":
                    guard e.attribute("type") == "usb", e.attribute("model") == "none" else {
                        throw refuse("<controller type='\(e.attribute("type") ?? "")'> (devices are virtio-mmio; there is no PCI or USB bus)")
                    }
                    kept.devices.append(e.normalized)
                case "video":
                    guard e.element("model")?.attribute("type") == "none" else { throw refuse("<video> (no display)") }
                    kept.devices.append(e.normalized)
                default:
                    throw refuseDevices(e.name)
                }
            }
        }
        return kept
    }

    /// Refuses children of a device Apus cannot honour; returns the
    /// harmless ones it keeps (boot order, link up).
    static func deviceChildren(_ e: XMLElement, modelled: Set<String>, keep: (XMLElement) -> Bool) throws(ToolstackError) -> [XMLElement] {
        var kept: [XMLElement] = []
        for c in e.elements() where !modelled.contains(c.name) && schemaElements.contains(c.name) {
            guard keep(c) else { throw refuse("<\(e.name)><\(c.name)>") }
            kept.append(c.normalized)
        }
        return kept
    }
}
