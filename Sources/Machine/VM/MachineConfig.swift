import Sandbox
import ApusControl
import ApusSys
import VirtioSpec
import GuestMemory

/// Everything apus-hv needs to build and run one domain.
public struct MachineConfig: Sendable, Equatable {
    /// Path of the bzImage kernel.
    public var kernel: String
    /// Path of an initrd / initramfs, if any.
    public var initrd: String?
    /// Kernel command line.
    public var commandLine: String
    /// Guest RAM in MiB.
    public var memoryMiB: Int
    /// Number of vCPUs (online at boot).
    public var vcpus: Int
    /// The most vCPUs the guest may see as possible (`--max-vcpus`): the
    /// ones beyond `vcpus` are listed in the MADT as present but disabled.
    public var maxVCPUs: Int?
    /// CPUs the guest counts as possible.
    public var possibleVCPUs: Int { max(vcpus, maxVCPUs ?? vcpus) }
    /// Where COM1 goes.
    public var serial: SerialMode
    /// Path of the control socket, if any.
    public var controlSocket: String?
    /// Start with every vCPU paused (resumed through the control socket).
    public var startPaused: Bool
    /// Run under apus-hv's seccomp filters (`--no-seccomp` turns them off, for debugging).
    public var seccomp = true
    /// The jail apus-hv enters before any vCPU runs (`--jail-user`, `--jail-dir`).
    public var jail: Jail?
    /// Disks: vhost-user-blk backend sockets, in guest order (vda, vdb, ...).
    public var disks: [String] = []
    /// Network interfaces: vhost-user-net backend sockets and MACs.
    public var nets: [NetConfig] = []
    /// Shared directories: vhost-user-fs backend sockets (virtiofsd) and the tags guests mount.
    public var filesystems: [FsConfig] = []
    /// A state file to restore instead of booting (`--restore`): the
    /// machine must have the same vCPUs, memory and devices as the one
    /// saved; its backends are new processes, started by apusd.
    public var restoreFrom: String?
    /// Where to record how the domain ended (JSON), for a supervisor that
    /// may not be this process's parent (apusd after a restart).
    public var statusFile: String?
    /// Guest RAM backing: a memfd only when a vhost-user backend must map
    /// it (as Firecracker does); private anonymous memory, eligible for
    /// transparent huge pages, otherwise.
    public var memoryBacking: GuestMemoryBacking {
        if let forced = getenvString("APUS_GUEST_RAM") { return forced == "anon" ? .anonymous : .sharedMemfd }
        return needsSharedMemory ? .sharedMemfd : .anonymous
    }
    /// Whether any device's backend lives in another process.
    public var needsSharedMemory: Bool { !disks.isEmpty || !nets.isEmpty || !filesystems.isEmpty }

    public init(kernel: String, initrd: String? = nil, commandLine: String = MachineConfig.defaultCommandLine,
                memoryMiB: Int = 256, vcpus: Int = 1, serial: SerialMode = .stdio,
                controlSocket: String? = nil, startPaused: Bool = false) {
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.serial = serial
        self.controlSocket = controlSocket
        self.startPaused = startPaused
    }

    /// Console on COM1, reboot through the ACPI reset register, reboot on
    /// panic (apusd applies on_crash), and no probing for PCI, which Apus lacks.
    public static let defaultCommandLine = "console=ttyS0 reboot=acpi panic=-1 pci=off"

    /// Largest supported memory (the layout handles more; this bounds mistakes).
    public static let maxMemoryMiB = 1 << 20
    /// Largest vCPU count (one MADT entry each; APIC IDs fit in 8 bits).
    public static let maxVCPUs = 254

    /// Checks ranges; the message is what the user sees.
    public func validate() throws(MachineError) {
        guard memoryMiB >= 16 else { throw .invalidConfig("--memory must be at least 16 MiB (got \(memoryMiB))") }
        guard memoryMiB <= Self.maxMemoryMiB else { throw .invalidConfig("--memory must be at most \(Self.maxMemoryMiB) MiB") }
        guard vcpus >= 1, vcpus <= Self.maxVCPUs else { throw .invalidConfig("--vcpus must be between 1 and \(Self.maxVCPUs) (got \(vcpus))") }
        if let m = maxVCPUs {
            guard m >= vcpus, m <= Self.maxVCPUs else { throw .invalidConfig("--max-vcpus must be between --vcpus (\(vcpus)) and \(Self.maxVCPUs) (got \(m))") }
        }
        let devices = disks.count + nets.count + filesystems.count
        guard devices <= VirtioSlots.gsis.count else {
            throw .invalidConfig("at most \(VirtioSlots.gsis.count) virtio devices (got \(devices))")
        }
        var tags = Set<String>()
        for f in filesystems where !tags.insert(f.tag).inserted { throw .invalidConfig("--fs tag \"\(f.tag)\" is used twice") }
    }
}

/// Where the guest's COM1 is connected.
public enum SerialMode: Equatable, Sendable, CustomStringConvertible {
    /// This process's stdin/stdout (raw mode if stdin is a terminal).
    case stdio
    /// A new pseudo-terminal; its path is printed on stderr.
    case pty
    /// Output appended to a file; no input.
    case file(String)
    /// A listening Unix socket; one client at a time gets input and output,
    /// output is buffered while no client is connected.
    case unix(String)
    /// Discarded.
    case none

    /// Parses `stdio`, `pty`, `file:PATH`, `unix:PATH` or `none`.
    public init(parsing s: String) throws(MachineError) {
        switch s {
        case "stdio": self = .stdio
        case "pty": self = .pty
        case "none", "null": self = .none
        default:
            if s.hasPrefix("file:"), s.count > 5 { self = .file(String(s.dropFirst(5))); return }
            if s.hasPrefix("unix:"), s.count > 5 { self = .unix(String(s.dropFirst(5))); return }
            throw .invalidConfig("--serial must be stdio, pty, file:PATH, unix:PATH or none (got \"\(s)\")")
        }
    }

    public var description: String {
        switch self {
        case .stdio: return "stdio"
        case .pty: return "pty"
        case .file(let p): return "file:\(p)"
        case .unix(let p): return "unix:\(p)"
        case .none: return "none"
        }
    }
}

/// Why a machine stopped, and apus-hv's exit status for it.
public enum ExitReason: Equatable, Sendable, CustomStringConvertible {
    /// The guest powered off (ACPI S5).
    case powerOff
    /// The guest asked for a reboot (ACPI reset register, i8042, 0xCF9), or
    /// the host reset it.
    case reboot
    /// The guest crashed: triple fault, or an instruction KVM could not emulate.
    case crash(String)
    /// Apus itself failed.
    case vmmError(String)
    /// The host stopped the domain (SIGTERM/SIGINT, or `quit` on the control socket).
    case stopped

    /// What apusd reads in the status file (`on_poweroff`, `on_reboot`, `on_crash`).
    public var reason: HypervisorExit.Reason {
        switch self {
        case .powerOff: return .poweroff
        case .reboot: return .reboot
        case .crash: return .crash
        case .vmmError: return .error
        case .stopped: return .stopped
        }
    }

    /// Process exit status (documented in README.md and `apus-hv --help`).
    public var status: Int32 {
        switch self {
        case .powerOff: return HypervisorExit.Status.powerOff
        case .reboot: return HypervisorExit.Status.reboot
        case .crash: return HypervisorExit.Status.crash
        case .vmmError: return HypervisorExit.Status.vmmError
        case .stopped: return HypervisorExit.Status.stopped
        }
    }

    /// The status file's record of this exit.
    public var record: HypervisorExit { HypervisorExit(status: status, reason: reason, detail: description) }

    public var description: String {
        switch self {
        case .powerOff: return "guest powered off"
        case .reboot: return "guest reboot"
        case .crash(let why): return "guest crashed: \(why)"
        case .vmmError(let why): return "VMM error: \(why)"
        case .stopped: return "stopped by the host"
        }
    }
}

/// Errors building a machine; each is one line for the user.
public enum MachineError: Error, Sendable, CustomStringConvertible {
    case invalidConfig(String)
    case boot(BootError)
    case kvm(String)
    case system(String)

    public var description: String {
        switch self {
        case .invalidConfig(let s): return s
        case .boot(let e): return e.description
        case .kvm(let s): return s
        case .system(let s): return s
        }
    }
}

/// A network interface: its vhost-user-net backend socket and MAC address.
public struct NetConfig: Equatable, Sendable {
    public var socket: String
    public var mac: [UInt8]?
    public init(socket: String, mac: [UInt8]? = nil) { self.socket = socket; self.mac = mac }

    /// Parses `vhost-user:SOCKET[,mac=MAC]`.
    public init(parsing s: String) throws(MachineError) {
        guard s.hasPrefix("vhost-user:") else { throw .invalidConfig("--net must be vhost-user:SOCKET[,mac=MAC] (got \"\(s)\")") }
        let parts = s.dropFirst("vhost-user:".count).split(separator: ",", omittingEmptySubsequences: false)
        guard let path = parts.first, !path.isEmpty else { throw .invalidConfig("--net needs a socket path") }
        socket = String(path)
        mac = nil
        for option in parts.dropFirst() {
            guard option.hasPrefix("mac="), let m = NetConfig.parseMAC(String(option.dropFirst(4))) else {
                throw .invalidConfig("--net option \"\(option)\" (expected mac=xx:xx:xx:xx:xx:xx)")
            }
            mac = m
        }
    }

    /// Parses "52:54:00:12:34:56".
    public static func parseMAC(_ s: String) -> [UInt8]? {
        let parts = s.split(separator: ":")
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }
}

/// A shared directory: its vhost-user-fs backend socket and the tag the guest mounts.
public struct FsConfig: Equatable, Sendable {
    public var socket: String
    public var tag: String
    public init(socket: String, tag: String) { self.socket = socket; self.tag = tag }

    /// Parses `vhost-user:SOCKET,tag=TAG`.
    public init(parsing s: String) throws(MachineError) {
        guard s.hasPrefix("vhost-user:") else { throw .invalidConfig("--fs must be vhost-user:SOCKET,tag=TAG (got \"\(s)\")") }
        let parts = s.dropFirst("vhost-user:".count).split(separator: ",", omittingEmptySubsequences: false)
        guard let path = parts.first, !path.isEmpty else { throw .invalidConfig("--fs needs a socket path") }
        var tag: String?
        for option in parts.dropFirst() {
            guard option.hasPrefix("tag=") else { throw .invalidConfig("--fs option \"\(option)\" (expected tag=TAG)") }
            tag = String(option.dropFirst(4))
        }
        guard let tag else { throw .invalidConfig("--fs needs tag=TAG (the name the guest mounts)") }
        try FsConfig.validate(tag: tag)
        self.socket = String(path)
        self.tag = tag
    }

    /// A tag fills at most the 36 bytes of virtio-fs's configuration, with no NUL.
    public static func validate(tag: String) throws(MachineError) {
        guard !tag.isEmpty, tag.utf8.count <= VirtioFs.tagLength, !tag.utf8.contains(0) else {
            throw .invalidConfig("a virtio-fs tag must be 1-\(VirtioFs.tagLength) bytes with no NUL (got \"\(tag)\")")
        }
    }
}

/// Where virtio-mmio devices go: register windows and interrupt lines.
public enum VirtioSlots {
    /// GSIs for virtio devices: the IOAPIC-only pins first, then free ISA ones.
    public static let gsis: [UInt32] = [16, 17, 18, 19, 20, 21, 22, 23, 5, 6, 7, 10, 11, 12, 13, 14, 15]
    /// Register window of device `i`.
    public static func base(_ i: Int) -> UInt64 { Layout.virtioMMIOBase + UInt64(i) * Layout.virtioMMIOSize }
}
