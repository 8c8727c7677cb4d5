import ApusSys
import Synchronization

/// A raw image file or a block device: the virtual disk's byte N is the
/// file's byte N.
public final class RawDisk: VirtualDisk, @unchecked Sendable {
    // SAFETY (Sendable): immutable but for the size (atomic); positioned I/O only.
    public let path: String
    public let file: FileDescriptor
    public let readOnly: Bool
    public let isBlockDevice: Bool
    public var format: DiskFormat { .raw }
    public var hasMetadata: Bool { false }
    public var size: UInt64 { sizeBytes.load(ordering: .acquiring) }
    private let sizeBytes: Atomic<UInt64>

    public init(path: String, readOnly: Bool) throws(DiskImageError) {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, readOnly ? .readOnly : .readWrite)
        } catch {
            throw .io("cannot open image: \(error)")
        }
        do {
            sizeBytes = Atomic(UInt64(try fd.size()))
            isBlockDevice = try fd.isBlockDevice()
        } catch {
            fd.close()
            throw .io("cannot stat image \(path): \(error)")
        }
        self.path = path
        self.file = fd
        self.readOnly = readOnly
    }

    deinit { file.close() }

    public func mapRead(offset: UInt64, length: UInt64) throws(DiskImageError) -> [ReadExtent] {
        try checkRange(offset, length)
        return length == 0 ? [] : [.file(file, offset: offset, length: length)]
    }

    public func mapWrite(offset: UInt64, length: UInt64,
                         data: (UInt64, Int) -> [UInt8]?) throws(DiskImageError) -> [(extent: WriteExtent, from: UInt64)] {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        try checkRange(offset, length)
        return [(WriteExtent(offset: offset, length: length), 0)]
    }

    private func checkRange(_ offset: UInt64, _ length: UInt64) throws(DiskImageError) {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= size else { throw .invalid("bytes \(offset)+\(length) beyond the end of the disk (\(size))") }
    }

    public func flush() throws(DiskImageError) {
        do {
            try file.dataSync()
        } catch {
            throw .io("fdatasync \(path): \(error)")
        }
    }

    public func discard(offset: UInt64, length: UInt64) throws(DiskImageError) {
        do {
            if isBlockDevice {
                try file.ioctlRange(request: 0x1277, offset: offset, length: length) // BLKDISCARD
            } else {
                try file.punchHole(offset: Int64(offset), length: Int64(length))
            }
        } catch {
            // Advisory: a file system or device that cannot discard ignores it.
            if error == .notSupported || error == .invalidArgument { return }
            throw .io("discard: \(error)")
        }
    }

    public func writeZeroes(offset: UInt64, length: UInt64, unmap: Bool) throws(DiskImageError) {
        do {
            if isBlockDevice {
                try file.ioctlRange(request: 0x127F, offset: offset, length: length) // BLKZEROOUT
                return
            }
            do {
                // ZERO_RANGE keeps blocks allocated; PUNCH_HOLE frees them.
                try file.fallocate(mode: unmap ? FileDescriptor.FallocateMode.punchHole | FileDescriptor.FallocateMode.keepSize : FileDescriptor.FallocateMode.zeroRange,
                                   offset: Int64(offset), length: Int64(length))
            } catch {
                guard error == .notSupported || error == .invalidArgument else { throw error }
                let chunk = [UInt8](repeating: 0, count: 1 << 20)
                var done: UInt64 = 0
                while done < length {
                    let n = Int(min(UInt64(chunk.count), length - done))
                    try file.writeAll(chunk[0..<n], atOffset: Int64(offset + done))
                    done += UInt64(n)
                }
            }
        } catch {
            throw .io("write-zeroes: \(error)")
        }
    }

    public func resize(to bytes: UInt64) throws(DiskImageError) {
        guard !readOnly else { throw .invalid("the disk is read-only") }
        guard !isBlockDevice else { throw .invalid("\(path) is a block device: its size is the device's") }
        guard bytes >= size else { throw .invalid("shrinking \(path) from \(size) to \(bytes) bytes would discard guest data") }
        guard bytes <= UInt64(Int64.max) else { throw .invalid("size \(bytes) is too large") }
        do {
            try file.truncate(to: Int64(bytes))
        } catch {
            throw .io("cannot grow \(path): \(error)")
        }
        sizeBytes.store(bytes, ordering: .releasing)
    }
}
