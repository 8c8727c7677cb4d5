import ApusSys
import Synchronization

/// The disk behind a block backend: a raw image file or a block device.
public final class BlockImage: @unchecked Sendable {
    // SAFETY (Sendable): immutable after init but for the size (atomic); the
    // descriptors are used with positioned I/O (pread/pwrite, io_uring)
    // that shares no file offset.
    public let path: String
    /// Descriptor for data I/O (O_DIRECT with `--direct`).
    public let fd: FileDescriptor
    /// A buffered descriptor, for requests whose guest buffers are not
    /// aligned enough for O_DIRECT, and for metadata operations.
    public let bufferedFD: FileDescriptor
    /// Bytes the device exposes (grows with ``resize(to:)``).
    public var size: UInt64 { sizeBytes.load(ordering: .acquiring) }
    private let sizeBytes: Atomic<UInt64>
    public let readOnly: Bool
    public let direct: Bool
    public let isBlockDevice: Bool
    /// The GET_ID string (20 bytes at most).
    public let serial: [UInt8]

    public struct OpenError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(path: String, readOnly: Bool, direct: Bool, serial: String? = nil) throws(OpenError) {
        let mode: FileDescriptor.OpenOptions = readOnly ? .readOnly : .readWrite
        let buffered: FileDescriptor
        do {
            buffered = try FileDescriptor.open(path, mode)
        } catch {
            throw OpenError(description: "cannot open image: \(error)")
        }
        var dataFD = buffered
        if direct {
            do {
                dataFD = try FileDescriptor.open(path, mode.union(.direct))
            } catch {
                buffered.close()
                throw OpenError(description: "cannot open image with O_DIRECT: \(error)")
            }
        }
        do {
            sizeBytes = Atomic(UInt64(try buffered.size()))
            isBlockDevice = try buffered.isBlockDevice()
        } catch {
            buffered.close()
            if dataFD != buffered { dataFD.close() }
            throw OpenError(description: "cannot stat image \(path): \(error)")
        }
        self.path = path
        self.fd = dataFD
        self.bufferedFD = buffered
        self.readOnly = readOnly
        self.direct = direct
        let id = serial ?? String(path.split(separator: "/").last ?? "apus-disk")
        self.serial = Array(id.utf8.prefix(VirtioBlock.idLength))
    }

    /// Capacity in 512-byte sectors (a partial last sector is not exposed).
    public var capacitySectors: UInt64 { size / VirtioBlock.sectorSize }

    /// Grows the image file to `bytes` (sparse: the new tail reads as zeroes).
    /// Block devices change size with the device; shrinking would discard
    /// what the guest wrote, so both are refused.
    public func resize(to bytes: UInt64) throws(OpenError) {
        guard !readOnly else { throw OpenError(description: "the disk is read-only") }
        guard !isBlockDevice else { throw OpenError(description: "\(path) is a block device: its size is the device's") }
        guard bytes % VirtioBlock.sectorSize == 0 else { throw OpenError(description: "size \(bytes) is not a multiple of 512 bytes") }
        guard bytes >= size else { throw OpenError(description: "shrinking \(path) from \(size) to \(bytes) bytes would discard guest data") }
        guard bytes <= UInt64(Int64.max) else { throw OpenError(description: "size \(bytes) is too large") }
        do {
            try bufferedFD.truncate(to: Int64(bytes))
        } catch {
            throw OpenError(description: "cannot grow \(path): \(error)")
        }
        sizeBytes.store(bytes, ordering: .releasing)
    }

    /// Discards (punches holes in) a range.
    public func discard(offset: UInt64, length: UInt64) throws(Errno) {
        if isBlockDevice {
            try blockDeviceRange(request: 0x1277, offset: offset, length: length) // BLKDISCARD
        } else {
            try bufferedFD.fallocate(mode: 0x02 | 0x01, offset: Int64(offset), length: Int64(length)) // PUNCH_HOLE|KEEP_SIZE
        }
    }

    /// Zeroes a range (unmapping it where allowed).
    public func writeZeroes(offset: UInt64, length: UInt64, unmap: Bool) throws(Errno) {
        if isBlockDevice {
            try blockDeviceRange(request: 0x127F, offset: offset, length: length) // BLKZEROOUT
            return
        }
        do {
            // ZERO_RANGE keeps blocks allocated; PUNCH_HOLE frees them.
            try bufferedFD.fallocate(mode: unmap ? (0x02 | 0x01) : 0x10, offset: Int64(offset), length: Int64(length))
        } catch {
            guard error == .notSupported || error == .invalidArgument else { throw error }
            try writeZeroBytes(offset: offset, length: length)
        }
    }

    private func writeZeroBytes(offset: UInt64, length: UInt64) throws(Errno) {
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var done: UInt64 = 0
        while done < length {
            let n = Int(min(UInt64(chunk.count), length - done))
            try bufferedFD.writeAll(chunk[0..<n], atOffset: Int64(offset + done))
            done += UInt64(n)
        }
    }

    private func blockDeviceRange(request: UInt, offset: UInt64, length: UInt64) throws(Errno) {
        try bufferedFD.ioctlRange(request: request, offset: offset, length: length)
    }

    deinit {
        if fd != bufferedFD { fd.close() }
        bufferedFD.close()
    }
}
