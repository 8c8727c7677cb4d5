import VirtioSpec
import ApusSys
import GuestMemory
import Virtqueue
import VhostUser

/// Dom0's software switch: the ports netback serves (each a guest NIC over
/// vhost-user), the learning table between them, and one thread that moves
/// frames from transmit queues to receive queues. Every guest-supplied
/// chain is checked; bad ones are completed empty and counted, never fatal.
public final class SwitchEngine: @unchecked Sendable {
    // SAFETY (Sendable): all mutable state is guarded by `lock`; the switch
    // thread and the ports' vhost-user session threads take it.
    final class Port {
        let id: Int
        let name: String
        var queues: [Queue?] = [nil, nil]
        var backlog: [[UInt8]] = []
        var backlogHead = 0
        var counters = PortCounters()
        var mergeable = false
        /// The host uplink: a TAP device instead of virtqueues.
        var tap: TapDevice?
        /// Receive used entries added since the last publish.
        var pendingUsed = false
        init(id: Int, name: String) {
            self.id = id
            self.name = name
        }
        var backlogCount: Int { backlog.count - backlogHead }
    }

    struct Queue {
        let queue: SplitQueue
        let kick: EventFD
        let call: QueueCall
    }

    public enum PortError: Error, Equatable, CustomStringConvertible {
        case exists(String)
        case badName(String)
        case full(Int)
        public var description: String {
            switch self {
            case .exists(let n): "port '\(n)' exists"
            case .badName(let n): "bad port name '\(n)' (1-64 characters: letters, digits, '.', '-', '_')"
            case .full(let n): "the switch already has \(n) ports"
            }
        }
    }

    /// Frames held for a port whose guest has no receive buffers posted.
    public static let backlogLimit = 512
    public static let maxPorts = 1024
    /// Frames taken from one transmit queue before others get a turn.
    static let transmitBudget = 256

    private let lock = ConditionLock()
    private var ports: [Int: Port] = [:]
    private var byName: [String: Int] = [:]
    private var nextID = 1
    private var table: L2Switch
    private let epoll: Epoll
    private let wake: EventFD
    private var thread: OSThread?
    private var stopped = false
    private var lastExpiry: UInt64 = 0
    /// One frame read from the uplink (the switch thread's).
    private var uplinkBuffer = [UInt8](repeating: 0, count: 65536)
    /// The frame being switched, reused so a frame costs no allocation
    /// (the switch thread's; a frame kept in a backlog keeps its own copy).
    private var frameBuffer: [UInt8] = []
    /// The receive buffers a frame is being written into (reused likewise).
    private var receiveChains: [(head: UInt16, length: UInt32, chain: DescriptorChain)] = []
    static let wakeToken = UInt64.max

    public init(ageingSeconds: UInt64 = 300) throws(SystemCallError) {
        table = L2Switch(ageingNanoseconds: ageingSeconds * 1_000_000_000)
        epoll = try Epoll()
        wake = try EventFD()
        try epoll.add(wake.fd, events: .readable, token: Self.wakeToken)
    }

    // MARK: ports (control socket)

    public func addPort(_ name: String) throws(PortError) -> Int {
        guard (1...64).contains(name.utf8.count),
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == 0x2e || $0 == 0x2d || $0 == 0x5f })
        else { throw .badName(String(name.prefix(64))) }
        let result: Result<Int, PortError> = lock.withLock {
            guard byName[name] == nil else { return .failure(.exists(name)) }
            guard ports.count < Self.maxPorts else { return .failure(.full(Self.maxPorts)) }
            let id = nextID
            nextID += 1
            ports[id] = Port(id: id, name: name)
            byName[name] = id
            table.addPort(id)
            return .success(id)
        }
        return try result.get()
    }

    /// Adds the uplink to the host: a port whose frames come from and go
    /// to a TAP device (the host's end of the switch).
    public func addUplink(_ name: String, tap: TapDevice) throws -> Int {
        let id = try addPort(name)
        try lock.withLock {
            ports[id]?.tap = tap
            try epoll.add(tap.fd, events: .readable, token: UInt64(id) << 1)
        }
        wake.signal()
        return id
    }

    /// Removes a port (its queues must have been stopped: the port's
    /// vhost-user server is stopped first). False if there is no such port.
    @discardableResult
    public func removePort(_ name: String) -> Bool {
        lock.withLock {
            guard let id = byName.removeValue(forKey: name), let p = ports.removeValue(forKey: id) else { return false }
            for q in p.queues.compactMap({ $0 }) { epoll.remove(q.kick.fd) }
            if let tap = p.tap { epoll.remove(tap.fd) }
            table.removePort(id)
            return true
        }
    }

    public func counters(_ name: String) -> PortCounters? {
        lock.withLock { byName[name].flatMap { ports[$0]?.counters } }
    }

    public var portNames: [String] { lock.withLock { byName.keys.sorted() } }

    /// The learned MACs: (MAC, port name, age in seconds).
    public func forwardingTable() -> [(mac: String, port: String, ageSeconds: UInt64)] {
        lock.withLock {
            table.entries(now: Clock.monotonicNanoseconds()).compactMap { e in
                ports[e.port].map { (e.mac.description, $0.name, e.age / 1_000_000_000) }
            }
        }
    }

    // MARK: queues (the ports' vhost-user sessions)

    func startQueue(port id: Int, index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall) {
        lock.withLock {
            guard let p = ports[id], index < 2 else { return }
            if let old = p.queues[index] { epoll.remove(old.kick.fd) }
            p.queues[index] = Queue(queue: queue, kick: kick, call: call)
            do {
                try epoll.add(kick.fd, events: .readable, token: UInt64(id) << 1 | UInt64(index))
            } catch {
                ErrorLog.shared.warn("port \(p.name): cannot watch queue \(index): \(error)")
            }
        }
        wake.signal() // frames may already be waiting
    }

    func stopQueue(port id: Int, index: Int) -> UInt16 {
        lock.withLock {
            guard let p = ports[id], index < 2, let q = p.queues[index] else { return 0 }
            epoll.remove(q.kick.fd)
            p.queues[index] = nil
            if index == VirtioNet.receiveQueue { p.backlog = []; p.backlogHead = 0 }
            return q.queue.lastAvailIndex
        }
    }

    func setMergeable(port id: Int, _ on: Bool) {
        lock.withLock { ports[id]?.mergeable = on }
    }

    // MARK: the switch thread

    public func start() throws(SystemCallError) {
        let t = OSThread(name: "netback-switch") { [self] in run() }
        try t.start()
        thread = t
    }

    public func stop() {
        lock.withLock { stopped = true }
        wake.signal()
        thread?.join()
        thread = nil
    }

    private func run() {
        while true {
            let ready = (try? epoll.wait(maxEvents: 64, timeoutMilliseconds: 1000)) ?? []
            let more: Bool = lock.withLock {
                if stopped { return false }
                var again = false
                var touched: Set<Int> = []
                for r in ready {
                    if r.token == Self.wakeToken {
                        _ = wake.drain()
                        // Serve every port (after start, or a budget ran out).
                        for p in ports.values {
                            if p.tap != nil { again = receiveFromUplink(p, &touched) || again }
                            if p.queues[1] != nil { again = transmit(p, &touched) || again }
                            if p.backlogCount > 0 { flushBacklog(p) ; touched.insert(p.id) }
                        }
                        continue
                    }
                    guard let p = ports[Int(r.token >> 1)] else { continue }
                    if p.tap != nil {
                        again = receiveFromUplink(p, &touched) || again
                        continue
                    }
                    let index = Int(r.token & 1)
                    guard let q = p.queues[index] else { continue }
                    _ = q.kick.drain()
                    if index == VirtioNet.transmitQueue {
                        again = transmit(p, &touched) || again
                    } else {
                        flushBacklog(p)
                        touched.insert(p.id)
                    }
                }
                for id in touched { if let p = ports[id] { completeReceive(p) } }
                let now = Clock.monotonicNanoseconds()
                if now &- lastExpiry > 1_000_000_000 {
                    table.expire(now: now)
                    lastExpiry = now
                }
                return again
            }
            if lock.withLock({ stopped }) { return }
            if more { wake.signal() }
        }
    }

    /// Takes up to a budget of frames from `p`'s transmit queue and switches
    /// them; true if more are waiting.
    private func transmit(_ p: Port, _ touched: inout Set<Int>) -> Bool {
        guard let tx = p.queues[VirtioNet.transmitQueue] else { return false }
        let q = tx.queue
        var taken = 0
        var more = false
        let now = Clock.monotonicNanoseconds()
        while true {
            if taken == Self.transmitBudget { more = true; break }
            let chain: DescriptorChain
            do {
                guard let c = try q.pop() else {
                    // Re-arm the kick, and catch frames that raced with it.
                    if (try? q.setNotifications(enabled: true)) == true { continue }
                    break
                }
                chain = c
            } catch {
                p.counters.rxErrors += 1
                guard let head = error.head else { break } // the ring itself is unreadable
                try? q.addUsed(head: head, length: 0)
                taken += 1
                continue
            }
            taken += 1
            do {
                // The header's flags and gso_type, then the frame after it.
                try ChainIO.read(q.memory, chain.readable, count: 2, into: &frameBuffer)
                let length = try VirtioNet.checkTransmit(readable: chain.readableLength, writable: chain.writableLength,
                                                         flags: frameBuffer.first ?? 0, gsoType: frameBuffer.count > 1 ? frameBuffer[1] : 0)
                try ChainIO.read(q.memory, chain.readable, offset: UInt64(VirtioNet.headerSize), count: length, into: &frameBuffer)
                forward(frameBuffer, from: p, now: now, &touched)
            } catch {
                p.counters.rxErrors += 1
            }
            try? q.addUsed(head: chain.head, length: 0)
        }
        if taken > 0 {
            try? q.publishUsed()
            if (try? q.needsNotification()) ?? true { tx.call.signal() }
        }
        return more
    }

    /// Frames the host sent into the uplink's TAP device, switched like a
    /// guest's transmissions; true if more are waiting.
    private func receiveFromUplink(_ p: Port, _ touched: inout Set<Int>) -> Bool {
        guard let tap = p.tap else { return false }
        var taken = 0
        let now = Clock.monotonicNanoseconds()
        while taken < Self.transmitBudget {
            let n: Int
            do {
                guard let got = try tap.receive(into: &uplinkBuffer) else { return false }
                n = got
            } catch {
                p.counters.rxErrors += 1
                return false
            }
            taken += 1
            guard n >= VirtioNet.minFrame, n <= VirtioNet.maxFrame else {
                p.counters.rxErrors += 1
                continue
            }
            frameBuffer.removeAll(keepingCapacity: true)
            frameBuffer.append(contentsOf: uplinkBuffer[0..<n])
            forward(frameBuffer, from: p, now: now, &touched)
        }
        return true
    }

    /// Counts a frame received from port `p` and delivers it wherever the
    /// learning table sends it.
    private func forward(_ frame: [UInt8], from p: Port, now: UInt64, _ touched: inout Set<Int>) {
        p.counters.rxPackets += 1
        p.counters.rxBytes += UInt64(frame.count)
        switch table.decide(frame, from: p.id, now: now) {
        case .drop:
            break
        case .port(let d):
            guard let dp = ports[d] else { break }
            deliver(frame, to: dp)
            touched.insert(d)
        case .flood:
            for dp in ports.values where dp.id != p.id {
                deliver(frame, to: dp)
                touched.insert(dp.id)
            }
        }
    }

    /// Queues `frame` for `p`'s guest: straight into its receive buffers, or
    /// into the backlog until it posts more.
    private func deliver(_ frame: [UInt8], to p: Port) {
        if let tap = p.tap {
            do {
                if try tap.send(frame) {
                    p.counters.txPackets += 1
                    p.counters.txBytes += UInt64(frame.count)
                } else {
                    p.counters.txDrops += 1
                }
            } catch {
                p.counters.txErrors += 1
            }
            return
        }
        guard p.queues[VirtioNet.receiveQueue] != nil else {
            p.counters.txDrops += 1
            return
        }
        if p.backlogCount == 0, tryReceive(frame, p) { return }
        guard p.backlogCount < Self.backlogLimit else {
            p.counters.txDrops += 1
            return
        }
        p.backlog.append(frame)
    }

    private func flushBacklog(_ p: Port) {
        while p.backlogHead < p.backlog.count {
            guard tryReceive(p.backlog[p.backlogHead], p) else { break }
            p.backlogHead += 1
        }
        if p.backlogHead == p.backlog.count {
            p.backlog.removeAll(keepingCapacity: true)
            p.backlogHead = 0
        } else if p.backlogHead > 64 {
            p.backlog.removeFirst(p.backlogHead)
            p.backlogHead = 0
        }
    }

    /// Writes one frame into the guest's receive buffers (merged across
    /// several when MRG_RXBUF was negotiated). False when there are not
    /// enough buffers: whatever was taken is given back untouched. A
    /// malformed receive chain loses only the frame being written.
    private func tryReceive(_ frame: [UInt8], _ p: Port) -> Bool {
        guard let rx = p.queues[VirtioNet.receiveQueue] else { return true }
        let q = rx.queue
        let header = VirtioNet.headerSize
        let total = header + frame.count
        var used: [(head: UInt16, length: UInt32, chain: DescriptorChain)] = []
        swap(&used, &receiveChains) // reuse its storage; handed back on return
        used.removeAll(keepingCapacity: true)
        defer { swap(&used, &receiveChains) }
        var written = 0
        while written < total {
            let chain: DescriptorChain
            do {
                guard let c = try q.pop() else {
                    q.rewind(UInt16(used.count))
                    // Ask for a kick when buffers come; they may already have.
                    if (try? q.setNotifications(enabled: true)) == true { continue }
                    return false
                }
                chain = c
            } catch {
                // Complete what was taken (empty) and drop the frame.
                if let head = error.head { try? q.addUsed(head: head, length: 0) }
                for u in used { try? q.addUsed(head: u.head, length: 0) }
                p.counters.txErrors += 1
                p.pendingUsed = true
                return true
            }
            let room = Int(min(chain.writableLength, UInt64(Int32.max)))
            guard chain.readableLength == 0, room > 0, used.isEmpty ? room >= VirtioNet.headerSize : true else {
                try? q.addUsed(head: chain.head, length: 0)
                for u in used { try? q.addUsed(head: u.head, length: 0) }
                p.counters.txErrors += 1
                p.pendingUsed = true
                return true
            }
            let n = min(room, total - written)
            do {
                if written == 0 {
                    // The first buffer: the header, then the frame's start.
                    try ChainIO.write(q.memory, chain.writable, bytes: VirtioNet.singleBufferHeader)
                    try ChainIO.write(q.memory, chain.writable, offset: UInt64(header), bytes: frame[0..<(n - header)])
                } else {
                    try ChainIO.write(q.memory, chain.writable, bytes: frame[(written - header)..<(written - header + n)])
                }
            } catch {
                try? q.addUsed(head: chain.head, length: 0)
                for u in used { try? q.addUsed(head: u.head, length: 0) }
                p.counters.txErrors += 1
                p.pendingUsed = true
                return true
            }
            used.append((chain.head, UInt32(n), chain))
            written += n
            if written < total && !p.mergeable {
                // One buffer per frame without MRG_RXBUF, and this one is too small.
                try? q.addUsed(head: chain.head, length: 0)
                p.counters.txErrors += 1
                p.pendingUsed = true
                return true
            }
        }
        if used.count > 1 {
            let count = UInt16(used.count)
            _ = try? ChainIO.write(q.memory, used[0].chain.writable, offset: 10, bytes: [UInt8(count & 0xff), UInt8(count >> 8)])
        }
        for u in used { try? q.addUsed(head: u.head, length: u.length) }
        p.counters.txPackets += 1
        p.counters.txBytes += UInt64(frame.count)
        p.pendingUsed = true
        return true
    }

    /// Publishes a port's receive completions and interrupts its guest.
    private func completeReceive(_ p: Port) {
        guard p.pendingUsed, let rx = p.queues[VirtioNet.receiveQueue] else { return }
        p.pendingUsed = false
        try? rx.queue.publishUsed()
        if (try? rx.queue.needsNotification()) ?? true { rx.call.signal() }
    }
}
