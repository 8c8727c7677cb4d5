/// The qcow2 format's constants, from QEMU's docs/interop/qcow2.txt. Every
/// other file takes them from here.
public enum Qcow2Spec {
    /// "QFI\xfb".
    public static let magic: UInt32 = 0x5146_49FB
    /// Bytes of a version 2 header; version 3 headers say their length.
    public static let version2HeaderLength = 72
    /// The shortest version 3 header (up to and including header_length).
    public static let version3MinimumHeaderLength = 104
    public static let minimumClusterBits: UInt32 = 9
    public static let maximumClusterBits: UInt32 = 21

    /// Header extension types.
    public enum Extension {
        public static let end: UInt32 = 0
        public static let backingFormat: UInt32 = 0xE279_2ACA
        public static let featureNameTable: UInt32 = 0x6803_F857
        public static let bitmaps: UInt32 = 0x2385_2875
        public static let fullDiskEncryption: UInt32 = 0x0537_BE77
        public static let externalDataFile: UInt32 = 0x4441_5441
    }

    /// incompatible_features bits (a reader that does not know one must refuse).
    public enum Incompatible {
        public static let dirty: UInt64 = 1 << 0
        public static let corrupt: UInt64 = 1 << 1
        public static let externalDataFile: UInt64 = 1 << 2
        public static let compressionType: UInt64 = 1 << 3
        public static let extendedL2: UInt64 = 1 << 4
        /// What Apus reads; the rest are refused by name.
        public static let understood: UInt64 = dirty | corrupt | compressionType
        public static let names: [Int: String] = [
            0: "dirty", 1: "corrupt", 2: "external data file", 3: "compression type", 4: "extended L2 entries",
        ]
    }

    /// compatible_features bits.
    public enum Compatible {
        public static let lazyRefcounts: UInt64 = 1 << 0
    }

    /// autoclear_features bits: a writer that does not maintain what one
    /// stands for clears it.
    public enum Autoclear {
        public static let bitmaps: UInt64 = 1 << 0
        public static let rawExternalData: UInt64 = 1 << 1
    }

    /// L1 and L2 table entries.
    public enum Entry {
        /// The cluster's refcount is exactly one: it may be written in place.
        public static let copied: UInt64 = 1 << 63
        /// L2: the cluster is compressed.
        public static let compressed: UInt64 = 1 << 62
        /// L2 (version 3): the cluster reads as zeroes.
        public static let zero: UInt64 = 1 << 0
        /// The host offset of an L2 table (L1) or a standard cluster (L2).
        public static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
        /// Bits that must be zero in an L1 entry.
        public static let l1Reserved: UInt64 = 0x7F00_0000_0000_01FF
        /// Bits that must be zero in a standard L2 entry.
        public static let l2Reserved: UInt64 = 0x3F00_0000_0000_01FE
    }

    /// A refcount table entry's offset bits.
    public static let refcountTableOffsetMask: UInt64 = 0xFFFF_FFFF_FFFF_FE00

    /// Size of a compressed cluster's sector unit.
    public static let compressedSectorSize: UInt64 = 512

    /// QEMU's bounds on the tables it loads whole (block/qcow2.h), which
    /// also bound what an image can make Apus allocate.
    public static let maximumL1Bytes = 32 << 20
    public static let maximumRefcountTableBytes = 8 << 20
    /// Longest backing file name (QEMU: 1023 bytes).
    public static let maximumBackingNameLength = 1023
    /// A chain of backing files deeper than this is refused.
    public static let maximumBackingDepth = 16
    /// The largest virtual size (QEMU's QCOW_MAX... bound: 2^63 bytes less a cluster).
    public static let maximumVirtualSize: UInt64 = 1 << 62
}
