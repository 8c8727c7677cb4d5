import ApusSys

/// A disk image format. Always declared by whoever configures the disk
/// (`--format`, `<driver type>`, xl.cfg's `format=`, a qcow2 header's
/// backing-format extension), never guessed from a file's contents: a guest
/// that writes a qcow2 header into its raw disk must not make Dom0 open a
/// host file named in it.
public enum DiskFormat: String, Sendable, CaseIterable {
    case raw
    case qcow2

    /// Parses a user's format name, with an error listing the ones Apus has.
    public init(name: String) throws(DiskImageError) {
        guard let f = DiskFormat(rawValue: name) else {
            throw .unsupported("disk format '\(name)' is not supported (Apus reads \(DiskFormat.allCases.map(\.rawValue).joined(separator: " and ")))")
        }
        self = f
    }
}

public enum DiskImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The image's bytes are inconsistent (a header, a table, an entry).
    case malformed(String)
    /// A valid image that uses something Apus does not implement.
    case unsupported(String)
    /// The host refused an operation.
    case io(String)
    /// A request the image cannot take (read-only, out of range, shrinking).
    case invalid(String)

    public var description: String {
        switch self {
        case .malformed(let s): return "corrupt image: \(s)"
        case .unsupported(let s), .io(let s), .invalid(let s): return s
        }
    }
}

/// Where a range of the virtual disk's bytes lives, for reading.
public enum ReadExtent: Equatable, Sendable {
    /// At `offset` of an image file (the top image or a backing file).
    case file(FileDescriptor, offset: UInt64, length: UInt64)
    /// Reads as zeroes.
    case zero(length: UInt64)
    /// Bytes Apus produced (a decompressed cluster's part).
    case bytes(ArraySlice<UInt8>)

    public var length: UInt64 {
        switch self {
        case .file(_, _, let n), .zero(let n): return n
        case .bytes(let b): return UInt64(b.count)
        }
    }
}

/// A range of the top image file a write lands on in place.
public struct WriteExtent: Equatable, Sendable {
    public var offset: UInt64
    public var length: UInt64
    public init(offset: UInt64, length: UInt64) { self.offset = offset; self.length = length }
}

/// A virtual disk as the block backend, the boot loader and the storage
/// volumes see it: a size, and a map from its bytes to files. Data moves
/// outside the disk (io_uring between the files and guest memory); the disk
/// owns the metadata and does the few writes that change it itself.
///
/// Thread-safe: queue workers on several threads share one disk.
public protocol VirtualDisk: AnyObject, Sendable {
    var format: DiskFormat { get }
    /// Bytes of the virtual disk.
    var size: UInt64 { get }
    var readOnly: Bool { get }
    /// The top image file (buffered descriptor).
    var file: FileDescriptor { get }
    /// Whether ``flush()`` does more than an fdatasync of ``file`` (raw: no;
    /// the backend can then flush through io_uring).
    var hasMetadata: Bool { get }

    /// The files and offsets holding `[offset, offset + length)`, in order;
    /// their lengths add up to `length`. Past the end of the disk: an error.
    func mapRead(offset: UInt64, length: UInt64) throws(DiskImageError) -> [ReadExtent]

    /// Prepares a write of `[offset, offset + length)`: returns the ranges of
    /// ``file`` the caller writes in place, in order, and writes itself every
    /// part that needs a new cluster, taking its bytes from `data(from, count)`
    /// (offsets relative to `offset`; nil if the guest's buffers are gone).
    func mapWrite(offset: UInt64, length: UInt64,
                  data: (_ from: UInt64, _ count: Int) -> [UInt8]?) throws(DiskImageError) -> [(extent: WriteExtent, from: UInt64)]

    /// Makes every write completed before the call durable, metadata included.
    func flush() throws(DiskImageError)
    /// Frees a range (advisory: reads afterwards return zeroes or old data).
    func discard(offset: UInt64, length: UInt64) throws(DiskImageError)
    /// Makes a range read as zeroes; `unmap` allows freeing its space.
    func writeZeroes(offset: UInt64, length: UInt64, unmap: Bool) throws(DiskImageError)
    /// Grows the virtual disk (shrinking is refused: it would drop guest data).
    func resize(to bytes: UInt64) throws(DiskImageError)
}

extension VirtualDisk {
    /// Reads `[offset, offset + count)` into a buffer (metadata paths, the boot loader, tests).
    public func read(offset: UInt64, count: Int) throws(DiskImageError) -> [UInt8] {
        try mapRead(offset: offset, length: UInt64(count)).gathered()
    }
}

extension Array where Element == ReadExtent {
    /// The bytes these extents describe, read from their files.
    public func gathered() throws(DiskImageError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(reduce(0) { $0 + $1.length }))
        for e in self {
            switch e {
            // Arrays, not repeatElement: appending a generic sequence goes
            // element by element where the standard library is not inlined.
            case .zero(let n): out.append(contentsOf: [UInt8](repeating: 0, count: Int(n)))
            case .bytes(let b): out += b
            case .file(let fd, let o, let n):
                let got: [UInt8]
                do {
                    got = try fd.read(count: Int(n), atOffset: Int64(o))
                } catch {
                    throw .io("read at \(o): \(error)")
                }
                out += got
                // A file shorter than its map (a raw backing file, a truncated image) reads as zeroes.
                if got.count < Int(n) { out.append(contentsOf: [UInt8](repeating: 0, count: Int(n) - got.count)) }
            }
        }
        return out
    }
}

extension VirtualDisk {
    /// Writes `bytes` at `offset` synchronously (tests, the storage layer).
    public func write(_ bytes: [UInt8], at offset: UInt64) throws(DiskImageError) {
        let places = try mapWrite(offset: offset, length: UInt64(bytes.count)) { from, count in
            Array(bytes[Int(from)..<Int(from) + count])
        }
        for p in places {
            do {
                try file.writeAll(bytes[Int(p.from)..<Int(p.from + p.extent.length)], atOffset: Int64(p.extent.offset))
            } catch {
                throw .io("write at \(p.extent.offset): \(error)")
            }
        }
    }
}

/// Opens images by declared format.
public enum DiskImages {
    /// Opens `path` as `format`. Backing files of qcow2 images open read-only,
    /// with the format their overlay's header declares, and only from
    /// `allowed` when it is given.
    public static func open(_ path: String, format: DiskFormat, readOnly: Bool, allowed: AllowedPaths? = nil,
                            warn: @escaping @Sendable (String) -> Void = { _ in }) throws(DiskImageError) -> any VirtualDisk {
        switch format {
        case .raw: return try RawDisk(path: path, readOnly: readOnly)
        case .qcow2: return try Qcow2Image(path: path, readOnly: readOnly, depth: 0, warn: warn, allowed: allowed)
        }
    }

    /// The virtual size of an image, from its header alone (raw: the file's size).
    public static func virtualSize(_ path: String, format: DiskFormat) throws(DiskImageError) -> UInt64 {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .readOnly)
        } catch {
            throw .io("cannot open image: \(error)")
        }
        defer { fd.close() }
        do {
            let size = UInt64(try fd.size())
            switch format {
            case .raw: return size
            case .qcow2:
                return try Qcow2Header.parse(try fd.read(count: 4096, atOffset: 0), fileSize: size).size
            }
        } catch let e as DiskImageError {
            throw e
        } catch {
            throw .io("cannot read \(path): \(error)")
        }
    }
}
