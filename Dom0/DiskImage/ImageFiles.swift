import ApusSys

/// What the storage layer reports of an image file.
public struct ImageInfo: Sendable, Equatable {
    public var format: DiskFormat
    /// The virtual disk's size.
    public var virtualSize: UInt64
    /// The file's size and the bytes it has on disk.
    public var fileSize: UInt64
    public var allocated: UInt64
    public var clusterSize: UInt64?
    public var qcow2Version: UInt32?
    /// The backing file as the header names it, and its declared format (qcow2).
    public var backingFile: String?
    public var backingFormat: DiskFormat?
}

/// Whole-file operations on images, for storage volumes: create, inspect,
/// copy, wipe, resize. All of them go through this library's formats
/// (nothing runs qemu-img). They block: callers run them off their executor.
public enum ImageFiles {
    /// The largest chunk a copy moves at once.
    static let chunk = 1 << 20

    /// Inspects `path` as `format` (declared, never guessed).
    public static func inspect(_ path: String, format: DiskFormat) throws(DiskImageError) -> ImageInfo {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .readOnly)
        } catch {
            throw .io("cannot open \(path): \(error)")
        }
        defer { fd.close() }
        let usage: (size: Int64, allocated: Int64, isBlockDevice: Bool)
        do {
            usage = try fd.usage()
        } catch {
            throw .io("cannot stat \(path): \(error)")
        }
        var info = ImageInfo(format: format, virtualSize: UInt64(usage.size), fileSize: UInt64(usage.size), allocated: UInt64(usage.allocated))
        if format == .qcow2 {
            let bytes: [UInt8]
            do {
                bytes = try fd.read(count: 65536, atOffset: 0)
            } catch {
                throw .io("cannot read \(path): \(error)")
            }
            let h = try Qcow2Header.parse(bytes, fileSize: UInt64(usage.size))
            info.virtualSize = h.size
            info.clusterSize = h.clusterSize
            info.qcow2Version = h.version
            info.backingFile = h.backingFile
            info.backingFormat = h.backingFile == nil ? nil : (h.backingFormat.flatMap(DiskFormat.init(rawValue:)) ?? .raw)
        }
        return info
    }

    /// The files a disk reads, top first: `path`, then each backing file as
    /// the qcow2 library opens it (relative names against the overlay's
    /// directory, format from the overlay's header, raw when undeclared),
    /// depth-limited as it is. Stops at the first image it cannot inspect.
    public static func chain(_ path: String, format: DiskFormat) -> [(path: String, format: DiskFormat)] {
        var out: [(path: String, format: DiskFormat)] = []
        var path = path, format = format
        for _ in 0...Qcow2Spec.maximumBackingDepth {
            out.append((path, format))
            guard format == .qcow2, let info = try? inspect(path, format: format), let b = info.backingFile else { break }
            path = b.hasPrefix("/") ? b : FileSystem.directory(of: path) + "/" + b
            format = info.backingFormat ?? .raw
        }
        return out
    }

    /// Whether the file starts like a qcow2 image whose header parses: used
    /// only when a file appears in a storage pool that no one declared a
    /// format for (as libvirt's dir pools report what they find); the pool
    /// then records the answer and never asks the file again.
    public static func looksLikeQcow2(_ path: String) -> Bool {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return false }
        defer { fd.close() }
        guard let size = try? fd.size(), let bytes = try? fd.read(count: 65536, atOffset: 0) else { return false }
        return (try? Qcow2Header.parse(bytes, fileSize: UInt64(size))) != nil
    }

    /// How a new image's space is reserved: none (sparse), its metadata
    /// (qcow2: every cluster mapped, read as zeroes), or all of it (raw).
    public enum Preallocation: Sendable { case sparse, metadata, full }

    /// Creates a new image (the file must not exist). qcow2 may name a
    /// backing file with its format; a qcow2 image is never preallocated
    /// further than its metadata.
    public static func create(_ path: String, format: DiskFormat, size: UInt64, preallocation: Preallocation = .sparse,
                              clusterSize: UInt64? = nil, backingFile: String? = nil, backingFormat: DiskFormat? = nil,
                              mode: UInt32 = 0o600) throws(DiskImageError) {
        guard size <= UInt64(Int64.max) else { throw .invalid("size \(size) is too large") }
        switch format {
        case .raw:
            guard backingFile == nil else { throw .invalid("a raw image has no backing file") }
            let fd: FileDescriptor
            do {
                fd = try FileDescriptor.open(path, [.readWrite, .create, .exclusive], mode: .init(mode))
            } catch {
                throw .io("cannot create \(path): \(error)")
            }
            defer { fd.close() }
            do {
                try fd.truncate(to: Int64(size))
                if preallocation == .full && size > 0 { try fd.fallocate(mode: 0, offset: 0, length: Int64(size)) }
                try fd.dataSync()
            } catch {
                FileSystem.remove(path)
                throw .io("cannot size \(path) to \(size) bytes: \(error)")
            }
        case .qcow2:
            var bits: UInt32 = 16
            if let c = clusterSize {
                guard c.nonzeroBitCount == 1 else { throw .invalid("cluster size \(c) is not a power of two") }
                bits = UInt32(c.trailingZeroBitCount)
            }
            do {
                try Qcow2Image.create(path: path, size: size, clusterBits: bits, backingFile: backingFile, backingFormat: backingFormat)
                if preallocation != .sparse {
                    guard backingFile == nil else { throw DiskImageError.invalid("an overlay cannot be preallocated: its backing file's data would be hidden") }
                    try Qcow2Image(path: path, readOnly: false).preallocateMetadata()
                }
                try FileSystem.setPermissions(path, mode: mode)
            } catch let e as DiskImageError {
                FileSystem.remove(path)
                throw e
            } catch {
                FileSystem.remove(path)
                throw .io("cannot set the mode of \(path): \(error)")
            }
        }
    }

    /// Copies the virtual disk `source` (in `sourceFormat`, backing chain
    /// included) into the new image `destination` of `format` and at least
    /// the source's size. Zero ranges are not written, so the copy stays sparse.
    public static func copy(from source: String, format sourceFormat: DiskFormat, to destination: String, format: DiskFormat,
                            size: UInt64? = nil, clusterSize: UInt64? = nil, mode: UInt32 = 0o600) throws(DiskImageError) {
        let input = try DiskImages.open(source, format: sourceFormat, readOnly: true)
        let total = max(size ?? 0, input.size)
        try create(destination, format: format, size: total, clusterSize: clusterSize, mode: mode)
        do {
            let output = try DiskImages.open(destination, format: format, readOnly: false)
            var offset: UInt64 = 0
            while offset < input.size {
                let n = min(UInt64(chunk), input.size - offset)
                let extents = try input.mapRead(offset: offset, length: n)
                var at = offset
                for e in extents {
                    defer { at += e.length }
                    if case .zero = e { continue }
                    let bytes = try [e].gathered()
                    if bytes.allSatisfy({ $0 == 0 }) { continue }
                    try output.write(bytes, at: at)
                }
                offset += n
            }
            try output.flush()
        } catch {
            FileSystem.remove(destination)
            throw error
        }
    }

    /// Makes every byte of the virtual disk read as zero, and frees its
    /// space where the file system allows (a qcow2 image stays a valid image).
    public static func wipe(_ path: String, format: DiskFormat) throws(DiskImageError) {
        let disk = try DiskImages.open(path, format: format, readOnly: false)
        var offset: UInt64 = 0
        // In pieces, so a huge raw volume's punch is not one unbounded call.
        let piece: UInt64 = 1 << 30
        while offset < disk.size {
            let n = min(piece, disk.size - offset)
            try disk.writeZeroes(offset: offset, length: n, unmap: true)
            offset += n
        }
        try disk.flush()
    }

    /// Changes the virtual size. Shrinking needs `allowShrink` and is raw
    /// only (qcow2 shrinking would drop clusters Apus does not relocate);
    /// `allocate` reserves a raw file's new space.
    public static func resize(_ path: String, format: DiskFormat, to size: UInt64, allowShrink: Bool, allocate: Bool) throws(DiskImageError) {
        let disk = try DiskImages.open(path, format: format, readOnly: false)
        let old = disk.size
        if size < old {
            guard allowShrink else { throw .invalid("cannot shrink the volume from \(old) to \(size) bytes without the shrink flag") }
            guard format == .raw, let raw = disk as? RawDisk, !raw.isBlockDevice else {
                throw .unsupported("shrinking a \(format.rawValue) volume is not supported")
            }
            do {
                try raw.file.truncate(to: Int64(size))
                try raw.file.dataSync()
            } catch {
                throw .io("cannot shrink \(path): \(error)")
            }
            return
        }
        guard size > old else { return }
        try disk.resize(to: size)
        if allocate, format == .raw {
            do {
                try disk.file.fallocate(mode: 0, offset: Int64(old), length: Int64(size - old))
            } catch {
                throw .io("cannot allocate \(size - old) bytes in \(path): \(error)")
            }
        }
        try disk.flush()
    }
}

/// Writes a stream of bytes and holes into a file from an offset (a
/// storage volume's upload): data is written in place, a hole is skipped
/// and punched, so the file reads back as the stream.
public final class FileStreamWriter: @unchecked Sendable {
    // SAFETY (Sendable): used by one thread at a time (the stream's writer).
    let fd: FileDescriptor
    public private(set) var position: UInt64
    /// Bytes the stream may still write (nil: up to any length).
    private var remaining: UInt64?
    public let path: String

    /// Opens `path` for writing at `offset`; `length` 0 means to the end of the stream.
    public init(path: String, offset: UInt64, length: UInt64) throws(DiskImageError) {
        do {
            fd = try FileDescriptor.open(path, .writeOnly)
        } catch {
            throw .io("cannot open \(path) for writing: \(error)")
        }
        self.path = path
        position = offset
        remaining = length == 0 ? nil : length
    }

    deinit { fd.close() }

    private func take(_ n: UInt64) throws(DiskImageError) {
        if let r = remaining {
            guard n <= r else { throw .invalid("the stream sent more than the \(r) bytes left of the requested range") }
            remaining = r - n
        }
    }

    public func write(_ bytes: [UInt8]) throws(DiskImageError) {
        try take(UInt64(bytes.count))
        do {
            try fd.writeAll(bytes, atOffset: Int64(position))
        } catch {
            throw .io("write to \(path) at \(position): \(error)")
        }
        position += UInt64(bytes.count)
    }

    public func hole(_ length: UInt64) throws(DiskImageError) {
        try take(length)
        guard length > 0 else { return }
        let (end, overflow) = position.addingReportingOverflow(length)
        guard !overflow, end <= UInt64(Int64.max) else { throw .invalid("hole of \(length) bytes past the largest file") }
        do {
            let size = UInt64(try fd.size())
            if end > size { try fd.truncate(to: Int64(end)) }
            // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE over what was there.
            let punchEnd = min(end, size)
            if punchEnd > position { try fd.punchHole(offset: Int64(position), length: Int64(punchEnd - position)) }
        } catch {
            throw .io("hole in \(path) at \(position): \(error)")
        }
        position = end
    }

    /// Makes what was written durable.
    public func finish() throws(DiskImageError) {
        do {
            try fd.dataSync()
        } catch {
            throw .io("sync \(path): \(error)")
        }
    }
}

/// Reads a file range as a stream of data chunks and holes (a storage
/// volume's download; holes only when the client takes sparse streams).
public final class FileStreamReader: @unchecked Sendable {
    // SAFETY (Sendable): used by one thread at a time (the stream's reader).
    let fd: FileDescriptor
    private var position: UInt64
    private let end: UInt64
    private let sparse: Bool

    public enum Piece: Equatable, Sendable {
        case data([UInt8])
        case hole(UInt64)
        case end
    }

    public init(path: String, offset: UInt64, length: UInt64, sparse: Bool) throws(DiskImageError) {
        do {
            fd = try FileDescriptor.open(path, .readOnly)
            let size = UInt64(try fd.size())
            position = min(offset, size)
            end = length == 0 ? size : min(size, offset &+ length < offset ? size : offset + length)
        } catch {
            throw .io("cannot open \(path) for reading: \(error)")
        }
        self.sparse = sparse
    }

    deinit { fd.close() }

    /// The next piece, at most `maxChunk` bytes of data.
    public func next(maxChunk: Int) throws(DiskImageError) -> Piece {
        guard position < end else { return .end }
        var dataEnd = end
        if sparse {
            do {
                let data = try fd.nextData(from: Int64(position)).map(UInt64.init) ?? end
                if data > position {
                    let n = min(data, end) - position
                    position += n
                    return .hole(n)
                }
                dataEnd = min(end, UInt64(try fd.nextHole(from: Int64(position))))
            } catch {
                throw .io("seek: \(error)")
            }
        }
        let n = Int(min(UInt64(maxChunk), dataEnd - position))
        let bytes: [UInt8]
        do {
            bytes = try fd.read(count: n, atOffset: Int64(position))
        } catch {
            throw .io("read at \(position): \(error)")
        }
        guard !bytes.isEmpty else { return .end }
        position += UInt64(bytes.count)
        return .data(bytes)
    }
}
