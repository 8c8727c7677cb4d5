/// virtio-fs constants (virtio 1.2 §5.11) and the FUSE protocol it carries
/// (Linux's include/uapi/linux/fuse.h, protocol 7.31, the oldest virtiofsd
/// accepts), in one place for everything that speaks the device.
public enum VirtioFs {
    /// Device ID.
    public static let deviceID: UInt32 = 26
    /// Queue 0 is the high-priority queue (FORGET, INTERRUPT); request queues follow.
    public static let hiprioQueue = 0
    public static let firstRequestQueue = 1
    /// Configuration space: tag[36] (UTF-8, NUL-padded), then le32 num_request_queues.
    public static let tagLength = 36
    public static let configSize = 40
}

/// The FUSE wire protocol as virtio-fs carries it: a request is a
/// device-readable header plus arguments, the reply a device-writable
/// header plus payload; all fields little-endian.
public enum Fuse {
    public static let kernelMajor: UInt32 = 7
    public static let kernelMinor: UInt32 = 31
    /// The root directory's node ID.
    public static let rootID: UInt64 = 1

    /// fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, padding.
    public static let inHeaderSize = 40
    /// fuse_out_header: len, error (negative errno), unique.
    public static let outHeaderSize = 16
    /// fuse_attr.
    public static let attrSize = 88
    /// fuse_entry_out: nodeid, generation, entry_valid, attr_valid, their nsecs, attr.
    public static let entryOutSize = 40 + attrSize
    /// fuse_attr_out: attr_valid, attr_valid_nsec, dummy, attr.
    public static let attrOutSize = 16 + attrSize
    /// fuse_open_out: fh, open_flags, padding.
    public static let openOutSize = 16
    /// fuse_read_in and fuse_write_in: fh, offset, size, flags, lock_owner, flags, padding.
    public static let readInSize = 40
    public static let writeInSize = 40
    /// fuse_write_out: size, padding.
    public static let writeOutSize = 8
    /// fuse_init_in (7.31: major, minor, max_readahead, flags).
    public static let initInSize = 16
    /// fuse_init_out (7.31): major, minor, max_readahead, flags, max_background,
    /// congestion_threshold, max_write, time_gran, max_pages, map_alignment, unused.
    public static let initOutSize = 64
    /// fuse_kstatfs.
    public static let statfsOutSize = 80
    /// fuse_dirent before its name: ino, off, namelen, type.
    public static let direntHeaderSize = 24

    /// Opcodes (enum fuse_opcode).
    public enum Opcode: UInt32, Sendable {
        case lookup = 1, forget = 2, getattr = 3, readlink = 5, mkdir = 9, unlink = 10, rmdir = 11, rename = 12
        case open = 14, read = 15, write = 16, statfs = 17, release = 18, fsync = 20, flush = 25, initialize = 26
        case opendir = 27, readdir = 28, releasedir = 29, create = 35, destroy = 38
    }

    // File types in a mode (S_IFMT) and the open flags the harness uses.
    public static let typeMask: UInt32 = 0o170000
    public static let typeDirectory: UInt32 = 0o040000
    public static let typeRegular: UInt32 = 0o100000
    public static let typeSymlink: UInt32 = 0o120000
    public static let openReadOnly: UInt32 = 0
    public static let openReadWrite: UInt32 = 2
    public static let openCreate: UInt32 = 0o100
    public static let openExclusive: UInt32 = 0o200
}
