import Toolstack

// libvirt's flag sets (libvirt-host.h, libvirt-domain.h; libvirt 9.0), one
// option set per concept. Procedures declare which members they accept.

/// virConnectFlags for CONNECT_OPEN.
public struct ConnectOpenFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readOnly = Self(rawValue: 1), noAliases = Self(rawValue: 2)
}

/// virDomainXMLFlags.
public struct DomainXMLFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let secure = Self(rawValue: 1), inactive = Self(rawValue: 2)
    public static let updateCPU = Self(rawValue: 4), migratable = Self(rawValue: 8)
}

/// virDomainCreateFlags (create, start).
public struct DomainCreateFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let paused = Self(rawValue: 1), autodestroy = Self(rawValue: 2), bypassCache = Self(rawValue: 4)
    public static let forceBoot = Self(rawValue: 8), validate = Self(rawValue: 16), resetNVRAM = Self(rawValue: 32)
}

/// virDomainDefineFlags.
public struct DomainDefineFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let validate = Self(rawValue: 1)
}

/// virDomainUndefineFlagsValues.
public struct DomainUndefineFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let managedSave = Self(rawValue: 1), snapshotsMetadata = Self(rawValue: 2), nvram = Self(rawValue: 4)
    public static let keepNVRAM = Self(rawValue: 8), checkpointsMetadata = Self(rawValue: 16), tpm = Self(rawValue: 32)
    public static let keepTPM = Self(rawValue: 64)
}

/// virDomainShutdownFlagValues and virDomainRebootFlagValues (the same bits).
public struct DomainShutdownFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let acpiPowerButton = Self(rawValue: 1), guestAgent = Self(rawValue: 2), initctl = Self(rawValue: 4)
    public static let signal = Self(rawValue: 8), paravirt = Self(rawValue: 16)
}

/// virDomainDestroyFlagsValues.
public struct DomainDestroyFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let graceful = Self(rawValue: 1), removeLogs = Self(rawValue: 2)
}

/// virDomainModificationImpact plus the per-API bits that share its word
/// (VIR_DOMAIN_MEM_MAXIMUM / VCPU_MAXIMUM 4, VCPU_GUEST 8,
/// VCPU_HOTPLUGGABLE 16, DEVICE_MODIFY_FORCE 4, TYPED_PARAM_STRING_OKAY 4).
public struct DomainImpactFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let live = Self(rawValue: 1), config = Self(rawValue: 2)
    public static let maximum = Self(rawValue: 4), guest = Self(rawValue: 8), hotpluggable = Self(rawValue: 16)
    public static let force = Self(rawValue: 4)
    public static let typedParamStringOkay = Self(rawValue: TypedParameterFlags.stringOkay.rawValue)
}

/// virTypedParameterFlags alone (block stats, CPU stats).
public struct TypedParameterFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let stringOkay = Self(rawValue: 4)
}

/// virDomainConsoleFlags.
public struct DomainConsoleFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let force = Self(rawValue: 1), safe = Self(rawValue: 2)
}

/// virDomainMessageType.
public struct DomainMessageFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let deprecation = Self(rawValue: 1), tainting = Self(rawValue: 2)
}

/// virDomainSnapshotListFlags. Bit 0 is ROOTS when listing a domain's
/// snapshots and DESCENDANTS when listing a snapshot's children.
public struct DomainSnapshotListFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let roots = Self(rawValue: 1), descendants = Self(rawValue: 1), metadata = Self(rawValue: 2)
    public static let leaves = Self(rawValue: 4), noLeaves = Self(rawValue: 8), noMetadata = Self(rawValue: 16)
    public static let inactive = Self(rawValue: 32), active = Self(rawValue: 64), diskOnly = Self(rawValue: 128)
    public static let `internal` = Self(rawValue: 256), external = Self(rawValue: 512), topological = Self(rawValue: 1024)
    public static let all: Self = [.roots, .metadata, .leaves, .noLeaves, .noMetadata, .inactive, .active, .diskOnly, .internal, .external, .topological]
}

/// virDomainSnapshotCreateFlags.
public struct DomainSnapshotCreateFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let redefine = Self(rawValue: 1), current = Self(rawValue: 2), noMetadata = Self(rawValue: 4)
    public static let halt = Self(rawValue: 8), diskOnly = Self(rawValue: 16), reuseExternal = Self(rawValue: 32)
    public static let quiesce = Self(rawValue: 64), atomic = Self(rawValue: 128), live = Self(rawValue: 256)
    public static let validate = Self(rawValue: 512)
}

/// virDomainSnapshotRevertFlags.
public struct DomainSnapshotRevertFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let running = Self(rawValue: 1), paused = Self(rawValue: 2), force = Self(rawValue: 4), resetNVRAM = Self(rawValue: 8)
}

/// virDomainSnapshotDeleteFlags.
public struct DomainSnapshotDeleteFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let children = Self(rawValue: 1), metadataOnly = Self(rawValue: 2), childrenOnly = Self(rawValue: 4)
}

/// virDomainSnapshotXMLFlags.
public struct DomainSnapshotXMLFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let secure = Self(rawValue: 1)
}

/// virDomainSaveImageXMLFlags.
public struct SaveImageXMLFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let secure = Self(rawValue: 1)
}

/// virDomainSaveRestoreFlags.
public struct DomainSaveFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let bypassCache = Self(rawValue: 1), running = Self(rawValue: 2), paused = Self(rawValue: 4)
    public static let resetNVRAM = Self(rawValue: 8)
}

/// virConnectListAllDomainsFlags (the filter the toolstack applies).
extension ListFilter: WireFlags {
    /// Every filter bit libvirt 9.0 defines.
    public static let every = ListFilter(rawValue: 0xFFFF)
}

/// virConnectGetAllDomainStatsFlags: which domains, and how.
public struct DomainStatsFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let active = Self(rawValue: 1), inactive = Self(rawValue: 2)
    public static let persistent = Self(rawValue: 4), transient = Self(rawValue: 8)
    public static let running = Self(rawValue: 16), paused = Self(rawValue: 32)
    public static let shutoff = Self(rawValue: 64), other = Self(rawValue: 128)
    public static let nowait = Self(rawValue: 1 << 29), backing = Self(rawValue: 1 << 30), enforceStats = Self(rawValue: 1 << 31)

    /// The domain filter bits, as a list filter (the same values).
    var filter: ListFilter { ListFilter(rawValue: rawValue & 0xFF) }
}

/// virDomainBlockResizeFlags.
public struct DomainBlockResizeFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let bytes = Self(rawValue: 1)
}

/// virDomainGetJobStatsFlags.
public struct DomainJobStatsFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let completed = Self(rawValue: 1), keepCompleted = Self(rawValue: 2)
}

/// virDomainDeviceModifyFlags (attach, detach, update).
public typealias DomainDeviceFlags = DomainImpactFlags

/// virStoragePoolCreateFlags.
public struct StoragePoolCreateFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let build = Self(rawValue: 1), overwrite = Self(rawValue: 2), noOverwrite = Self(rawValue: 4)
}

/// virStoragePoolBuildFlags.
public struct StoragePoolBuildFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let repair = Self(rawValue: 1), resize = Self(rawValue: 2), noOverwrite = Self(rawValue: 4), overwrite = Self(rawValue: 8)
}

/// virStoragePoolDefineFlags.
public struct StoragePoolDefineFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let validate = Self(rawValue: 1)
}

/// virStorageXMLFlags.
public struct StorageXMLFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let inactive = Self(rawValue: 1)
}

/// virConnectListAllStoragePoolsFlags (the filter the storage layer applies).
public struct StoragePoolListFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Every bit libvirt 9.0 defines (state, persistence, autostart, the pool types).
    public static let every = Self(rawValue: 0xFFFFF)
}

/// virStorageVolCreateFlags.
public struct StorageVolumeCreateFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let preallocateMetadata = Self(rawValue: 1), reflink = Self(rawValue: 2), validate = Self(rawValue: 4)
}

/// virStorageVolDeleteFlags.
public struct StorageVolumeDeleteFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let zeroed = Self(rawValue: 1), withSnapshots = Self(rawValue: 2)
}

/// virStorageVolResizeFlags.
public struct StorageVolumeResizeFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let allocate = Self(rawValue: 1), delta = Self(rawValue: 2), shrink = Self(rawValue: 4)
}

/// virStorageVolUploadFlags and virStorageVolDownloadFlags (the same bit).
public struct StorageVolumeTransferFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let sparse = Self(rawValue: 1)
}

/// virStorageVolInfoFlags.
public struct StorageVolumeInfoFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let physical = Self(rawValue: 1)
}

/// virNetworkXMLFlags.
public struct NetworkXMLFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let inactive = Self(rawValue: 1)
}

/// virConnectListAllNetworksFlags (the filter the network layer applies).
public struct NetworkListFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Every bit libvirt 9.0 defines (state, persistence, autostart).
    public static let every = Self(rawValue: 0x3F)
}

/// virNetworkDefineFlags and virNetworkCreateFlags (the same bit).
public struct NetworkValidateFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let validate = Self(rawValue: 1)
}

/// virNetworkUpdateFlags.
public struct NetworkUpdateFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let live = Self(rawValue: 1), config = Self(rawValue: 2)
}
