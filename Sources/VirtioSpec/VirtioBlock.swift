/// virtio-blk constants (virtio 1.2 §5.2), in one place for everything
/// that speaks the device: apus-hv's frontend, apus-blkback, the harness.
public enum VirtioBlock {
    /// Device ID.
    public static let deviceID: UInt32 = 2
    public static let sectorSize: UInt64 = 512

    // Feature bits.
    public static let featureSizeMax: UInt64 = 1 << 1
    public static let featureSegMax: UInt64 = 1 << 2
    public static let featureReadOnly: UInt64 = 1 << 5
    public static let featureBlockSize: UInt64 = 1 << 6
    public static let featureFlush: UInt64 = 1 << 9
    public static let featureTopology: UInt64 = 1 << 10
    public static let featureMultiQueue: UInt64 = 1 << 12
    public static let featureDiscard: UInt64 = 1 << 13
    public static let featureWriteZeroes: UInt64 = 1 << 14

    // Request types.
    public static let typeIn: UInt32 = 0
    public static let typeOut: UInt32 = 1
    public static let typeFlush: UInt32 = 4
    public static let typeGetID: UInt32 = 8
    public static let typeDiscard: UInt32 = 11
    public static let typeWriteZeroes: UInt32 = 13

    // Status values.
    public static let statusOK: UInt8 = 0
    public static let statusIOError: UInt8 = 1
    public static let statusUnsupported: UInt8 = 2

    /// Bytes of the configuration space through write_zeroes_may_unmap (§5.2.4).
    public static let configSize = 60

    /// Length of the GET_ID string.
    public static let idLength = 20
    /// Bytes of a discard / write-zeroes segment.
    public static let segmentSize = 16
    /// write-zeroes segment flag: the device may unmap.
    public static let writeZeroesUnmap: UInt32 = 1

    /// Limits advertised in the config space.
    public static let maxSegments: UInt32 = 254
    public static let maxDiscardSectors: UInt32 = 0x3FFF_FFFF
    public static let maxDiscardSegments: UInt32 = 32
}
