import VirtioSpec
import ApusSys
import GuestMemory
import IOURing
import Virtqueue
import VhostUser

/// virtio-blk's request handling for one queue, driven by the vhost-user
/// layer's ``VringWorker``: turns chains into I/O on the image through an
/// engine (io_uring, or synchronous), and completes each when its I/O has.
final class BlockQueue: VringHandler {
    let index: Int
    let image: BlockImage
    let stats: BlockStats
    let limits: BlockRequest.Limits
    private let engine: BlockIOEngine
    private let memory: GuestMemory

    /// A request with I/O on the engine: one transfer per extent of the
    /// image it touches (one for raw; a qcow2 request spanning clusters may
    /// need several), each on its own engine slot.
    struct Pending {
        let head: UInt16
        let status: GuestAddress
        let usedLength: UInt32
        let kind: Kind
        let bytes: UInt64
        let start: UInt64
        var retriedBuffered: Bool
        let request: BlockRequest
        /// Transfers still on the engine.
        var outstanding: Int
        /// Bytes the transfers must move between files and guest memory.
        var fileBytes: UInt64
        var transferred: UInt64 = 0
        var error: Int32 = 0
        /// Whether the request is one transfer of the whole range (retriable through the page cache).
        var single: Bool
        enum Kind { case read, write, flush }
    }
    /// Requests in flight, by a number of their own (a request's slots are
    /// freed one by one as its transfers complete, so a slot cannot name it).
    private var pending: [UInt64: Pending] = [:]
    private var nextRequestID: UInt64 = 0
    /// Which request an engine slot's transfer belongs to.
    private var slotOwner: [Int: UInt64] = [:]
    private var freeSlots: [Int]
    private let log = ErrorLog()
    /// Large reads from an image in memory, to be copied by this thread and the helper.
    private var split: [InlineCopy] = []
    /// How many large reads are split at once: enough to amortize waking
    /// the helper, few enough that the driver gets completions while the
    /// queue works. 128 KiB reads at QD32 from tmpfs (`Deploy/bench blk`,
    /// three runs each): 1 (no split) 47k IOPS, 8 63k, 16 75k.
    static let splitBatch = 16
    private var helper: CopyHelper?
    private var helperUnavailable = false

    init(index: Int, memory: GuestMemory, queueSize: UInt16, image: BlockImage, stats: BlockStats,
         limits: BlockRequest.Limits, useURing: Bool) {
        self.index = index
        self.memory = memory
        self.image = image
        self.stats = stats
        self.limits = limits
        let depth = Int(queueSize)
        var engine: BlockIOEngine = SyncEngine(depth: depth)
        if useURing {
            do {
                engine = try URingEngine(depth: depth)
            } catch {
                ErrorLog.shared.warn("io_uring unavailable (\(error)); using synchronous I/O")
            }
        }
        self.engine = engine
        freeSlots = Array((0..<engine.depth).reversed())
    }

    deinit { helper?.stop() }

    // MARK: VringHandler

    var canTake: Bool { !freeSlots.isEmpty }
    var inFlight: Int { pending.count }
    var completionEvent: EventFD? { engine.completionEvent }
    var hasCompletions: Bool { engine.hasCompletions }

    /// Takes and starts chains while engine slots are free.
    func serve(_ vring: Vring) -> Bool {
        var submitted = false
        while !freeSlots.isEmpty, let chain = vring.next() {
            if start(chain, vring) { submitted = true }
        }
        if !split.isEmpty { copySplit(vring) }
        if submitted {
            do {
                try engine.submit()
            } catch {
                log.warn("queue \(index): submit failed: \(error)")
            }
        }
        return false
    }

    func malformed(_ vring: Vring, _ error: SplitQueue.PopError) {
        stats.malformedChains.add(1, ordering: .relaxed)
        log.warn("queue \(index): \(error.error)")
    }

    /// Starts one request; returns true if I/O was queued on the engine.
    private func start(_ chain: DescriptorChain, _ vring: Vring) -> Bool {
        let request: BlockRequest
        do {
            // The capacity is read per request: a resize takes effect at once.
            var current = limits
            current.capacitySectors = image.capacitySectors
            request = try BlockRequest.parse(chain, memory: memory, limits: current)
        } catch {
            stats.malformedChains.add(1, ordering: .relaxed)
            log.warn("queue \(index): \(error.reason)")
            vring.complete(head: error.head, length: 0)
            return false
        }
        let now = Clock.monotonicNanoseconds()
        switch request.operation {
        case .read(let sector, let segs):
            return submit(request, vring, kind: .read, write: false, segments: segs, offset: sector * VirtioBlock.sectorSize, start: now)
        case .write(let sector, let segs):
            return submit(request, vring, kind: .write, write: true, segments: segs, offset: sector * VirtioBlock.sectorSize, start: now)
        case .flush:
            if image.readOnly {
                finish(request, vring, status: VirtioBlock.statusOK, written: 0)
                return false
            }
            if image.disk.hasMetadata {
                // The format's own flush: data, then its metadata in order.
                var status = VirtioBlock.statusOK
                do {
                    try image.disk.flush()
                } catch {
                    log.warn("queue \(index): flush: \(error)")
                    status = VirtioBlock.statusIOError
                }
                count(.flush, bytes: 0, ok: status == VirtioBlock.statusOK, elapsed: Clock.monotonicNanoseconds() - now)
                writeStatus(request.status, status)
                vring.complete(head: request.head, length: 1)
                return false
            }
            guard let slot = freeSlots.popLast() else { return false }
            do {
                try engine.dataSync(fd: image.bufferedFD, tag: UInt64(slot))
                nextRequestID &+= 1
                slotOwner[slot] = nextRequestID
                pending[nextRequestID] = Pending(head: request.head, status: request.status, usedLength: 1, kind: .flush, bytes: 0,
                                        start: now, retriedBuffered: false, request: request, outstanding: 1, fileBytes: 0, single: true)
                return true
            } catch {
                freeSlots.append(slot)
                finish(request, vring, status: VirtioBlock.statusIOError, written: 0)
                return false
            }
        case .getID(let segs):
            var id = image.serial
            id += [UInt8](repeating: 0, count: max(0, VirtioBlock.idLength - id.count))
            let written = (try? ChainIO.write(memory, segs.map { DescriptorBuffer(address: $0.address, length: $0.length, isWriteOnly: true) },
                                              bytes: Array(id.prefix(Int(BlockRequest.total(segs)))))) ?? 0
            finish(request, vring, status: VirtioBlock.statusOK, written: UInt32(written))
        case .discard(let ranges), .writeZeroes(let ranges):
            let isDiscard: Bool
            if case .discard = request.operation { isDiscard = true } else { isDiscard = false }
            if isDiscard {
                stats.discardRequests.add(1, ordering: .relaxed)
            } else {
                stats.writeZeroesRequests.add(1, ordering: .relaxed)
            }
            var status = VirtioBlock.statusOK
            for r in ranges where r.sectors > 0 {
                do {
                    let offset = r.sector * VirtioBlock.sectorSize, length = UInt64(r.sectors) * VirtioBlock.sectorSize
                    if isDiscard {
                        try image.disk.discard(offset: offset, length: length)
                    } else {
                        try image.disk.writeZeroes(offset: offset, length: length, unmap: r.flags & VirtioBlock.writeZeroesUnmap != 0)
                    }
                } catch {
                    log.warn("queue \(index): \(isDiscard ? "discard" : "write-zeroes"): \(error)")
                    status = VirtioBlock.statusIOError
                }
            }
            finish(request, vring, status: status, written: 0)
        case .unsupported:
            stats.unsupported.add(1, ordering: .relaxed)
            finish(request, vring, status: VirtioBlock.statusUnsupported, written: 0)
        case .invalid(let why):
            log.warn("queue \(index): request refused: \(why)")
            finish(request, vring, status: VirtioBlock.statusIOError, written: 0)
        }
        return false
    }

    private func submit(_ request: BlockRequest, _ vring: Vring, kind: Pending.Kind, write: Bool, segments: [IOSegment], offset: UInt64, start: UInt64) -> Bool {
        let bytes = BlockRequest.total(segments)
        // O_DIRECT needs sector-aligned memory; requests whose guest buffers
        // are not go through the buffered descriptor.
        let aligned = segments.allSatisfy { $0.address.raw % 512 == 0 && $0.length % 512 == 0 }
        // Where the bytes are: the format maps them (and writes new clusters itself).
        var transfers: [(fd: FileDescriptor, offset: UInt64, segments: [IOSegment])] = []
        do {
            if write {
                let places = try image.disk.mapWrite(offset: offset, length: bytes) { from, count in
                    Self.gather(memory, Self.slice(segments, from: from, length: UInt64(count)))
                }
                for p in places {
                    transfers.append((image.dataDescriptor(for: image.disk.file, aligned: aligned), p.extent.offset,
                                      Self.slice(segments, from: p.from, length: p.extent.length)))
                }
            } else {
                var from: UInt64 = 0
                for e in try image.disk.mapRead(offset: offset, length: bytes) {
                    let part = Self.slice(segments, from: from, length: e.length)
                    from += e.length
                    switch e {
                    case .file(let fd, let o, _):
                        transfers.append((image.dataDescriptor(for: fd, aligned: aligned), o, part))
                    case .zero:
                        for s in part { try memory.fill(0, at: s.address, count: Int(s.length)) }
                    case .bytes(let b):
                        var k = b.startIndex
                        for s in part {
                            try memory.write(bytes: b[k..<(k + Int(s.length))], at: s.address)
                            k += Int(s.length)
                        }
                    }
                }
            }
        } catch {
            log.warn("queue \(index): \(write ? "write" : "read") at \(offset): \(error)")
            finish(request, vring, status: VirtioBlock.statusIOError, written: 0)
            return false
        }
        let usedLength = write ? 1 : UInt32(bytes) + 1
        if transfers.isEmpty {
            // All of it zeroes, decompressed bytes, or new clusters the format wrote.
            count(kind, bytes: bytes, ok: true, elapsed: Clock.monotonicNanoseconds() - start)
            finish(request, vring, status: VirtioBlock.statusOK, written: usedLength - 1)
            return false
        }
        // An image in memory is copied here and now: io_uring cannot do
        // tmpfs I/O inline, and a kernel worker costs two thread switches
        // for the same copy (handing large copies to io_uring's workers, to
        // spread them over cores, measured no faster; writes also queue on
        // the inode's lock). Large reads are shared with the queue's copy
        // helper instead, a batch at a time (``copySplit``). A lone large
        // write is the exception: on a worker it measured 1.3-1.5x faster
        // (128 KiB at QD1, `Deploy/bench blk`). A request with more
        // extents than free slots is done here too.
        var inline = transfers.allSatisfy { image.isInMemory($0.fd) }
        if inline && write && bytes >= URingEngine.asyncThreshold && pending.isEmpty && (try? vring.queue.pendingCount()) == 0 {
            inline = false
        }
        if freeSlots.count < transfers.count || inline {
            let copy = InlineCopy(request: request, kind: kind, bytes: bytes, start: start, usedLength: usedLength, transfers: transfers)
            if inline && !write && bytes >= URingEngine.asyncThreshold && !helperUnavailable {
                // Large reads wait for the turn's others, to be split with the helper.
                split.append(copy)
                if split.count == Self.splitBatch { copySplit(vring) }
            } else {
                completeInline(copy, vring, results: transfers.map {
                    Self.transferNow(write: write, memory: memory, fd: $0.fd, offset: $0.offset, segments: $0.segments)
                })
            }
            return false
        }
        nextRequestID &+= 1
        let key = nextRequestID
        var queued = 0
        var failed = false
        for t in transfers {
            guard let slot = freeSlots.popLast() else { break }
            do {
                try engine.transfer(write: write, slot: slot, fd: t.fd, memory: memory, segments: t.segments, offset: t.offset, tag: UInt64(slot))
                slotOwner[slot] = key
                queued += 1
            } catch {
                freeSlots.append(slot)
                failed = true
                break
            }
        }
        let fileBytes = transfers.reduce(0) { $0 + BlockRequest.total($1.segments) }
        var p = Pending(head: request.head, status: request.status, usedLength: usedLength, kind: kind, bytes: bytes, start: start,
                        retriedBuffered: !(image.direct && aligned), request: request, outstanding: queued, fileBytes: fileBytes,
                        single: transfers.count == 1 && fileBytes == bytes)
        if failed { p.error = -Errno.ioError.rawValue }
        if queued == 0 {
            finish(request, vring, status: VirtioBlock.statusIOError, written: 0)
            return false
        }
        pending[key] = p
        return true
    }

    /// A request copied on the queue's thread (or its helper's), not through the engine.
    struct InlineCopy {
        let request: BlockRequest
        let kind: Pending.Kind
        let bytes: UInt64
        let start: UInt64
        let usedLength: UInt32
        let transfers: [(fd: FileDescriptor, offset: UInt64, segments: [IOSegment])]
    }

    /// Completes a copied request, given each transfer's bytes moved or -errno.
    private func completeInline(_ c: InlineCopy, _ vring: Vring, results: some Collection<Int32>) {
        let ok = results.count == c.transfers.count
            && zip(c.transfers, results).allSatisfy { $1 == Int32(clamping: BlockRequest.total($0.segments)) }
        count(c.kind, bytes: c.bytes, ok: ok, elapsed: Clock.monotonicNanoseconds() - c.start)
        finish(c.request, vring, status: ok ? VirtioBlock.statusOK : VirtioBlock.statusIOError, written: ok ? c.usedLength - 1 : 0)
    }

    /// Copies the large reads waiting in `split`, with the helper's thread
    /// when there are two or more.
    private func copySplit(_ vring: Vring) {
        let batch = split
        split = []
        guard batch.count >= 2, let helper = copyHelper() else {
            for c in batch {
                completeInline(c, vring, results: c.transfers.map {
                    Self.transferNow(write: false, memory: memory, fd: $0.fd, offset: $0.offset, segments: $0.segments)
                })
            }
            return
        }
        stats.parallelReads.add(UInt64(batch.count), ordering: .relaxed)
        let results = helper.run(batch.flatMap { c in
            c.transfers.map { CopyHelper.Job(memory: memory, fd: $0.fd, offset: $0.offset, segments: $0.segments) }
        })
        var k = 0
        for c in batch {
            let n = c.transfers.count
            completeInline(c, vring, results: results.dropFirst(k).prefix(n))
            k += n
        }
    }

    /// The queue's copy helper, started on first use (nil if it cannot be).
    private func copyHelper() -> CopyHelper? {
        if let helper { return helper }
        do {
            helper = try CopyHelper(name: "blk-q\(index)-copy")
        } catch {
            helperUnavailable = true
            log.warn("queue \(index): no copy helper (\(error)); copying on one thread")
        }
        return helper
    }

    /// The part `[from, from + length)` of a request's buffers.
    static func slice(_ segments: [IOSegment], from: UInt64, length: UInt64) -> [IOSegment] {
        var out: [IOSegment] = []
        var skip = from, want = length
        for s in segments where want > 0 {
            let len = UInt64(s.length)
            if skip >= len { skip -= len; continue }
            let n = min(len - skip, want)
            out.append(IOSegment(address: GuestAddress(s.address.raw + skip), length: UInt32(n)))
            want -= n
            skip = 0
        }
        return out
    }

    /// The bytes in `segments` (nil if guest memory refuses them).
    static func gather(_ memory: GuestMemory, _ segments: [IOSegment]) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(Int(BlockRequest.total(segments)))
        for s in segments {
            do {
                try memory.appendBytes(at: s.address, count: Int(s.length), to: &out)
            } catch {
                return nil
            }
        }
        return out
    }

    /// A synchronous transfer: one preadv/pwritev for all the segments
    /// (more if the kernel moves fewer bytes). The bytes moved, fewer at the
    /// end of the file, or -errno (as an io_uring completion reports it).
    static func transferNow(write: Bool, memory: GuestMemory, fd: FileDescriptor, offset: UInt64, segments: [IOSegment]) -> Int32 {
        let total = BlockRequest.total(segments)
        var moved: UInt64 = 0
        while moved < total {
            let rest = moved == 0 ? segments : slice(segments, from: moved, length: total - moved)
            let result: Result<Int, Errno>
            do {
                result = try memory.transferFile(fd, offset: Int64(offset + moved), ranges: rest.map { ($0.address, Int($0.length)) }, write: write)
            } catch {
                return -Errno.badAddress.rawValue
            }
            switch result {
            case .failure(let e): return -e.rawValue
            case .success(0): return Int32(clamping: moved)
            case .success(let n): moved += UInt64(n)
            }
        }
        return Int32(clamping: moved)
    }

    private func count(_ kind: Pending.Kind, bytes: UInt64, ok: Bool, elapsed: UInt64) {
        switch kind {
        case .read:
            stats.readRequests.add(1, ordering: .relaxed)
            if ok { stats.readBytes.add(bytes, ordering: .relaxed) }
            stats.readNanoseconds.add(elapsed, ordering: .relaxed)
        case .write:
            stats.writeRequests.add(1, ordering: .relaxed)
            if ok { stats.writeBytes.add(bytes, ordering: .relaxed) }
            stats.writeNanoseconds.add(elapsed, ordering: .relaxed)
        case .flush:
            stats.flushRequests.add(1, ordering: .relaxed)
            stats.flushNanoseconds.add(elapsed, ordering: .relaxed)
        }
        if !ok { stats.errors.add(1, ordering: .relaxed) }
    }

    /// Completes finished I/O (the worker publishes and signals).
    func reap(_ vring: Vring) {
        let done = engine.reap()
        guard !done.isEmpty else { return }
        var resubmitted = false
        for c in done {
            let slot = Int(c.tag)
            guard let key = slotOwner.removeValue(forKey: slot), var p = pending[key] else { continue }
            freeSlots.append(slot)
            p.outstanding -= 1
            if c.result < 0 {
                if p.error == 0 { p.error = c.result }
            } else {
                p.transferred += UInt64(c.result)
            }
            guard p.outstanding == 0 else {
                pending[key] = p
                continue
            }
            pending[key] = nil
            let elapsed = Clock.monotonicNanoseconds() - p.start
            var status = VirtioBlock.statusOK
            if p.error < 0 {
                // O_DIRECT refused the buffers: retry once through the page cache.
                if p.error == -Errno.invalidArgument.rawValue, p.single, !p.retriedBuffered, p.kind != .flush,
                   let retry = resubmitBuffered(p) {
                    resubmitted = resubmitted || retry
                    if retry { continue }
                }
                status = VirtioBlock.statusIOError
                log.warn("queue \(index): I/O error \(Errno(rawValue: -p.error))")
            } else if p.kind != .flush, p.transferred != p.fileBytes {
                status = VirtioBlock.statusIOError // short read/write: past the end or device error
            }
            count(p.kind, bytes: p.bytes, ok: status == VirtioBlock.statusOK, elapsed: elapsed)
            writeStatus(p.status, status)
            vring.complete(head: p.head, length: status == VirtioBlock.statusOK ? p.usedLength : 1)
        }
        if resubmitted { try? engine.submit() }
    }

    /// Queues a single-transfer request again through the buffered
    /// descriptor; nil if there is nothing to retry.
    private func resubmitBuffered(_ p: Pending) -> Bool? {
        let segments: [IOSegment], offset: UInt64
        switch p.request.operation {
        case .read(let s, let segs): segments = segs; offset = s * VirtioBlock.sectorSize
        case .write(let s, let segs): segments = segs; offset = s * VirtioBlock.sectorSize
        default: return nil
        }
        // Raw only (one transfer at the same offset): the disk's map is the identity there.
        guard image.format == .raw, let slot = freeSlots.popLast() else { return nil }
        do {
            try engine.transfer(write: p.kind == .write, slot: slot, fd: image.bufferedFD, memory: memory, segments: segments, offset: offset, tag: UInt64(slot))
        } catch {
            freeSlots.append(slot)
            return nil
        }
        var retry = p
        retry.retriedBuffered = true
        retry.outstanding = 1
        retry.transferred = 0
        retry.error = 0
        nextRequestID &+= 1
        slotOwner[slot] = nextRequestID
        pending[nextRequestID] = retry
        return true
    }

    private func finish(_ request: BlockRequest, _ vring: Vring, status: UInt8, written: UInt32) {
        if status == VirtioBlock.statusIOError { stats.errors.add(1, ordering: .relaxed) }
        writeStatus(request.status, status)
        vring.complete(head: request.head, length: written + 1)
    }

    private func writeStatus(_ address: GuestAddress, _ status: UInt8) {
        try? memory.write(status, at: address)
    }
}
