import DiskImage
/// What happens when the guest powers off, reboots or crashes (libvirt's
/// `<on_poweroff>`, `<on_reboot>`, `<on_crash>`).
public enum LifecycleAction: String, Sendable, CaseIterable {
    case destroy, restart, preserve
    case renameRestart = "rename-restart"
    case coredumpDestroy = "coredump-destroy"
    case coredumpRestart = "coredump-restart"
}

/// A disk: an image file (raw or qcow2) or a block device, served by apus-blkback.
public struct DiskDefinition: Equatable, Sendable {
    public enum SourceType: String, Sendable { case file, block, volume }
    public var type: SourceType
    /// The image path or device node (a volume's, once resolved from its pool).
    public var source: String
    /// `<source pool= volume=>` of a `type='volume'` disk.
    public var volume: VolumeReference?
    public struct VolumeReference: Equatable, Sendable {
        public var pool: String
        public var name: String
        public init(pool: String, name: String) { self.pool = pool; self.name = name }
    }
    /// Guest device name: vda, vdb, ...
    public var target: String
    public var readOnly: Bool
    /// `<driver type=...>` (raw when absent): declared, never guessed.
    public var format: DiskFormat
    /// Whether `<driver type>` was given (a volume disk without it takes the
    /// format its pool recorded for the volume).
    public var formatDeclared = true
    /// `<serial>`: what the guest reads with GET_ID (at most 20 bytes).
    public var serial: String?
    /// `<driver cache=...>`: none and directsync open the image with O_DIRECT.
    public var cache: String?
    /// Other `<driver>` attributes Apus accepts as they are (io, discard).
    public var driverOptions: [(name: String, value: String)] = []
    /// Children kept as written (`<boot order='1'/>`).
    public var kept: [XMLElement] = []

    public init(type: SourceType = .file, source: String, target: String, readOnly: Bool = false, format: DiskFormat = .raw) {
        self.type = type; self.source = source; self.target = target; self.readOnly = readOnly; self.format = format
    }

    /// Whether the image is opened bypassing the host page cache.
    public var direct: Bool { cache == "none" || cache == "directsync" }

    public static func == (a: DiskDefinition, b: DiskDefinition) -> Bool {
        a.type == b.type && a.source == b.source && a.volume == b.volume && a.target == b.target && a.readOnly == b.readOnly && a.format == b.format
            && a.serial == b.serial && a.cache == b.cache && a.kept == b.kept
            && a.driverOptions.count == b.driverOptions.count
            && zip(a.driverOptions, b.driverOptions).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

/// A network interface: a port on Dom0's switch (apus-netback).
public struct InterfaceDefinition: Equatable, Sendable {
    public enum SourceType: String, Sendable { case bridge, network }
    public var type: SourceType
    /// The bridge or network name (Dom0's switch).
    public var source: String
    /// The MAC address; assigned at define time when absent.
    public var mac: String
    /// Host-side name of the port, if the owner chose one (libvirt's
    /// generated names, vnetN, are assigned at start and never kept).
    public var targetDevice: String?
    public var model: String
    /// Children kept as written (`<boot order='2'/>`, `<link state='up'/>`).
    public var kept: [XMLElement] = []

    public init(type: SourceType = .network, source: String = "default", mac: String, targetDevice: String? = nil, model: String = "virtio") {
        self.type = type; self.source = source; self.mac = mac; self.targetDevice = targetDevice; self.model = model
    }
}

/// A host directory shared with the guest (`<filesystem type='mount'>`
/// with `<driver type='virtiofs'/>`): virtiofsd serves it in Dom0 and the
/// guest mounts it by its tag (`mount -t virtiofs TAG DIR`).
public struct FilesystemDefinition: Equatable, Sendable {
    /// `<source dir=...>`: the host directory.
    public var source: String
    /// `<target dir=...>`: the tag the guest mounts (at most 36 bytes).
    public var tag: String
    /// `<binary path=...>`: which virtiofsd (nil: the one Dom0 has).
    public var binary: String?
    /// `<binary><cache mode=...>`: virtiofsd's cache mode (auto, always, none).
    public var cache: String?
    /// `<binary xattr='on'>`, `<lock posix='on' flock='on'>`.
    public var xattr = false
    public var posixLock = false
    public var flock = false
    /// `<driver queue=...>`: kept for the XML (apus-hv's queues hold 256).
    public var queue: Int?
    /// Children kept as written (`<driver queue='1024'/>`'s element, `<alias>`).
    public var kept: [XMLElement] = []

    public init(source: String, tag: String) {
        self.source = source
        self.tag = tag
    }

    /// The virtiofsd binaries Apus runs: Debian's (QEMU's C daemon in
    /// qemu-system-common, or the Rust one from the virtiofsd package).
    /// Nothing else runs as root on a client's say-so.
    public static let knownBinaries = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"]
}

/// Elements Apus keeps without acting on them, because they change nothing
/// the guest sees (`<features><acpi/>`, `<clock offset='utc'>`,
/// `<memballoon model='none'>`...): shown again by `virsh dumpxml`.
public struct KeptElements: Equatable, Sendable {
    /// Under `<domain>`, before `<on_poweroff>` (features, cpu, clock).
    public var beforeLifecycle: [XMLElement] = []
    /// Under `<domain>`, after `<on_crash>` (pm) and after `<devices>` (seclabel, resource).
    public var afterLifecycle: [XMLElement] = []
    public var afterDevices: [XMLElement] = []
    /// Under `<os>` (boot, bootmenu).
    public var os: [XMLElement] = []
    /// Under `<devices>` (emulator first, then the rest).
    public var devices: [XMLElement] = []
    public init() {}
}

/// A domain as defined: libvirt's domain XML, the subset Apus runs.
public struct DomainDefinition: Equatable, Sendable {
    public var type = "kvm"
    public var name: String
    public var uuid: DomainUUID
    public var title: String?
    public var description: String?
    public var memoryKiB: UInt64
    public var currentMemoryKiB: UInt64
    /// The most vCPUs the domain may have (`<vcpu>N</vcpu>`).
    public var vcpus: Int
    /// `<vcpu current='N'>`: how many are online at boot (nil: all).
    public var currentVCPUs: Int?
    /// The vCPUs the guest has online.
    public var onlineVCPUs: Int { min(currentVCPUs ?? vcpus, vcpus) }
    public var osType = "hvm"
    public var arch = "x86_64"
    /// `<os><kernel>`; nil: the domain boots from its first disk (the Dom0
    /// boot loader reads the kernel, initramfs and command line GRUB would).
    public var kernel: String?
    public var initrd: String?
    public var cmdline: String?
    /// Xen's `<bootloader>` (xl.cfg `bootloader = "pygrub"`): kept as
    /// written; Apus's own boot loader runs whenever there is no kernel.
    public var bootloader: String?
    public var onPoweroff = LifecycleAction.destroy
    public var onReboot = LifecycleAction.restart
    public var onCrash = LifecycleAction.destroy
    public var disks: [DiskDefinition] = []
    public var interfaces: [InterfaceDefinition] = []
    /// Shared directories (virtiofs), in the order the guest sees them.
    public var filesystems: [FilesystemDefinition] = []
    /// `<memtune>`, `<cputune>`, `<blkiotune>`: the domain cgroup's limits.
    public var tuning = DomainTuning()
    /// A serial console on COM1 (pty), which apusd logs and `virsh console` attaches to.
    public var console = true
    /// `<metadata>`'s children, each exactly as written (custom namespaces
    /// belong to their owners; `apus:deploy` is Apus's own).
    public var metadata: [String] = []
    /// Harmless elements kept as written.
    public var kept = KeptElements()

    public init(name: String, uuid: DomainUUID = .random(), memoryKiB: UInt64 = 262_144, vcpus: Int = 1) {
        self.name = name
        self.uuid = uuid
        self.memoryKiB = memoryKiB
        self.currentMemoryKiB = memoryKiB
        self.vcpus = vcpus
    }

    /// Limits Apus enforces (those of apus-hv).
    public static let maxVCPUs = 254
    /// virtio-mmio devices (disks, interfaces and filesystems together): one interrupt line each.
    public static let maxDevices = 17
    public static let minMemoryKiB: UInt64 = 16 << 10
    public static let maxMemoryKiB: UInt64 = 1 << 30
}
