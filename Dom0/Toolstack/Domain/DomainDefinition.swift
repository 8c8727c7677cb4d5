/// What happens when the guest powers off, reboots or crashes (libvirt's
/// `<on_poweroff>`, `<on_reboot>`, `<on_crash>`).
public enum LifecycleAction: String, Sendable, CaseIterable {
    case destroy, restart, preserve
    case renameRestart = "rename-restart"
    case coredumpDestroy = "coredump-destroy"
    case coredumpRestart = "coredump-restart"
}

/// A disk: a raw image file or a block device, served by apus-blkback.
public struct DiskDefinition: Equatable, Sendable {
    public enum SourceType: String, Sendable { case file, block }
    public var type: SourceType
    /// The image path or device node.
    public var source: String
    /// Guest device name: vda, vdb, ...
    public var target: String
    public var readOnly: Bool
    /// `<driver type=...>`; only raw is served.
    public var format: String

    public init(type: SourceType = .file, source: String, target: String, readOnly: Bool = false, format: String = "raw") {
        self.type = type; self.source = source; self.target = target; self.readOnly = readOnly; self.format = format
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
    /// Host-side name of the port (vnetN), if given.
    public var targetDevice: String?
    public var model: String

    public init(type: SourceType = .network, source: String = "default", mac: String, targetDevice: String? = nil, model: String = "virtio") {
        self.type = type; self.source = source; self.mac = mac; self.targetDevice = targetDevice; self.model = model
    }
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
    public var vcpus: Int
    public var osType = "hvm"
    public var arch = "x86_64"
    public var kernel: String?
    public var initrd: String?
    public var cmdline: String?
    public var onPoweroff = LifecycleAction.destroy
    public var onReboot = LifecycleAction.restart
    public var onCrash = LifecycleAction.destroy
    public var disks: [DiskDefinition] = []
    public var interfaces: [InterfaceDefinition] = []
    /// A serial console on COM1 (pty), which apusd logs and `virsh console` attaches to.
    public var console = true

    public init(name: String, uuid: DomainUUID = .random(), memoryKiB: UInt64 = 262_144, vcpus: Int = 1) {
        self.name = name
        self.uuid = uuid
        self.memoryKiB = memoryKiB
        self.currentMemoryKiB = memoryKiB
        self.vcpus = vcpus
    }

    /// Limits Apus enforces (those of apus-hv).
    public static let maxVCPUs = 254
    public static let minMemoryKiB: UInt64 = 16 << 10
    public static let maxMemoryKiB: UInt64 = 1 << 30
}
