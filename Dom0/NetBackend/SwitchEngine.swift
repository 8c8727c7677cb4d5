import VirtioSpec
import ApusSys
import GuestMemory
import Virtqueue
import VhostUser

/// Dom0's software switch: the ports netback serves (each a guest NIC over
/// vhost-user), the learning table between them, and one ``VringWorker``
/// thread that serves every port's queues: a transmit queue's chains are
/// switched into other ports' receive queues or the uplink. Every
/// guest-supplied chain is checked; bad ones are completed empty and
/// counted, never fatal.
public final class SwitchEngine: @unchecked Sendable {
    // SAFETY (Sendable): all mutable state is guarded by `lock`; the worker
    // thread (through the queues' handlers) and the control and vhost-user
    // session threads take it. The worker's own state is its own: rings are
    // added and removed through it, never under `lock`.
    final class Port {
        let id: Int
        let name: String
        var queues: [Vring?] = [nil, nil]
        var backlog: [[UInt8]] = []
        var backlogHead = 0
        var counters = PortCounters()
        var mergeable = false
        /// The host uplink: a TAP device instead of virtqueues.
        var tap: TapDevice?
        init(id: Int, name: String) {
            self.id = id
            self.name = name
        }
        var backlogCount: Int { backlog.count - backlogHead }
    }

    /// One port's queue as the worker sees it: serving it takes the switch's lock.
    final class PortQueue: VringHandler {
        unowned let engine: SwitchEngine
        let port: Int
        let index: Int
        init(engine: SwitchEngine, port: Int, index: Int) {
            self.engine = engine
            self.port = port
            self.index = index
        }
        func serve(_ vring: Vring) -> Bool { engine.serve(port: port, index: index, vring) }
        func malformed(_ vring: Vring, _ error: SplitQueue.PopError) { engine.countMalformed(port: port, index: index) }
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
    private let worker: VringWorker
    private var lastExpiry: UInt64 = 0
    /// One frame read from the uplink (the worker thread's).
    private var uplinkBuffer = [UInt8](repeating: 0, count: 65536)
    /// The frame being switched, reused so a frame costs no allocation
    /// (the worker thread's; a frame kept in a backlog keeps its own copy).
    private var frameBuffer: [UInt8] = []
    /// The receive buffers a frame is being written into (reused likewise).
    private var receiveChains: [(head: UInt16, length: UInt32, chain: DescriptorChain)] = []

    public init(ageingSeconds: UInt64 = 300) throws(SystemCallError) {
        table = L2Switch(ageingNanoseconds: ageingSeconds * 1_000_000_000)
        worker = try VringWorker(name: "netback-switch")
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
        lock.withLock { ports[id]?.tap = tap }
        worker.watch(tap.fd) { [unowned self] in
            lock.withLock { ports[id].map { receiveFromUplink($0) } ?? false }
        }
        return id
    }

    /// Removes a port (its vhost-user server is stopped first, which stops
    /// its queues). False if there is no such port.
    @discardableResult
    public func removePort(_ name: String) -> Bool {
        let gone: Port? = lock.withLock {
            guard let id = byName.removeValue(forKey: name), let p = ports.removeValue(forKey: id) else { return nil }
            table.removePort(id)
            return p
        }
        guard let gone else { return false }
        for v in gone.queues.compactMap({ $0 }) { worker.remove(v) }
        if let tap = gone.tap { worker.unwatch(tap.fd) }
        return true
    }

    public func counters(_ name: String) -> PortCounters? {
        lock.withLock { byName[name].flatMap { ports[$0]?.counters } }
    }

    public var portNames: [String] { lock.withLock { byName.keys.sorted() } }

    /// The learned MACs: (MAC, port name, age in seconds).
    public func forwardingTable() -> [(mac: String, port: String, ageSeconds: UInt64)] {
        lock.withLock {
            let now = Clock.monotonicNanoseconds()
            table.expire(now: now)
            return table.entries(now: now).compactMap { e in
                ports[e.port].map { (e.mac.description, $0.name, e.age / 1_000_000_000) }
            }
        }
    }

    // MARK: queues (the ports' vhost-user sessions)

    func startQueue(port id: Int, index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall) {
        guard index < 2 else { return }
        let vring = Vring(index: index, queue: queue, kick: kick, call: call, handler: PortQueue(engine: self, port: id, index: index))
        let old: Vring?? = lock.withLock {
            guard let p = ports[id] else { return .none }
            defer { p.queues[index] = vring }
            return .some(p.queues[index])
        }
        guard case .some(let replaced) = old else { return }
        if let replaced { worker.remove(replaced) }
        worker.add(vring) // frames may already be waiting: served at once
    }

    func stopQueue(port id: Int, index: Int) -> UInt16 {
        let vring: Vring? = lock.withLock {
            guard let p = ports[id], index < 2, let v = p.queues[index] else { return nil }
            p.queues[index] = nil
            if index == VirtioNet.receiveQueue { p.backlog = []; p.backlogHead = 0 }
            return v
        }
        guard let vring else { return 0 }
        return worker.remove(vring)
    }

    func setMergeable(port id: Int, _ on: Bool) {
        lock.withLock { ports[id]?.mergeable = on }
    }

    // MARK: the worker's side

    public func start() throws(SystemCallError) { try worker.start() }

    public func stop() { worker.stop() }

    /// A port's queue has chains: frames to switch (transmit), or buffers
    /// for frames held back (receive). True if a budget left frames waiting.
    func serve(port id: Int, index: Int, _ vring: Vring) -> Bool {
        lock.withLock {
            guard let p = ports[id], p.queues[index] === vring else { return false }
            let now = Clock.monotonicNanoseconds()
            if now &- lastExpiry > 1_000_000_000 {
                table.expire(now: now)
                lastExpiry = now
            }
            if index == VirtioNet.transmitQueue { return transmit(p, vring, now: now) }
            flushBacklog(p)
            return false
        }
    }

    /// A malformed chain on a port's queue (the lock is held: chains are
    /// only taken while serving).
    func countMalformed(port id: Int, index: Int) {
        guard let p = ports[id] else { return }
        if index == VirtioNet.transmitQueue { p.counters.rxErrors += 1 } else { p.counters.txErrors += 1 }
    }

    /// Takes up to a budget of frames from `p`'s transmit queue and switches
    /// them; true if more may be waiting.
    private func transmit(_ p: Port, _ tx: Vring, now: UInt64) -> Bool {
        var taken = 0
        while taken < Self.transmitBudget, let chain = tx.next() {
            taken += 1
            do {
                // The header's flags and gso_type, then the frame after it.
                try ChainIO.read(tx.memory, chain.readable, count: 2, into: &frameBuffer)
                let length = try VirtioNet.checkTransmit(readable: chain.readableLength, writable: chain.writableLength,
                                                         flags: frameBuffer.first ?? 0, gsoType: frameBuffer.count > 1 ? frameBuffer[1] : 0)
                try ChainIO.read(tx.memory, chain.readable, offset: UInt64(VirtioNet.headerSize), count: length, into: &frameBuffer)
                forward(frameBuffer, from: p, now: now)
            } catch {
                p.counters.rxErrors += 1
            }
            tx.complete(head: chain.head, length: 0)
        }
        return taken == Self.transmitBudget
    }

    /// Frames the host sent into the uplink's TAP device, switched like a
    /// guest's transmissions; true if more are waiting.
    private func receiveFromUplink(_ p: Port) -> Bool {
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
            forward(frameBuffer, from: p, now: now)
        }
        return true
    }

    /// Counts a frame received from port `p` and delivers it wherever the
    /// learning table sends it.
    private func forward(_ frame: [UInt8], from p: Port, now: UInt64) {
        p.counters.rxPackets += 1
        p.counters.rxBytes += UInt64(frame.count)
        switch table.decide(frame, from: p.id, now: now) {
        case .drop:
            break
        case .port(let d):
            guard let dp = ports[d] else { break }
            deliver(frame, to: dp)
        case .flood:
            for dp in ports.values where dp.id != p.id {
                deliver(frame, to: dp)
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
    /// receive chain the guest got wrong loses only the frame being written.
    private func tryReceive(_ frame: [UInt8], _ p: Port) -> Bool {
        guard let rx = p.queues[VirtioNet.receiveQueue] else { return true }
        let header = VirtioNet.headerSize
        let total = header + frame.count
        var used: [(head: UInt16, length: UInt32, chain: DescriptorChain)] = []
        swap(&used, &receiveChains) // reuse its storage; handed back on return
        used.removeAll(keepingCapacity: true)
        defer { swap(&used, &receiveChains) }
        /// Completes what was taken, empty, and drops the frame.
        func drop(_ chain: DescriptorChain) -> Bool {
            rx.complete(head: chain.head, length: 0)
            for u in used { rx.complete(head: u.head, length: 0) }
            p.counters.txErrors += 1
            return true
        }
        var written = 0
        while written < total {
            guard let chain = rx.next() else {
                // Too few buffers: the guest kicks when it posts more.
                rx.giveBack(UInt16(used.count))
                return false
            }
            let room = Int(min(chain.writableLength, UInt64(Int32.max)))
            guard chain.readableLength == 0, room > 0, used.isEmpty ? room >= VirtioNet.headerSize : true else { return drop(chain) }
            let n = min(room, total - written)
            do {
                if written == 0 {
                    // The first buffer: the header, then the frame's start.
                    try ChainIO.write(rx.memory, chain.writable, bytes: VirtioNet.singleBufferHeader)
                    try ChainIO.write(rx.memory, chain.writable, offset: UInt64(header), bytes: frame[0..<(n - header)])
                } else {
                    try ChainIO.write(rx.memory, chain.writable, bytes: frame[(written - header)..<(written - header + n)])
                }
            } catch {
                return drop(chain)
            }
            // One buffer per frame without MRG_RXBUF, and this one is too small.
            if written + n < total && !p.mergeable { return drop(chain) }
            used.append((chain.head, UInt32(n), chain))
            written += n
        }
        if used.count > 1 {
            let count = UInt16(used.count)
            _ = try? ChainIO.write(rx.memory, used[0].chain.writable, offset: 10, bytes: [UInt8(count & 0xff), UInt8(count >> 8)])
        }
        for u in used { rx.complete(head: u.head, length: u.length) }
        p.counters.txPackets += 1
        p.counters.txBytes += UInt64(frame.count)
        return true
    }
}
