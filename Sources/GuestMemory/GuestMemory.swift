import ApusSys
import CApusSys

/// How guest RAM is backed.
public enum GuestMemoryBacking: Sendable, Equatable {
    /// A memfd: shareable with vhost-user backends (Dom0's blkback, netback)
    /// by passing its descriptor.
    case sharedMemfd
    /// Private anonymous memory, backed by transparent huge pages where the
    /// host allows: faster, but no other process can map it. For domains
    /// without vhost-user devices.
    case anonymous
}

/// One contiguous range of guest RAM mapped into this process, backed by a
/// memfd (which a vhost-user frontend shares with backends) or by private
/// anonymous memory.
public final class GuestRegion: @unchecked Sendable {
    // SAFETY (Sendable): every stored property is immutable; the mapped bytes
    // are shared with the guest by design and only accessed by copying.
    /// First guest-physical address.
    public let start: GuestAddress
    /// Size in bytes.
    public let size: UInt64
    /// The backing file (a memfd for our own RAM, or a descriptor received
    /// from a vhost-user frontend); nil for anonymous memory.
    public let backing: OwnedDescriptor?
    /// Offset of `start` within `backing`.
    public let fileOffset: UInt64
    let mapping: MemoryMapping
    /// Offset of `start` within `mapping` (nonzero when a frontend's mmap_offset was used).
    let mappingOffset: Int

    /// Huge-page size: regions are mapped on this boundary so transparent
    /// huge pages can back them (fewer TLB misses for the guest).
    static let hugePageSize = 2 << 20

    /// Creates a fresh region of guest RAM.
    public convenience init(start: GuestAddress, size: UInt64, backing: GuestMemoryBacking = .sharedMemfd,
                            name: String = "apus-guest-ram") throws(GuestMemoryError) {
        guard size > 0, size <= UInt64(Int.max) else { throw .invalidLayout("region size \(size)") }
        guard start.checkedAdd(size - 1) != nil else { throw .overflow(address: start, length: size) }
        if backing == .anonymous {
            let mapping: MemoryMapping
            do {
                mapping = try MemoryMapping.map(length: Int(size), shared: false, noReserve: true, alignment: Self.hugePageSize)
            } catch {
                throw .system("cannot allocate \(size >> 20) MiB of guest memory: \(error)")
            }
            mapping.advise(offset: 0, length: Int(size), advice: 14) // MADV_HUGEPAGE
            self.init(start: start, size: size, anonymous: mapping)
            return
        }
        let memfd: MemFD
        do {
            memfd = try MemFD(name: name, size: Int64(size))
        } catch {
            throw .system("cannot allocate \(size >> 20) MiB of guest memory: \(error)")
        }
        let fd: FileDescriptor
        do {
            fd = try memfd.fd.duplicate()
        } catch {
            throw .system("dup memfd: \(error)")
        }
        try self.init(start: start, size: size, fd: fd, fileOffset: 0, mmapOffset: 0)
    }

    /// Maps `size` bytes of `fd` starting at file offset `mmapOffset + fileOffset`
    /// (vhost-user's SET_MEM_TABLE gives `mmap_offset`). Takes ownership of `fd`.
    public init(start: GuestAddress, size: UInt64, fd: FileDescriptor, fileOffset: UInt64, mmapOffset: UInt64) throws(GuestMemoryError) {
        let owned = OwnedDescriptor(fd)
        guard size > 0, size <= UInt64(Int.max) / 2 else { throw .invalidLayout("region size \(size)") }
        guard start.checkedAdd(size - 1) != nil else { throw .overflow(address: start, length: size) }
        // mmap needs a page-aligned offset; map from the page boundary below.
        let total = mmapOffset &+ fileOffset
        guard total >= mmapOffset, total <= UInt64(Int64.max) else { throw .invalidLayout("mmap offset") }
        let pageMask: UInt64 = 4095
        let alignedOffset = total & ~pageMask
        let slack = Int(total - alignedOffset)
        let mapping: MemoryMapping
        do {
            mapping = try MemoryMapping.map(length: Int(size) + slack, fd: fd, offset: Int64(alignedOffset),
                                            alignment: slack == 0 ? Self.hugePageSize : 0)
        } catch {
            throw .system("cannot map guest memory: \(error)")
        }
        // Huge pages for shmem too, where the host's shmem_enabled allows it.
        mapping.advise(offset: 0, length: mapping.length, advice: 14) // MADV_HUGEPAGE
        self.start = start
        self.size = size
        self.backing = owned
        self.fileOffset = total
        self.mapping = mapping
        self.mappingOffset = slack
    }

    private init(start: GuestAddress, size: UInt64, anonymous mapping: MemoryMapping) {
        self.start = start
        self.size = size
        self.backing = nil
        self.fileOffset = 0
        self.mapping = mapping
        self.mappingOffset = 0
    }

    /// Last byte's address + 1 (cannot overflow: checked at init).
    public var end: UInt64 { start.raw + size }

    /// The host virtual address of the region's first byte, for KVM's
    /// memory-slot setup and for vhost-user's SET_MEM_TABLE `userspace_addr`.
    public var hostAddress: UInt64 { UInt64(UInt(bitPattern: mapping.base + mappingOffset)) }

    /// Whether `[address, address+length)` lies inside this region.
    func contains(_ address: GuestAddress, length: UInt64) -> Bool {
        guard address.raw >= start.raw else { return false }
        let off = address.raw - start.raw
        return off <= size && length <= size - off
    }

    /// A pointer to `address` (caller checked `contains`).
    func pointer(_ address: GuestAddress) -> UnsafeMutableRawPointer {
        // SAFETY: callers check `contains(address, length:)` first, so the
        // offset is within the mapping.
        mapping.base + mappingOffset + Int(address.raw - start.raw)
    }
}

/// All of a guest's RAM: a sorted list of non-overlapping regions, with
/// bounds-checked, copy-in/copy-out access. Nothing here hands out a
/// reference into guest memory: the guest can change the bytes at any time,
/// so readers copy first and validate the copy.
public final class GuestMemory: @unchecked Sendable {
    // SAFETY (Sendable): `regions` is immutable after init.
    /// The regions, sorted by start address.
    public let regions: [GuestRegion]

    /// Builds guest memory from regions; they must not overlap.
    public init(regions: [GuestRegion]) throws(GuestMemoryError) {
        let sorted = regions.sorted { $0.start < $1.start }
        guard !sorted.isEmpty else { throw .invalidLayout("no regions") }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.end > b.start.raw {
            throw .invalidLayout("regions at \(a.start) and \(b.start) overlap")
        }
        self.regions = sorted
    }

    /// Allocates fresh RAM for the given (start, size) ranges.
    public convenience init(ranges: [(GuestAddress, UInt64)], backing: GuestMemoryBacking = .sharedMemfd) throws(GuestMemoryError) {
        var regions: [GuestRegion] = []
        for (start, size) in ranges {
            regions.append(try GuestRegion(start: start, size: size, backing: backing))
        }
        try self.init(regions: regions)
    }

    /// Whether every region can be shared with another process (vhost-user).
    public var isShareable: Bool { regions.allSatisfy { $0.backing != nil } }

    /// Total RAM in bytes.
    public var totalSize: UInt64 { regions.reduce(0) { $0 + $1.size } }

    /// The region holding `[address, address+length)`, if one holds all of it.
    @inline(__always)
    public func region(containing address: GuestAddress, length: UInt64) -> GuestRegion? {
        // Few regions (usually 1-2): a linear scan beats a search.
        for r in regions where r.contains(address, length: length) { return r }
        return nil
    }

    /// Whether `[address, address+length)` is entirely RAM.
    public func isValid(_ address: GuestAddress, length: UInt64) -> Bool {
        guard address.checkedAdd(length) != nil else { return false }
        return region(containing: address, length: length) != nil
    }

    @inline(__always)
    func checkedPointer(_ address: GuestAddress, _ length: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        let len = UInt64(length)
        guard address.checkedAdd(len) != nil else { throw .overflow(address: address, length: len) }
        guard let r = region(containing: address, length: len) else { throw .outOfRange(address: address, length: len) }
        return r.pointer(address)
    }

    /// Copies a plain value out of guest memory (unaligned-safe).
    @inline(__always)
    public func read<T: BitwiseCopyable>(_ type: T.Type, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let p = try checkedPointer(address, MemoryLayout<T>.size)
        // SAFETY: the range was bounds-checked; loadUnaligned copies the bytes.
        return p.loadUnaligned(as: T.self)
    }

    /// Copies a plain value into guest memory (unaligned-safe).
    @inline(__always)
    public func write<T: BitwiseCopyable>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let p = try checkedPointer(address, MemoryLayout<T>.size)
        // SAFETY: the range was bounds-checked.
        p.storeBytes(of: value, as: T.self)
    }

    /// Copies `count` bytes out of guest memory.
    public func readBytes(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        guard count > 0 else { return [] }
        let p = try checkedPointer(address, count)
        // SAFETY: the range was bounds-checked; the initializer copies.
        return [UInt8](UnsafeRawBufferPointer(start: p, count: count))
    }

    /// Appends `count` bytes of guest memory to `out` (no intermediate array).
    public func appendBytes(at address: GuestAddress, count: Int, to out: inout [UInt8]) throws(GuestMemoryError) {
        guard count > 0 else { return }
        let p = try checkedPointer(address, count)
        // SAFETY: the range was bounds-checked; append copies the bytes.
        out.append(contentsOf: UnsafeRawBufferPointer(start: p, count: count))
    }

    /// Whether `count` bytes at `address` are all zero, read in place.
    public func isZero(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> Bool {
        guard count > 0 else { return true }
        let p = try checkedPointer(address, count)
        // SAFETY: the range was bounds-checked; loads stay inside it (whole
        // 8-byte words, then the tail byte by byte).
        let raw = UnsafeRawBufferPointer(start: p, count: count)
        var acc: UInt64 = 0
        let words = count / 8
        for i in 0..<words { acc |= raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) }
        for i in (words * 8)..<count { acc |= UInt64(raw[i]) }
        return acc == 0
    }

    /// Copies bytes into guest memory.
    public func write(bytes: some Collection<UInt8>, at address: GuestAddress) throws(GuestMemoryError) {
        let count = bytes.count
        guard count > 0 else { return }
        let p = try checkedPointer(address, count)
        // SAFETY: the range was bounds-checked to hold `count` bytes.
        let dst = UnsafeMutableRawBufferPointer(start: p, count: count)
        if let done = bytes.withContiguousStorageIfAvailable({ src in dst.copyBytes(from: UnsafeRawBufferPointer(src)) }) {
            return done
        }
        dst.copyBytes(from: Array(bytes))
    }

    /// Copies a byte slice into guest memory: the concrete overload, so the
    /// per-frame callers in other modules skip generic dispatch.
    public func write(bytes: ArraySlice<UInt8>, at address: GuestAddress) throws(GuestMemoryError) {
        let count = bytes.count
        guard count > 0 else { return }
        let p = try checkedPointer(address, count)
        // SAFETY: the range was bounds-checked to hold `count` bytes.
        bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: p, count: count).copyMemory(from: $0) }
    }

    /// Fills `[address, address+count)` with `value`.
    public func fill(_ value: UInt8, at address: GuestAddress, count: Int) throws(GuestMemoryError) {
        guard count > 0 else { return }
        let p = try checkedPointer(address, count)
        // SAFETY: bounds-checked.
        p.initializeMemory(as: UInt8.self, repeating: value, count: count)
    }

    /// Copies between two guest ranges (they may overlap).
    public func copy(from source: GuestAddress, to destination: GuestAddress, count: Int) throws(GuestMemoryError) {
        guard count > 0 else { return }
        let s = try checkedPointer(source, count)
        let d = try checkedPointer(destination, count)
        // SAFETY: both ranges bounds-checked; memmove handles overlap.
        d.copyMemory(from: s, byteCount: count)
    }

    /// Loads a ring index with acquire ordering (virtio ring `idx` fields,
    /// written concurrently by the other side).
    @inline(__always)
    public func loadAcquire16(at address: GuestAddress) throws(GuestMemoryError) -> UInt16 {
        let p = try checkedPointer(address, 2)
        // SAFETY: bounds-checked; an atomic load on shared memory.
        return apus_load_acquire_u16(p)
    }

    /// Stores a ring index with release ordering, publishing earlier writes.
    @inline(__always)
    public func storeRelease16(_ value: UInt16, at address: GuestAddress) throws(GuestMemoryError) {
        let p = try checkedPointer(address, 2)
        // SAFETY: bounds-checked; an atomic store on shared memory.
        apus_store_release_u16(p, value)
    }

    /// A full memory barrier (between publishing the used index and reading
    /// the guest's event index, virtio 1.2 §2.7.10).
    @inline(__always)
    public func fence() { apus_fence_seq_cst() }

    /// Reads file bytes straight into guest memory (the block backend's read
    /// path). Returns the number of bytes read.
    public func readFile(_ fd: FileDescriptor, offset: Int64, into address: GuestAddress, count: Int) throws(GuestMemoryError) -> Result<Int, Errno> {
        guard count > 0 else { return .success(0) }
        let p = try checkedPointer(address, count)
        do {
            // SAFETY: bounds-checked destination of `count` bytes.
            return .success(try fd.read(into: UnsafeMutableRawBufferPointer(start: p, count: count), atOffset: offset))
        } catch {
            return .failure(error)
        }
    }

    /// Writes guest memory straight to a file (the block backend's write path).
    public func writeFile(_ fd: FileDescriptor, offset: Int64, from address: GuestAddress, count: Int) throws(GuestMemoryError) -> Result<Int, Errno> {
        guard count > 0 else { return .success(0) }
        let p = try checkedPointer(address, count)
        do {
            // SAFETY: bounds-checked source of `count` bytes.
            return .success(try fd.write(UnsafeRawBufferPointer(start: p, count: count), atOffset: offset))
        } catch {
            return .failure(error)
        }
    }

    /// Moves file bytes at `offset` to (read) or from (write) several guest
    /// ranges in one system call (preadv/pwritev, at most 1024 ranges).
    /// Returns the bytes moved, which may be fewer than asked.
    public func transferFile(_ fd: FileDescriptor, offset: Int64, ranges: [(address: GuestAddress, count: Int)], write: Bool) throws(GuestMemoryError) -> Result<Int, Errno> {
        var vectors: [iovec] = []
        vectors.reserveCapacity(ranges.count)
        for r in ranges where r.count > 0 {
            vectors.append(iovec(iov_base: try checkedPointer(r.address, r.count), iov_len: r.count))
        }
        guard !vectors.isEmpty else { return .success(0) }
        guard vectors.count <= 1024 else { return .failure(.invalidArgument) }
        do {
            // SAFETY: every range was bounds-checked; the kernel moves bytes
            // only inside them, and `vectors` outlives the call.
            let n = try vectors.withUnsafeBufferPointer { (v) throws(Errno) -> Int in
                try retryOnInterrupt {
                    write ? pwritev(fd.rawValue, v.baseAddress, Int32(v.count), off_t(offset))
                          : preadv(fd.rawValue, v.baseAddress, Int32(v.count), off_t(offset))
                }
            }
            return .success(n)
        } catch {
            return .failure(error)
        }
    }

    /// The host address of a checked guest range, for handing to the kernel
    /// (io_uring iovecs). The bytes behind it stay guest-controlled.
    public func hostAddress(of address: GuestAddress, length: Int) throws(GuestMemoryError) -> UInt {
        UInt(bitPattern: try checkedPointer(address, length))
    }
}
