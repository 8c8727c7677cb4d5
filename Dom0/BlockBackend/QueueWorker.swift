import ApusSys
import GuestMemory
import IOURing
import Virtqueue
import VhostUser

/// Serves one virtqueue on its own thread: waits for kicks, turns chains
/// into I/O on the image, and completes them through the used ring,
/// signalling the call descriptor only when the driver wants it (EVENT_IDX).
final class QueueWorker: @unchecked Sendable {
    // SAFETY (Sendable): all state is confined to the worker thread, except
    // `stopEvent` (an eventfd) which other threads only signal.
    let index: Int
    let queue: SplitQueue
    let kick: EventFD
    let call: QueueCall
    let image: BlockImage
    let stats: BlockStats
    let limits: BlockRequest.Limits
    let stopEvent: EventFD
    private var thread: OSThread?
    private let engine: BlockIOEngine
    private var memory: GuestMemory { queue.memory }

    struct Pending {
        let head: UInt16
        let status: GuestAddress
        let usedLength: UInt32
        let kind: Kind
        let bytes: UInt64
        let start: UInt64
        var retriedBuffered: Bool
        let request: BlockRequest
        enum Kind { case read, write, flush }
    }
    private var pending: [Int: Pending] = [:]
    /// How long to keep polling the avail ring and completions before
    /// sleeping (adaptive polling, as QEMU's iothreads do): at low queue
    /// depth the next request usually arrives within it, saving two wakeups.
    let pollNanoseconds: UInt64
    private var freeSlots: [Int]
    private var broken = false
    private let log = ErrorLog()

    init(index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall, image: BlockImage, stats: BlockStats,
         limits: BlockRequest.Limits, useURing: Bool, pollNanoseconds: UInt64 = 20_000) throws(SystemCallError) {
        self.pollNanoseconds = pollNanoseconds
        self.index = index
        self.queue = queue
        self.kick = kick
        self.call = call
        self.image = image
        self.stats = stats
        self.limits = limits
        stopEvent = try EventFD()
        let depth = Int(queue.size)
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

    func start() throws(SystemCallError) {
        let t = OSThread(name: "blk-q\(index)") { [self] in self.run() }
        try t.start()
        thread = t
    }

    /// Stops after every in-flight request completed; returns where to resume.
    func stop() -> UInt16 {
        stopEvent.signal()
        thread?.join()
        thread = nil
        return queue.lastAvailIndex
    }

    private func run() {
        let epoll: Epoll
        do {
            epoll = try Epoll()
            try epoll.add(kick.fd, events: .readable, token: 1)
            try epoll.add(stopEvent.fd, events: .readable, token: 3)
            if let c = engine.completionEvent { try epoll.add(c.fd, events: .readable, token: 2) }
        } catch {
            log.warn("queue \(index): cannot set up: \(error)")
            return
        }
        var stopping = false
        // Chains may already be waiting (a restarted queue).
        processAvailable()
        while !(stopping && pending.isEmpty) {
            if !stopping && pollNanoseconds > 0 && poll() { continue }
            guard let ready = try? epoll.wait(maxEvents: 8, timeoutMilliseconds: stopping ? 100 : -1) else { break }
            for r in ready {
                switch r.token {
                case 1:
                    kick.drain()
                    if !stopping { processAvailable() }
                case 2:
                    completeFinished()
                case 3:
                    stopEvent.drain()
                    stopping = true
                default:
                    break
                }
            }
            if engine.completionEvent == nil { completeFinished() }
        }
    }

    /// Spins briefly for new chains or completions; true if there was work.
    private func poll() -> Bool {
        guard !broken else { return false }
        let deadline = Clock.monotonicNanoseconds() + pollNanoseconds
        repeat {
            if engine.hasCompletions {
                completeFinished()
                return true
            }
            if !freeSlots.isEmpty, let n = try? queue.pendingCount(), n > 0 {
                processAvailable()
                return true
            }
        } while Clock.monotonicNanoseconds() < deadline
        return false
    }

    /// Pops and starts every available chain while there are free slots.
    private func processAvailable() {
        guard !broken else { return }
        while true {
            var submitted = false
            while !freeSlots.isEmpty {
                let chain: DescriptorChain
                do {
                    guard let c = try queue.pop() else { break }
                    chain = c
                } catch {
                    stats.malformedChains.add(1, ordering: .relaxed)
                    log.warn("queue \(index): \(error.error)")
                    if let head = error.head {
                        // Give the chain back with nothing written.
                        try? queue.addUsed(head: head, length: 0)
                        continue
                    }
                    if case .headOutOfRange = error.error { continue } // consumed; nothing to give back
                    // The ring itself is corrupt: stop serving it until reset.
                    broken = true
                    break
                }
                if start(chain) { submitted = true }
            }
            if submitted {
                do {
                    try engine.submit()
                } catch {
                    log.warn("queue \(index): submit failed: \(error)")
                }
            }
            completeFinished()
            // EVENT_IDX: re-arm notifications, and poll again if the driver
            // raced us with more chains.
            guard !broken, !freeSlots.isEmpty, (try? queue.setNotifications(enabled: true)) == true else { break }
        }
    }

    /// Starts one request; returns true if I/O was queued on the engine.
    private func start(_ chain: DescriptorChain) -> Bool {
        let request: BlockRequest
        do {
            // The capacity is read per request: a resize takes effect at once.
            var current = limits
            current.capacitySectors = image.capacitySectors
            request = try BlockRequest.parse(chain, memory: memory, limits: current)
        } catch {
            stats.malformedChains.add(1, ordering: .relaxed)
            log.warn("queue \(index): \(error.reason)")
            try? queue.addUsed(head: error.head, length: 0)
            return false
        }
        let now = Clock.monotonicNanoseconds()
        switch request.operation {
        case .read(let sector, let segs):
            return submit(request, kind: .read, write: false, segments: segs, offset: sector * VirtioBlock.sectorSize, start: now)
        case .write(let sector, let segs):
            return submit(request, kind: .write, write: true, segments: segs, offset: sector * VirtioBlock.sectorSize, start: now)
        case .flush:
            guard let slot = freeSlots.popLast() else { return false }
            do {
                if image.readOnly {
                    freeSlots.append(slot)
                    finish(request, status: VirtioBlock.statusOK, written: 0)
                    return false
                }
                try engine.dataSync(fd: image.bufferedFD, tag: UInt64(slot))
                pending[slot] = Pending(head: request.head, status: request.status, usedLength: 1, kind: .flush, bytes: 0,
                                        start: now, retriedBuffered: false, request: request)
                return true
            } catch {
                freeSlots.append(slot)
                finish(request, status: VirtioBlock.statusIOError, written: 0)
                return false
            }
        case .getID(let segs):
            var id = image.serial
            id += [UInt8](repeating: 0, count: max(0, VirtioBlock.idLength - id.count))
            let written = (try? ChainIO.write(memory, segs.map { DescriptorBuffer(address: $0.address, length: $0.length, isWriteOnly: true) },
                                              bytes: Array(id.prefix(Int(BlockRequest.total(segs)))))) ?? 0
            finish(request, status: VirtioBlock.statusOK, written: UInt32(written))
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
                        try image.discard(offset: offset, length: length)
                    } else {
                        try image.writeZeroes(offset: offset, length: length, unmap: r.flags & VirtioBlock.writeZeroesUnmap != 0)
                    }
                } catch {
                    // Discard is advisory: a device that cannot may ignore it.
                    if !isDiscard || (error != .notSupported && error != .invalidArgument) {
                        status = VirtioBlock.statusIOError
                    }
                }
            }
            finish(request, status: status, written: 0)
        case .unsupported:
            stats.unsupported.add(1, ordering: .relaxed)
            finish(request, status: VirtioBlock.statusUnsupported, written: 0)
        case .invalid(let why):
            log.warn("queue \(index): request refused: \(why)")
            finish(request, status: VirtioBlock.statusIOError, written: 0)
        }
        return false
    }

    private func submit(_ request: BlockRequest, kind: Pending.Kind, write: Bool, segments: [IOSegment], offset: UInt64, start: UInt64) -> Bool {
        guard let slot = freeSlots.popLast() else { return false }
        let bytes = BlockRequest.total(segments)
        // O_DIRECT needs sector-aligned memory; fall back to the buffered
        // descriptor for requests whose guest buffers are not.
        let aligned = segments.allSatisfy { $0.address.raw % 512 == 0 && $0.length % 512 == 0 }
        let fd = image.direct && !aligned ? image.bufferedFD : image.fd
        do {
            try engine.transfer(write: write, slot: slot, fd: fd, memory: memory, segments: segments, offset: offset, tag: UInt64(slot))
        } catch {
            freeSlots.append(slot)
            finish(request, status: VirtioBlock.statusIOError, written: 0)
            return false
        }
        pending[slot] = Pending(head: request.head, status: request.status, usedLength: write ? 1 : UInt32(bytes) + 1,
                                kind: kind, bytes: bytes, start: start, retriedBuffered: fd == image.bufferedFD, request: request)
        return true
    }

    /// Completes finished I/O and tells the driver.
    private func completeFinished() {
        let done = engine.reap()
        guard !done.isEmpty else {
            publishAndNotify()
            return
        }
        var resubmitted = false
        for c in done {
            let slot = Int(c.tag)
            guard let p = pending.removeValue(forKey: slot) else { continue }
            let elapsed = Clock.monotonicNanoseconds() - p.start
            var status = VirtioBlock.statusOK
            if c.result < 0 {
                // O_DIRECT refused the buffers: retry once through the page cache.
                if c.result == -Errno.invalidArgument.rawValue, image.direct, !p.retriedBuffered, p.kind != .flush {
                    var retry = p
                    retry.retriedBuffered = true
                    if resubmitBuffered(retry, slot: slot) { resubmitted = true; continue }
                }
                status = VirtioBlock.statusIOError
                log.warn("queue \(index): I/O error \(Errno(rawValue: -c.result))")
            } else if p.kind != .flush, UInt64(c.result) != p.bytes {
                status = VirtioBlock.statusIOError // short read/write: past the end or device error
            }
            freeSlots.append(slot)
            switch p.kind {
            case .read:
                stats.readRequests.add(1, ordering: .relaxed)
                if status == VirtioBlock.statusOK { stats.readBytes.add(p.bytes, ordering: .relaxed) }
                stats.readNanoseconds.add(elapsed, ordering: .relaxed)
            case .write:
                stats.writeRequests.add(1, ordering: .relaxed)
                if status == VirtioBlock.statusOK { stats.writeBytes.add(p.bytes, ordering: .relaxed) }
                stats.writeNanoseconds.add(elapsed, ordering: .relaxed)
            case .flush:
                stats.flushRequests.add(1, ordering: .relaxed)
                stats.flushNanoseconds.add(elapsed, ordering: .relaxed)
            }
            if status != VirtioBlock.statusOK { stats.errors.add(1, ordering: .relaxed) }
            writeStatus(p.status, status)
            try? queue.addUsed(head: p.head, length: status == VirtioBlock.statusOK ? p.usedLength : 1)
        }
        if resubmitted { try? engine.submit() }
        publishAndNotify()
        // Slots freed: more chains may be waiting.
        if !freeSlots.isEmpty, !broken, (try? queue.pendingCount()) ?? 0 > 0 { processAvailable() }
    }

    private func resubmitBuffered(_ p: Pending, slot: Int) -> Bool {
        let segments: [IOSegment], offset: UInt64
        switch p.request.operation {
        case .read(let s, let segs): segments = segs; offset = s * VirtioBlock.sectorSize
        case .write(let s, let segs): segments = segs; offset = s * VirtioBlock.sectorSize
        default: return false
        }
        do {
            try engine.transfer(write: p.kind == .write, slot: slot, fd: image.bufferedFD, memory: memory, segments: segments, offset: offset, tag: UInt64(slot))
        } catch {
            return false
        }
        pending[slot] = p
        return true
    }

    private func finish(_ request: BlockRequest, status: UInt8, written: UInt32) {
        if status == VirtioBlock.statusIOError { stats.errors.add(1, ordering: .relaxed) }
        writeStatus(request.status, status)
        try? queue.addUsed(head: request.head, length: written + 1)
    }

    private func writeStatus(_ address: GuestAddress, _ status: UInt8) {
        try? memory.write(status, at: address)
    }

    private func publishAndNotify() {
        do {
            try queue.publishUsed()
            if try queue.needsNotification() { call.signal() }
        } catch {
            log.warn("queue \(index): used ring: \(error)")
        }
    }
}
