import ApusSys
import GuestMemory
import Virtqueue

/// What a device does with the chains of a queue a ``VringWorker`` serves
/// (cloud-hypervisor's `VhostUserBackend` handlers play this part). Every
/// method runs on the worker's thread. The worker owns the loop: kicks,
/// completion descriptors, adaptive polling, publishing the used ring and
/// interrupting the driver, stopping once nothing is in flight. The
/// handler only takes chains (``Vring/next()``) and completes them
/// (``Vring/complete(head:length:)``), now or after its I/O finished.
public protocol VringHandler: AnyObject {
    /// Chains may be waiting on `vring` (a kick, a start, room freed): take
    /// and start what the handler can. Returns true when it stopped at a
    /// budget with chains still waiting, so the worker comes back to this
    /// ring before it sleeps, after giving the others their turn.
    func serve(_ vring: Vring) -> Bool
    /// Whether the handler can take another chain now (I/O slots free).
    var canTake: Bool { get }
    /// Chains taken and not completed; a ring is stopped only at 0.
    var inFlight: Int { get }
    /// Becomes readable when started I/O completes (an io_uring's eventfd).
    var completionEvent: EventFD? { get }
    /// Whether finished I/O is waiting to be completed (read while polling).
    var hasCompletions: Bool { get }
    /// Completes whatever I/O finished.
    func reap(_ vring: Vring)
    /// A malformed chain was taken; the worker gave it back empty when the
    /// used ring could take it.
    func malformed(_ vring: Vring, _ error: SplitQueue.PopError)
}

extension VringHandler {
    public var canTake: Bool { true }
    public var inFlight: Int { 0 }
    public var completionEvent: EventFD? { nil }
    public var hasCompletions: Bool { false }
    public func reap(_ vring: Vring) {}
}

/// One virtqueue as a worker serves it: the split ring, the driver's kick,
/// the call back to it, and the device's handler.
public final class Vring: @unchecked Sendable {
    // SAFETY (Sendable): after ``VringWorker/add(_:)`` only the worker's
    // thread touches it, until ``VringWorker/remove(_:)`` returns.
    public let index: Int
    public let queue: SplitQueue
    public let handler: VringHandler
    let kick: EventFD
    let call: QueueCall
    /// Used entries were added since the last publish.
    var dirty = false
    /// How many: a long turn publishes every ``publishBatch`` of them, so
    /// the driver can take them and post more while the turn goes on.
    private var unpublished = 0
    /// Completions a turn publishes at once at most.
    static let publishBatch = 8
    /// A kick, a start or freed room: serve it this turn.
    var wanted = true
    /// The handler's completion descriptor fired: reap this turn.
    var completionReady = false
    /// The ring itself is corrupt: not served again until the frontend resets it.
    public private(set) var broken = false
    /// The worker's id for it (epoll tokens).
    var id: UInt64 = 0
    fileprivate weak var worker: VringWorker?

    public init(index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall, handler: VringHandler) {
        self.index = index
        self.queue = queue
        self.kick = kick
        self.call = call
        self.handler = handler
    }

    public var memory: GuestMemory { queue.memory }

    /// The next well-formed available chain, or nil when the ring is empty
    /// (notifications re-armed first, and the race with the driver checked)
    /// or broken. A malformed chain is given back empty and reported to the
    /// handler; one whose head cannot be named is consumed; an unreadable
    /// ring is not served again.
    public func next() -> DescriptorChain? {
        while !broken {
            do {
                if let chain = try queue.pop() { return chain }
                // EVENT_IDX: ask for a kick, and look again if the driver raced us.
                guard (try? queue.setNotifications(enabled: true)) == true else { return nil }
            } catch {
                handler.malformed(self, error)
                if let head = error.head {
                    complete(head: head, length: 0)
                } else if case .headOutOfRange = error.error {
                    continue
                } else {
                    broken = true
                }
            }
        }
        return nil
    }

    /// Puts a chain in the used ring; the worker publishes it and
    /// interrupts the driver (if it wants that) at the end of its turn.
    public func complete(head: UInt16, length: UInt32) {
        try? queue.addUsed(head: head, length: length)
        if !dirty {
            dirty = true
            worker?.dirty.append(self)
        }
        unpublished += 1
        if unpublished >= Self.publishBatch, let worker { flush(worker.log) }
    }

    /// Gives back the last `count` chains taken and not completed (a frame
    /// that did not fit the buffers taken for it). Not for a tracked ring.
    public func giveBack(_ count: UInt16) { queue.rewind(count) }

    /// Whether chains are waiting (resubmissions included).
    var hasAvailable: Bool { !broken && ((try? queue.pendingCount()) ?? 0) > 0 }

    /// Publishes the used entries and interrupts the driver if it asked.
    func publish(_ log: ErrorLog) {
        dirty = false
        flush(log)
    }

    /// Publishes what was added, leaving the ring on the worker's list.
    private func flush(_ log: ErrorLog) {
        unpublished = 0
        do {
            try queue.publishUsed()
            if try queue.needsNotification() { call.signal() }
        } catch {
            log.warn("ring \(index): used ring: \(error)")
        }
    }
}

/// The thread that serves virtqueues for a vhost-user backend: one epoll
/// loop over the rings' kicks, the handlers' completion descriptors and any
/// other descriptor the device watches (netback's TAP). Each turn it
/// completes finished I/O, lets every ring with work take chains, then
/// publishes each ring's used entries once and signals its driver when
/// EVENT_IDX says so. Before sleeping it polls for a while when asked
/// (QEMU's iothreads' adaptive polling). Rings come and go from other
/// threads (the vhost-user sessions); a ring leaves only when nothing it
/// took is still in flight.
public final class VringWorker: @unchecked Sendable {
    // SAFETY (Sendable): `commands` and `stopped` are guarded by `lock`;
    // everything else is the worker thread's.
    public let name: String
    /// How long to keep polling rings and completions before sleeping.
    public let pollNanoseconds: UInt64
    private let epoll: Epoll
    private let wakeEvent: EventFD
    private let lock = ConditionLock()
    private var commands: [Command] = []
    private var posted: UInt64 = 0
    /// Removals done, by ticket, until their callers collect them.
    private var removed: Set<UInt64> = []
    private var stopped = false
    private var thread: OSThread?
    private var rings: [UInt64: Vring] = [:]
    /// Rings asked to leave, waiting for their in-flight chains.
    private var leaving: [UInt64: UInt64] = [:]
    private var watched: [UInt64: (fd: FileDescriptor, body: () -> Bool)] = [:]
    private var watchedFDs: [Int32: UInt64] = [:]
    private var more: Set<UInt64> = []
    private var nextID: UInt64 = 1
    /// Rings with used entries not yet published (the worker thread's).
    fileprivate var dirty: [Vring] = []
    fileprivate let log = ErrorLog()

    private enum Command {
        case add(Vring)
        case remove(Vring, ticket: UInt64)
        case watch(FileDescriptor, () -> Bool)
        case unwatch(FileDescriptor)
    }

    private static let wakeToken = UInt64.max
    /// Tokens: ring id << 2 | kind.
    private static let kickKind: UInt64 = 0, completionKind: UInt64 = 1, watchKind: UInt64 = 2

    public init(name: String, pollNanoseconds: UInt64 = 0) throws(SystemCallError) {
        self.name = name
        self.pollNanoseconds = pollNanoseconds
        epoll = try Epoll()
        wakeEvent = try EventFD()
        try epoll.add(wakeEvent.fd, events: .readable, token: Self.wakeToken)
    }

    public func start() throws(SystemCallError) {
        let t = OSThread(name: name) { [self] in run() }
        try t.start()
        lock.withLock { thread = t }
    }

    /// Serves `vring` from the worker's next turn on (chains may already wait).
    public func add(_ vring: Vring) { post(.add(vring)) }

    /// Stops serving `vring` once none of its chains is in flight; returns
    /// the avail index the ring resumes from. Not from the worker's thread.
    @discardableResult
    public func remove(_ vring: Vring) -> UInt16 {
        let ticket = lock.withLock { () -> UInt64 in
            posted += 1
            commands.append(.remove(vring, ticket: posted))
            return posted
        }
        wakeEvent.signal()
        lock.withLock {
            while !removed.contains(ticket) && thread != nil { lock.wait(timeoutNanoseconds: 100_000_000) }
            removed.remove(ticket)
        }
        return vring.queue.lastAvailIndex
    }

    /// Calls `body` on the worker's thread whenever `fd` is readable; it
    /// returns true when it left work for another turn.
    public func watch(_ fd: FileDescriptor, _ body: @escaping () -> Bool) { post(.watch(fd, body)) }

    public func unwatch(_ fd: FileDescriptor) { post(.unwatch(fd)) }

    /// Makes every ring and watched descriptor be served at the next turn.
    public func wake() {
        wakeEvent.signal()
    }

    /// Ends the thread after the rings leaving have drained.
    public func stop() {
        lock.withLock { stopped = true }
        wakeEvent.signal()
        let t = lock.withLock { thread }
        t?.join()
        lock.withLock {
            thread = nil
            lock.broadcast()
        }
    }

    private func post(_ c: Command) {
        lock.withLock { commands.append(c) }
        wakeEvent.signal()
    }

    // MARK: the thread

    private func run() {
        var wakeAll = true
        while true {
            let (stopping, gone) = applyCommands()
            if wakeAll {
                for v in rings.values { v.wanted = true }
                more.formUnion(watched.keys)
                wakeAll = false
            }
            let busy = turn()
            finishLeaving(gone)
            if stopping && leaving.isEmpty { break }
            if busy { continue }
            if pollNanoseconds > 0 && leaving.isEmpty && poll() { continue }
            let ready = (try? epoll.wait(maxEvents: 64, timeoutMilliseconds: leaving.isEmpty ? -1 : 100)) ?? []
            for r in ready {
                if r.token == Self.wakeToken {
                    _ = wakeEvent.drain()
                    wakeAll = true
                    continue
                }
                let id = r.token >> 2
                switch r.token & 3 {
                case Self.kickKind:
                    guard let v = rings[id] else { continue }
                    _ = v.kick.drain()
                    v.wanted = true
                case Self.completionKind:
                    rings[id]?.completionReady = true
                case Self.watchKind:
                    more.insert(id)
                default:
                    break
                }
            }
        }
        lock.withLock {
            // Rings still here leave with the thread.
            for (_, ticket) in leaving { removed.insert(ticket) }
            for case .remove(_, let ticket) in commands { removed.insert(ticket) }
            lock.broadcast()
        }
    }

    /// One turn: completions, then chains, then watched descriptors; then
    /// every dirty ring published once. True if work was left for another turn.
    private func turn() -> Bool {
        var busy = false
        for v in rings.values {
            let h = v.handler
            let isLeaving = leaving[v.id] != nil
            if v.completionReady || h.hasCompletions {
                v.completionReady = false
                h.reap(v)
                // Room freed: chains the driver posted meanwhile need no kick.
                if !isLeaving && h.canTake && v.hasAvailable { v.wanted = true }
            }
            guard v.wanted else { continue }
            v.wanted = false
            guard !isLeaving, !v.broken, h.canTake else { continue }
            if h.serve(v) { v.wanted = true; busy = true }
            // I/O that completed at once (a synchronous engine, a fast device) frees room now.
            if h.hasCompletions {
                h.reap(v)
                if h.canTake && v.hasAvailable { v.wanted = true; busy = true }
            }
        }
        if !more.isEmpty {
            let ids = more
            more = []
            for id in ids {
                if let w = watched[id], w.body() { more.insert(id); busy = true }
            }
        }
        while let v = dirty.popLast() { v.publish(log) }
        return busy
    }

    /// Spins briefly for new chains or completions; true if there was work.
    private func poll() -> Bool {
        let deadline = Clock.monotonicNanoseconds() + pollNanoseconds
        repeat {
            for v in rings.values {
                if v.handler.hasCompletions || (v.handler.canTake && v.hasAvailable) {
                    v.wanted = true
                    return true
                }
            }
        } while Clock.monotonicNanoseconds() < deadline
        return false
    }

    private func applyCommands() -> (stopping: Bool, removed: [UInt64]) {
        let (batch, stopping) = lock.withLock { () -> ([Command], Bool) in
            let c = commands
            commands = []
            return (c, stopped)
        }
        var tickets: [UInt64] = []
        for c in batch {
            switch c {
            case .add(let v):
                let id = nextID
                nextID += 1
                v.id = id
                v.worker = self
                v.wanted = true
                // Completed before it joined (a switch delivering into a new
                // receive ring): publish those with this turn's.
                if v.dirty { dirty.append(v) }
                do {
                    try epoll.add(v.kick.fd, events: .readable, token: id << 2 | Self.kickKind)
                    if let c = v.handler.completionEvent { try epoll.add(c.fd, events: .readable, token: id << 2 | Self.completionKind) }
                } catch {
                    log.warn("\(name): cannot watch ring \(v.index): \(error)")
                }
                rings[id] = v
            case .remove(let v, let ticket):
                if rings[v.id] === v {
                    leaving[v.id] = ticket
                } else {
                    tickets.append(ticket) // never added, or already gone
                }
            case .watch(let fd, let body):
                if let old = watchedFDs[fd.rawValue] { watched[old] = nil; epoll.remove(fd) }
                let id = nextID
                nextID += 1
                do {
                    try epoll.add(fd, events: .readable, token: id << 2 | Self.watchKind)
                    watched[id] = (fd, body)
                    watchedFDs[fd.rawValue] = id
                    more.insert(id)
                } catch {
                    log.warn("\(name): cannot watch descriptor \(fd.rawValue): \(error)")
                }
            case .unwatch(let fd):
                if let id = watchedFDs.removeValue(forKey: fd.rawValue) {
                    watched[id] = nil
                    more.remove(id)
                    epoll.remove(fd)
                }
            }
        }
        return (stopping, tickets)
    }

    /// Lets go of leaving rings whose chains all completed, and answers
    /// their ``remove(_:)`` calls.
    private func finishLeaving(_ immediate: [UInt64]) {
        var done = immediate
        for (id, ticket) in leaving {
            guard let v = rings[id], v.handler.inFlight == 0 else { continue }
            epoll.remove(v.kick.fd)
            if let c = v.handler.completionEvent { epoll.remove(c.fd) }
            if v.dirty { v.publish(log) }
            v.worker = nil
            rings[id] = nil
            leaving[id] = nil
            done.append(ticket)
        }
        guard !done.isEmpty else { return }
        lock.withLock {
            removed.formUnion(done)
            lock.broadcast()
        }
    }
}
