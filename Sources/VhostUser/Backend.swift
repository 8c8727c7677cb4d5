import ApusSys
import GuestMemory
import Virtqueue

/// What a device backend (blkback, netback) implements; the session below
/// speaks the protocol and calls these. Called on the session's thread.
public protocol VhostUserDeviceBackend: AnyObject, Sendable {
    /// virtio feature bits offered (VHOST_USER_F_PROTOCOL_FEATURES is added by the session).
    var features: UInt64 { get }
    /// Protocol features offered.
    var protocolFeatures: VhostUserProtocolFeatures { get }
    /// Number of queues.
    var queueCount: Int { get }
    /// Largest queue size accepted.
    var maxQueueSize: UInt16 { get }
    /// Device config space bytes (GET_CONFIG).
    func readConfig(offset: Int, size: Int) -> [UInt8]
    /// SET_CONFIG; return false to refuse.
    func writeConfig(offset: Int, bytes: [UInt8]) -> Bool
    /// The frontend's acknowledged features (SET_FEATURES).
    func featuresAcknowledged(_ features: UInt64)
    /// Start serving a queue: notifications arrive on `kick`; signal `call`.
    func startQueue(_ index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall)
    /// Stop serving a queue, wait until nothing is in flight, and return the
    /// next avail index to resume from.
    func stopQueue(_ index: Int) -> UInt16
    /// The session ended (frontend gone or reset): drop per-session state.
    func sessionEnded()
    /// Whether queue `index` records its chains in the inflight region when
    /// INFLIGHT_SHMFD is negotiated (a queue that gives taken chains back,
    /// as a NIC's receive queue does, cannot).
    func tracksInflight(_ index: Int) -> Bool
}

extension VhostUserDeviceBackend {
    public func tracksInflight(_ index: Int) -> Bool { true }
}

/// The call (interrupt) descriptor of a queue. The frontend may replace it
/// while the queue runs (SET_VRING_CALL), so workers read it through here.
public final class QueueCall: @unchecked Sendable {
    // SAFETY (Sendable): the event is swapped under `lock`.
    private let lock = ConditionLock()
    private var event: EventFD?
    public init(_ event: EventFD?) { self.event = event }

    /// Interrupts the driver (no-op without a call descriptor).
    public func signal() {
        let e = lock.withLock { event }
        e?.signal()
    }

    func replace(_ e: EventFD?) { lock.withLock { event = e } }
}

/// One frontend's session with a backend: the vhost-user state machine
/// (features, memory table, per-ring state) on top of a connection.
/// Protocol violations end the session with an error; they never crash.
public final class VhostUserBackendSession: @unchecked Sendable {
    // SAFETY (Sendable): driven by one thread (the backend's session thread).
    public let connection: VhostUserConnection
    public let device: any VhostUserDeviceBackend
    /// Names the session in logs (the socket's path).
    public let label: String

    struct Ring {
        var size: UInt16 = 0
        var address: VringAddress?
        var base: UInt16 = 0
        var kick: EventFD?
        var call = QueueCall(nil)
        var enabled = false
        var started = false
    }

    private var rings: [Ring]

    /// One Ring per queue, each with its own call holder. (Not
    /// `Array(repeating:)`: that would share one QueueCall among every ring,
    /// so SET_VRING_CALL for one queue would redirect all of them; a frontend
    /// with an interrupt vector per queue, as MSI-X gives QEMU, then never
    /// hears about its receive queue.)
    private static func freshRings(_ count: Int) -> [Ring] {
        (0..<count).map { _ in Ring() }
    }
    private var ackedFeatures: UInt64 = 0
    private var ackedProtocol = VhostUserProtocolFeatures()
    /// The inflight region (GET_INFLIGHT_FD / SET_INFLIGHT_FD), and the
    /// queue size its layout was made for.
    private var inflight: (memory: GuestMemory, queueSize: UInt16)?
    /// Chains found in flight and resubmitted, per queue, since the session began.
    public private(set) var resubmitted: [Int: Int] = [:]
    private var memory: GuestMemory?
    private var regions: [VhostUserMemoryRegion] = []
    /// Requests handled (for tests and stats).
    public private(set) var handled = 0

    public init(connection: VhostUserConnection, device: any VhostUserDeviceBackend, label: String = "") {
        self.connection = connection
        self.device = device
        self.label = label
        rings = Self.freshRings(device.queueCount)
    }

    /// The guest memory the frontend shared, if any.
    public var guestMemory: GuestMemory? { memory }

    /// Serves requests until the frontend disconnects; returns why it ended.
    public func run() -> VhostUserError {
        defer { end() }
        while true {
            let message: VhostUserMessage
            do {
                message = try connection.receive()
            } catch {
                return error
            }
            do {
                try handle(message)
            } catch {
                return error
            }
        }
    }

    /// Stops every ring and tells the device the session is over.
    public func end() {
        for i in rings.indices where rings[i].started {
            _ = device.stopQueue(i)
            rings[i].started = false
        }
        rings = Self.freshRings(device.queueCount)
        memory = nil
        inflight = nil
        device.sessionEnded()
    }

    /// Handles one request (and sends its reply).
    public func handle(_ message: VhostUserMessage) throws(VhostUserError) {
        handled += 1
        if BackendLog.trace { BackendLog.trace(message, label) }
        guard let request = message.request else {
            for f in message.fds { f.close() }
            if message.needsReply { try ack(message, ok: false) }
            throw .unsupportedRequest(message.requestCode)
        }
        var fds = message.fds
        defer { for f in fds { f.close() } }
        let p = message.payload

        switch request {
        case .getFeatures:
            try reply(message, VhostUserPayload.u64(device.features | vhostUserProtocolFeaturesBit))
            return
        case .setFeatures:
            let f = try VhostUserPayload.parseU64(p)
            let offered = device.features | vhostUserProtocolFeaturesBit
            guard f & ~offered == 0 else { throw .protocolViolation("SET_FEATURES acks unoffered bits 0x\(String(f & ~offered, radix: 16))") }
            ackedFeatures = f
            device.featuresAcknowledged(f & ~vhostUserProtocolFeaturesBit)
        case .setOwner, .resetOwner:
            if request == .resetOwner { resetRings() }
        case .getProtocolFeatures:
            try reply(message, VhostUserPayload.u64(device.protocolFeatures.rawValue))
            return
        case .setProtocolFeatures:
            let f = VhostUserProtocolFeatures(rawValue: try VhostUserPayload.parseU64(p))
            guard device.protocolFeatures.isSuperset(of: f) else { throw .protocolViolation("SET_PROTOCOL_FEATURES acks unoffered bits") }
            ackedProtocol = f
        case .getQueueNum:
            try reply(message, VhostUserPayload.u64(UInt64(device.queueCount)))
            return
        case .setMemTable:
            let table = try VhostUserMemoryTable(parsing: p)
            guard fds.count == table.regions.count else {
                throw .malformed("memory table has \(table.regions.count) regions and \(fds.count) descriptors")
            }
            try setMemoryTable(table, fds: &fds)
        case .setVringNum:
            let (index, num) = try VhostUserPayload.parseVringState(p)
            let i = try ringIndex(index)
            guard num > 0, num <= UInt32(device.maxQueueSize), num & (num - 1) == 0 else {
                throw .protocolViolation("ring \(index) size \(num) is not a power of two up to \(device.maxQueueSize)")
            }
            rings[i].size = UInt16(num)
        case .setVringAddr:
            let a = try VringAddress(parsing: p)
            rings[try ringIndex(a.index)].address = a
        case .setVringBase:
            let (index, base) = try VhostUserPayload.parseVringState(p)
            let i = try ringIndex(index)
            guard base <= UInt32(UInt16.max) else { throw .protocolViolation("ring base \(base) out of range") }
            rings[i].base = UInt16(base)
        case .getVringBase:
            let (index, _) = try VhostUserPayload.parseVringState(p)
            let i = try ringIndex(index)
            if rings[i].started {
                rings[i].base = device.stopQueue(i)
                rings[i].started = false
            }
            rings[i].kick = nil
            try reply(message, VhostUserPayload.vringState(index: index, value: UInt32(rings[i].base)))
            return
        case .setVringKick, .setVringCall, .setVringErr:
            let v = try VhostUserPayload.parseU64(p)
            let i = try ringIndex(UInt32(v & 0xFF))
            let noFD = v & VhostUserPayload.noFDFlag != 0
            guard noFD ? fds.isEmpty : fds.count == 1 else { throw .malformed("\(request) with \(fds.count) descriptors") }
            let event = noFD ? nil : EventFD(adopting: fds.removeFirst())
            switch request {
            case .setVringKick:
                guard let event else { throw .protocolViolation("polling mode (no kick descriptor) is not supported") }
                if rings[i].started {
                    rings[i].base = device.stopQueue(i)
                    rings[i].started = false
                }
                rings[i].kick = event
                try startIfReady(i)
            case .setVringCall:
                rings[i].call.replace(event)
            default:
                break // errors are reported through the used ring instead
            }
        case .setVringEnable:
            let (index, enable) = try VhostUserPayload.parseVringState(p)
            let i = try ringIndex(index)
            rings[i].enabled = enable != 0
            if !rings[i].enabled, rings[i].started {
                rings[i].base = device.stopQueue(i)
                rings[i].started = false
            } else {
                try startIfReady(i)
            }
        case .getConfig:
            let c = try VhostUserConfig(parsing: p)
            try reply(message, VhostUserConfig(offset: c.offset, flags: c.flags,
                                               bytes: device.readConfig(offset: Int(c.offset), size: c.bytes.count)).encoded)
            return
        case .setConfig:
            let c = try VhostUserConfig(parsing: p)
            if !device.writeConfig(offset: Int(c.offset), bytes: c.bytes) {
                if message.needsReply { try ack(message, ok: false) }
                return
            }
        case .getInflightFD:
            let request = try VhostUserInflight(parsing: p)
            let (region, shape) = try makeInflightRegion(request)
            guard let fd = region.regions.first?.backing?.fd, let copy = try? fd.duplicate() else {
                throw .protocolViolation("cannot share the inflight region")
            }
            inflight = (region, shape.queueSize)
            try connection.send(VhostUserMessage(requestCode: message.requestCode, flags: VhostUserMessage.version | VhostUserMessage.replyFlag,
                                                 payload: shape.encoded, fds: [copy]))
            copy.close()
            return
        case .setInflightFD:
            guard fds.count == 1 else { throw .malformed("SET_INFLIGHT_FD with \(fds.count) descriptors") }
            let shape = try VhostUserInflight(parsing: p)
            inflight = (try mapInflightRegion(shape, fd: fds.removeFirst()), shape.queueSize)
        case .resetDevice:
            resetRings()
        default:
            if message.needsReply { try ack(message, ok: false) }
            throw .unsupportedRequest(message.requestCode)
        }
        if message.needsReply { try ack(message, ok: true) }
    }

    /// Checks a GET/SET_INFLIGHT_FD shape: tracking offered and negotiated,
    /// a queue count this device has, a queue size the spec allows.
    private func checkInflight(_ r: VhostUserInflight) throws(VhostUserError) {
        guard device.protocolFeatures.contains(.inflightSharedMemory), ackedProtocol.contains(.inflightSharedMemory) else {
            throw .protocolViolation("inflight tracking was not negotiated")
        }
        guard r.queueCount >= 1, Int(r.queueCount) <= device.queueCount else {
            throw .protocolViolation("inflight region for \(r.queueCount) queues (the device has \(device.queueCount))")
        }
        guard r.queueSize >= 1, r.queueSize <= Virtq.maxQueueSize, r.queueSize & (r.queueSize - 1) == 0 else {
            throw .protocolViolation("inflight queue size \(r.queueSize) is not a power of two up to \(Virtq.maxQueueSize)")
        }
    }

    /// GET_INFLIGHT_FD: a fresh, zeroed region in a memfd sealed at its size
    /// (neither side can shrink it under the other's mapping).
    private func makeInflightRegion(_ r: VhostUserInflight) throws(VhostUserError) -> (GuestMemory, VhostUserInflight) {
        try checkInflight(r)
        let size = InflightLayout.regionSize(queues: Int(r.queueCount), queueSize: r.queueSize)
        do {
            let region = try GuestRegion(start: GuestAddress(0), size: size, backing: .sharedMemfd, name: "apus-inflight")
            try region.backing?.fd.addSeals([.shrink, .grow, .seal])
            return (try GuestMemory(regions: [region]), VhostUserInflight(mmapSize: size, mmapOffset: 0, queueCount: r.queueCount, queueSize: r.queueSize))
        } catch {
            throw .protocolViolation("cannot make an inflight region of \(size) bytes: \(error)")
        }
    }

    /// SET_INFLIGHT_FD: maps the region a frontend kept (made by this
    /// backend, or one before it), after checking it is the size its shape
    /// needs and sealed there: a file that could shrink under the mapping
    /// would fault this process.
    private func mapInflightRegion(_ r: VhostUserInflight, fd: FileDescriptor) throws(VhostUserError) -> GuestMemory {
        let owned = OwnedDescriptor(fd)
        try checkInflight(r)
        let needed = InflightLayout.regionSize(queues: Int(r.queueCount), queueSize: r.queueSize)
        guard r.mmapSize == needed else {
            throw .protocolViolation("inflight region of \(r.mmapSize) bytes; \(r.queueCount) queues of \(r.queueSize) need \(needed)")
        }
        guard let fileSize = try? owned.fd.size(), r.mmapOffset <= UInt64(Int64.max) - needed, UInt64(max(0, fileSize)) >= r.mmapOffset + needed else {
            throw .protocolViolation("the inflight region's file is smaller than offset \(r.mmapOffset) + \(needed) bytes")
        }
        guard owned.fd.seals().contains([.shrink, .seal]) else {
            throw .protocolViolation("the inflight region's file is not sealed against shrinking")
        }
        do {
            guard let copy = try? owned.fd.duplicate() else { throw GuestMemoryError.system("dup") }
            return try GuestMemory(regions: [try GuestRegion(start: GuestAddress(0), size: needed, fd: copy, fileOffset: 0, mmapOffset: r.mmapOffset)])
        } catch {
            throw .protocolViolation("cannot map the inflight region: \(error)")
        }
    }

    private func ringIndex(_ index: UInt32) throws(VhostUserError) -> Int {
        guard index < UInt32(rings.count) else { throw .protocolViolation("ring \(index) does not exist (\(rings.count) rings)") }
        return Int(index)
    }

    private func reply(_ to: VhostUserMessage, _ payload: [UInt8]) throws(VhostUserError) {
        try connection.send(VhostUserMessage(requestCode: to.requestCode, flags: VhostUserMessage.version | VhostUserMessage.replyFlag,
                                             payload: payload, fds: []))
    }

    private func ack(_ to: VhostUserMessage, ok: Bool) throws(VhostUserError) {
        try reply(to, VhostUserPayload.u64(ok ? 0 : 1))
    }

    private func resetRings() {
        for i in rings.indices where rings[i].started { _ = device.stopQueue(i) }
        rings = Self.freshRings(device.queueCount)
        ackedFeatures = 0
        inflight = nil
    }

    private func setMemoryTable(_ table: VhostUserMemoryTable, fds: inout [FileDescriptor]) throws(VhostUserError) {
        // Rings hold the old memory; stop them, swap, restart.
        let running = rings.indices.filter { rings[$0].started }
        for i in running {
            rings[i].base = device.stopQueue(i)
            rings[i].started = false
        }
        var mapped: [GuestRegion] = []
        for (region, fd) in zip(table.regions, fds) {
            do {
                mapped.append(try GuestRegion(start: GuestAddress(region.guestPhysicalAddress), size: region.size,
                                              fd: fd, fileOffset: 0, mmapOffset: region.mmapOffset))
            } catch {
                // GuestRegion took ownership of the descriptors it was given.
                fds.removeFirst(mapped.count + 1)
                throw .protocolViolation("cannot map guest memory region at 0x\(String(region.guestPhysicalAddress, radix: 16)): \(error)")
            }
        }
        fds.removeAll() // owned by the regions now
        do {
            memory = try GuestMemory(regions: mapped)
        } catch {
            throw .protocolViolation("bad memory table: \(error)")
        }
        regions = table.regions
        for i in running { try startIfReady(i) }
    }

    /// Translates a frontend virtual address (SET_VRING_ADDR) to guest-physical.
    func translate(_ va: UInt64) -> GuestAddress? {
        for r in regions where va >= r.userspaceAddress && va - r.userspaceAddress < r.size {
            return GuestAddress(r.guestPhysicalAddress + (va - r.userspaceAddress))
        }
        return nil
    }

    private func startIfReady(_ i: Int) throws(VhostUserError) {
        var ring = rings[i]
        let enabled = ring.enabled || ackedFeatures & vhostUserProtocolFeaturesBit == 0
        guard !ring.started, enabled, let memory, let kick = ring.kick, let address = ring.address, ring.size > 0 else { return }
        guard let desc = translate(address.descriptor), let avail = translate(address.avail), let used = translate(address.used) else {
            throw .protocolViolation("ring \(i) addresses are outside the memory table")
        }
        let queue: SplitQueue
        do {
            queue = try SplitQueue(memory: memory, size: ring.size, descriptorTable: desc, availRing: avail, usedRing: used,
                                   eventIndex: ackedFeatures & Virtq.featureEventIndex != 0,
                                   indirect: ackedFeatures & Virtq.featureIndirectDescriptors != 0,
                                   lastAvailIndex: ring.base)
        } catch {
            throw .protocolViolation("ring \(i): \(error)")
        }
        if let inflight, ackedProtocol.contains(.inflightSharedMemory), device.tracksInflight(i) {
            guard let region = InflightQueue(region: inflight.memory, index: i, queueSize: inflight.queueSize) else {
                throw .protocolViolation("ring \(i) has no place in the inflight region")
            }
            do {
                let n = try queue.track(region)
                if n > 0 {
                    resubmitted[i, default: 0] += n
                    ErrorLog.shared.warn("\(label): ring \(i): resubmitting \(n) request(s) taken before the backend restarted")
                }
            } catch {
                ErrorLog.shared.warn("\(label): ring \(i): inflight region not used (\(error)); resuming at avail index \(ring.base)")
            }
        }
        // A ring that resumes (a restarted backend, a reconnected frontend):
        // the driver may be asleep waiting for an interrupt for used entries
        // the previous backend published and never signalled. One now (a
        // spurious one is harmless: the driver finds nothing new).
        if ring.base != 0 || queue.nextUsedIndex != 0 { ring.call.signal() }
        device.startQueue(i, queue: queue, kick: kick, call: ring.call)
        ring.started = true
        rings[i] = ring
    }
}
