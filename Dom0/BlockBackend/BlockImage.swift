import VirtioSpec
import ApusSys
import DiskImage

/// The disk behind a block backend: a virtual disk of a declared format
/// (raw file or block device, qcow2 with its backing chain), plus what the
/// backend adds: an O_DIRECT descriptor for data and the GET_ID serial.
public final class BlockImage: @unchecked Sendable {
    // SAFETY (Sendable): immutable after init; the disk is thread-safe and
    // the descriptors are used with positioned I/O only.
    public let path: String
    public let disk: any VirtualDisk
    /// Descriptor for data I/O on the top image (O_DIRECT with `--direct`).
    public let fd: FileDescriptor
    /// The buffered descriptor of the top image, for requests whose guest
    /// buffers are not aligned enough for O_DIRECT.
    public var bufferedFD: FileDescriptor { disk.file }
    /// Bytes the device exposes (grows with ``resize(to:)``).
    public var size: UInt64 { disk.size }
    public var readOnly: Bool { disk.readOnly }
    public var format: DiskFormat { disk.format }
    public let direct: Bool
    /// Whether the top image lives in memory (tmpfs, ramfs): its I/O is a
    /// page copy that cannot wait for a device, cheaper done on the queue's
    /// own thread than handed to a kernel worker and back.
    public let inMemory: Bool
    /// The GET_ID string (20 bytes at most).
    public let serial: [UInt8]

    public struct OpenError: Error, CustomStringConvertible {
        public let description: String
    }

    /// `allowed`, when given, is where the image's backing files may be.
    public init(path: String, format: DiskFormat = .raw, readOnly: Bool, direct: Bool, serial: String? = nil, allowed: AllowedPaths? = nil,
                warn: @escaping @Sendable (String) -> Void = { _ in }) throws(OpenError) {
        do {
            disk = try DiskImages.open(path, format: format, readOnly: readOnly, allowed: allowed, warn: warn)
        } catch {
            throw OpenError(description: "cannot open \(path) as \(format.rawValue): \(error)")
        }
        // A restarted backend must find every write it acknowledged: qcow2
        // metadata goes to the file as it changes (see Qcow2Image).
        (disk as? Qcow2Image)?.durableAcrossRestarts = !readOnly
        var dataFD = disk.file
        if direct {
            do {
                dataFD = try FileDescriptor.open(path, (readOnly ? FileDescriptor.OpenOptions.readOnly : .readWrite).union(.direct))
            } catch {
                throw OpenError(description: "cannot open image with O_DIRECT: \(error)")
            }
        }
        self.path = path
        self.fd = dataFD
        self.direct = direct
        inMemory = disk.file.isInMemory
        let id = serial ?? String(path.split(separator: "/").last ?? "apus-disk")
        self.serial = Array(id.utf8.prefix(VirtioBlock.idLength))
    }

    /// Capacity in 512-byte sectors (a partial last sector is not exposed).
    public var capacitySectors: UInt64 { size / VirtioBlock.sectorSize }

    /// Grows the disk to `bytes` (the new tail reads as zeroes); shrinking
    /// would discard what the guest wrote, so it is refused, as is resizing
    /// a block device (its size is the device's).
    public func resize(to bytes: UInt64) throws(OpenError) {
        guard bytes % VirtioBlock.sectorSize == 0 else { throw OpenError(description: "size \(bytes) is not a multiple of 512 bytes") }
        do {
            try disk.resize(to: bytes)
        } catch {
            throw OpenError(description: "\(error)")
        }
    }

    /// Flushes the image and gives back what a qcow2 image reserved ahead
    /// (apus-blkback, shutting down with nothing in flight).
    public func close() {
        try? (disk as? Qcow2Image)?.close()
    }

    /// The qcow2 image internal snapshots live in (others refuse them, as QEMU does).
    func snapshotImage() throws(OpenError) -> Qcow2Image {
        guard let q = disk as? Qcow2Image else {
            throw OpenError(description: "\(path) is a \(format.rawValue) image: internal snapshots need qcow2")
        }
        return q
    }

    /// Takes an internal snapshot of the disk; nothing may be in flight.
    /// One of the same name is replaced, as QEMU's savevm replaces it (apusd
    /// asks only for names its metadata does not hold: what is replaced is
    /// a leftover of a snapshot it did not see through, or qemu-img's).
    public func createSnapshot(name: String, dateSeconds: UInt32) throws(OpenError) -> Qcow2Snapshot {
        do {
            let image = try snapshotImage()
            if image.snapshots.contains(where: { $0.name == name }) { try image.deleteSnapshot(name) }
            return try image.createSnapshot(name: name, dateSeconds: dateSeconds)
        } catch let e as OpenError {
            throw e
        } catch {
            throw OpenError(description: "\(error)")
        }
    }

    /// Deletes an internal snapshot; nothing may be in flight.
    public func deleteSnapshot(_ idOrName: String) throws(OpenError) {
        do {
            try snapshotImage().deleteSnapshot(idOrName)
        } catch let e as OpenError {
            throw e
        } catch {
            throw OpenError(description: "\(error)")
        }
    }

    /// The descriptor data for `extentFD` moves through: the O_DIRECT one
    /// for the top image when the guest buffers allow it.
    func dataDescriptor(for extentFD: FileDescriptor, aligned: Bool) -> FileDescriptor {
        // In memory there is no device to bypass a cache for.
        direct && !inMemory && aligned && extentFD == disk.file ? fd : extentFD
    }

    /// Whether I/O on `fd` is a copy to or from memory (see ``inMemory``).
    func isInMemory(_ fd: FileDescriptor) -> Bool {
        inMemory && fd == disk.file
    }

    deinit {
        if fd != disk.file { fd.close() }
    }
}
