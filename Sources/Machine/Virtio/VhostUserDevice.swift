import ApusSys
import GuestMemory
import Synchronization
import VhostUser
import VirtioSpec

/// A virtio device whose backend runs in Dom0, reached over vhost-user.
/// The guest's feature negotiation, queue setup and DRIVER_OK become
/// vhost-user messages; the data path (kick ioeventfds, call irqfd) then
/// bypasses apus-hv entirely. If the backend goes away the VM keeps running,
/// the device reports DEVICE_NEEDS_RESET, and apus-hv reconnects when the
/// socket comes back.
public final class VhostUserDevice: VirtioDeviceModel, @unchecked Sendable {
    // SAFETY (Sendable): mutable state lives in `state` (a Mutex); the
    // frontend inside it is only used with the lock held.
    public enum Kind: Sendable, Equatable {
        case block
        case network(mac: [UInt8]?)
        /// virtio-fs: apus-hv provides the configuration (the tag the guest
        /// mounts), as QEMU's vhost-user-fs does; virtiofsd keeps none.
        case filesystem(tag: String)
        var deviceID: UInt32 {
            switch self {
            case .block: return VirtioBlock.deviceID
            case .network: return VirtioNet.deviceID
            case .filesystem: return VirtioFs.deviceID
            }
        }
        var name: String {
            switch self {
            case .block: return "disk"
            case .network: return "net"
            case .filesystem: return "fs"
            }
        }
    }

    public let kind: Kind
    public let socketPath: String
    let memory: GuestMemory
    let call: EventFD
    let kicks: [EventFD]
    weak var transport: VirtioMMIOTransport?

    struct Active {
        var features: UInt64
        var queues: [VirtioQueueConfig]
    }
    struct State {
        var frontend: VhostUserFrontend?
        var backendFeatures: UInt64 = 0
        var protocolFeatures = VhostUserProtocolFeatures()
        var config: [UInt8] = []
        var active: Active?
        var disconnectedWhileActive = false
        /// The inflight region the backend made (GET_INFLIGHT_FD), kept
        /// across backend restarts and handed to each new backend, until
        /// the guest resets the device.
        var inflight: (shape: VhostUserInflight, fd: OwnedDescriptor)?
        /// Its rings were stopped by ``quiesce()`` and nothing is in flight;
        /// a backend that reconnects meanwhile (a disk switched to a new
        /// image) is set up only when ``resume`` starts them again.
        var quiesced = false
    }
    private let state = Mutex(State())
    /// Offered to the driver: fixed at the first connection (the guest may
    /// already have negotiated against them).
    public let deviceFeatures: UInt64
    public let queueCount: Int
    public let maxQueueSize: UInt16 = 256
    public var deviceID: UInt32 { kind.deviceID }
    public var alwaysPendingInterrupts: UInt32 { VirtioInterrupt.usedBuffer }

    /// Transport features apus-hv can pass through: VERSION_1, EVENT_IDX,
    /// INDIRECT_DESC, and the device-type bits 0-23.
    static let passthroughFeatures: UInt64 = (1 << 32) | (1 << 29) | (1 << 28) | 0x00FF_FFFF
    static let wantedProtocol: VhostUserProtocolFeatures = [.replyAck, .config, .multiQueue, .inflightSharedMemory]
    /// Config space sizes read from the backend (none for virtio-fs, whose
    /// configuration apus-hv writes itself).
    static func configSize(_ kind: Kind) -> Int {
        switch kind {
        case .block: return VirtioBlock.configSize
        case .network: return VirtioNet.configSize
        case .filesystem: return 0
        }
    }

    /// Connects to the backend (retrying for `timeoutSeconds`) and learns its features.
    public init(kind: Kind, socketPath: String, memory: GuestMemory, call: EventFD, kicksFor count: (Int) throws -> [EventFD],
                timeoutSeconds: Double = 5) throws {
        self.kind = kind
        self.socketPath = socketPath
        self.memory = memory
        self.call = call
        let frontend = try Self.connectWithRetry(socketPath, timeoutSeconds: timeoutSeconds)
        let handshake = try Self.handshake(frontend, kind: kind)
        var queues = 1
        if case .network = kind { queues = 2 }
        if case .filesystem = kind { queues = VirtioFs.firstRequestQueue + 1 } // high priority, one request queue
        if case .block = kind, handshake.protocolFeatures.contains(.multiQueue) {
            queues = max(1, min(Int(try frontend.getQueueNum()), 16))
        }
        queueCount = queues
        var features = handshake.features & Self.passthroughFeatures
        if case .block = kind, queues == 1 { features &= ~VirtioBlock.featureMultiQueue }
        if case .network(let mac) = kind, mac != nil { features |= VirtioNet.featureMAC } // apus-hv provides the MAC
        deviceFeatures = features
        kicks = try count(queues)
        state.withLock { s in
            s.frontend = frontend
            s.backendFeatures = handshake.features
            s.protocolFeatures = handshake.protocolFeatures
            s.config = handshake.config
        }
    }

    struct Handshake {
        var features: UInt64
        var protocolFeatures: VhostUserProtocolFeatures
        var config: [UInt8]
    }

    static func connectWithRetry(_ path: String, timeoutSeconds: Double) throws -> VhostUserFrontend {
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeoutSeconds * 1e9)
        while true {
            do {
                return try VhostUserFrontend(path: path)
            } catch {
                if Clock.monotonicNanoseconds() >= deadline {
                    throw MachineError.system("cannot connect to vhost-user backend at \(path): \(error)")
                }
                Clock.sleep(nanoseconds: 50_000_000)
            }
        }
    }

    static func handshake(_ f: VhostUserFrontend, kind: Kind) throws -> Handshake {
        try f.setOwner()
        let features = try f.getFeatures()
        var protocolFeatures = VhostUserProtocolFeatures()
        if features & vhostUserProtocolFeaturesBit != 0 {
            protocolFeatures = try f.getProtocolFeatures().intersection(wantedProtocol)
            try f.setProtocolFeatures(protocolFeatures)
        }
        var config: [UInt8] = []
        if protocolFeatures.contains(.config), configSize(kind) > 0 {
            config = try f.getConfig(offset: 0, size: configSize(kind))
        }
        return Handshake(features: features, protocolFeatures: protocolFeatures, config: config)
    }

    public func configBytes() -> [UInt8] {
        if case .filesystem(let tag) = kind {
            // tag[36], NUL-padded; le32 num_request_queues.
            var c = Array(tag.utf8.prefix(VirtioFs.tagLength))
            c += [UInt8](repeating: 0, count: VirtioFs.tagLength - c.count)
            let requestQueues = UInt32(queueCount - VirtioFs.firstRequestQueue)
            for i in 0..<4 { c.append(UInt8(truncatingIfNeeded: requestQueues >> (8 * UInt32(i)))) }
            return c
        }
        var c = state.withLock { $0.config }
        if case .network(let mac?) = kind {
            if c.count < 8 { c += [UInt8](repeating: 0, count: 8 - c.count) }
            for i in 0..<6 { c[i] = mac[i] }
            c[6] = 1; c[7] = 0 // status: link up
        }
        return c
    }

    /// Reads the device's configuration from the backend again (a disk that
    /// was resized reports its new capacity).
    func refreshConfig() throws {
        try state.withLock { s in
            guard let frontend = s.frontend else { throw MachineError.system("the backend is not connected") }
            guard s.protocolFeatures.contains(.config) else { throw MachineError.system("the backend does not share its configuration") }
            s.config = try frontend.getConfig(offset: 0, size: Self.configSize(kind))
        }
    }

    /// Whether the backend is connected now.
    var isConnected: Bool { state.withLock { $0.frontend != nil } }

    /// The socket the main loop watches for the backend going away.
    var connectionFD: FileDescriptor? { state.withLock { $0.frontend?.connection.socket.fd } }

    // MARK: VirtioDeviceModel

    public func activate(features: UInt64, queues: [VirtioQueueConfig]) -> Bool {
        start(features: features, queues: queues, bases: nil)
    }

    public func resume(features: UInt64, queues: [VirtioQueueConfig], bases: [UInt16]) -> Bool {
        start(features: features, queues: queues, bases: bases)
    }

    /// Stops each started ring with GET_VRING_BASE, which a backend answers
    /// only once every request it took from the ring is complete (a disk's
    /// written through to its image). The device stays active: ``resume``
    /// starts the rings again.
    public func quiesce() throws -> [UInt16] {
        try state.withLock { s in
            guard let active = s.active else { return [] }
            guard let frontend = s.frontend else {
                throw MachineError.system("\(kind.name) backend \(socketPath) is not connected: its requests in flight cannot be completed")
            }
            var bases: [UInt16] = []
            for (i, q) in active.queues.enumerated() {
                bases.append(q.ready ? try frontend.getVringBase(UInt32(i)) : 0)
            }
            s.quiesced = true
            return bases
        }
    }

    private func start(features: UInt64, queues: [VirtioQueueConfig], bases: [UInt16]?) -> Bool {
        state.withLock { s in
            s.quiesced = false
            guard let frontend = s.frontend else {
                s.active = Active(features: features, queues: queues)
                s.disconnectedWhileActive = true
                return false
            }
            do {
                try setUp(frontend, s: &s, features: features, queues: queues, bases: bases)
                s.active = Active(features: features, queues: queues)
                return true
            } catch {
                Log.warning("\(kind.name) \(socketPath): cannot start the device: \(error)")
                return false
            }
        }
    }

    public func reset() {
        state.withLock { s in
            if let active = s.active, let frontend = s.frontend {
                for (i, q) in active.queues.enumerated() where q.ready {
                    _ = try? frontend.getVringBase(UInt32(i))
                }
            }
            s.active = nil
            s.quiesced = false
            s.disconnectedWhileActive = false
            // A reset device starts with nothing in flight: a fresh region next time.
            s.inflight = nil
        }
    }

    /// Sends features, the memory table and every ready queue to the backend.
    private func setUp(_ f: VhostUserFrontend, s: inout State, features: UInt64, queues: [VirtioQueueConfig], bases: [UInt16]?) throws {
        var acked = features & s.backendFeatures
        if s.backendFeatures & vhostUserProtocolFeaturesBit != 0 { acked |= vhostUserProtocolFeaturesBit }
        try f.setFeatures(acked)
        // Inflight tracking: the region comes before the memory table and
        // rings (a restarted backend reads it when each ring starts).
        if s.protocolFeatures.contains(.inflightSharedMemory) {
            if s.inflight == nil {
                let (shape, fd) = try f.getInflightFD(queueCount: UInt16(queueCount), queueSize: maxQueueSize)
                s.inflight = (shape, OwnedDescriptor(fd))
            }
            if let inflight = s.inflight { try f.setInflightFD(inflight.shape, inflight.fd.fd) }
        }
        var regions: [(VhostUserMemoryRegion, FileDescriptor)] = []
        for r in memory.regions {
            guard let fd = r.backing?.fd else { throw MachineError.system("guest memory is not shareable") }
            regions.append((VhostUserMemoryRegion(guestPhysicalAddress: r.start.raw, size: r.size,
                                                  userspaceAddress: r.hostAddress, mmapOffset: 0), fd))
        }
        try f.setMemTable(regions)
        for (i, q) in queues.enumerated() where q.ready {
            let index = UInt32(i)
            guard let desc = hostAddress(q.descriptorTable, UInt64(q.size) * 16),
                  let avail = hostAddress(q.availRing, 6 + 2 * UInt64(q.size)),
                  let used = hostAddress(q.usedRing, 6 + 8 * UInt64(q.size)) else {
                throw MachineError.system("queue \(i) rings are outside guest RAM")
            }
            try f.setVringNum(index, q.size)
            try f.setVringAddr(VringAddress(index: index, descriptor: desc, used: used, avail: avail))
            try f.setVringBase(index, bases?[i] ?? 0)
            try f.setVringCall(index, call.fd)
            try f.setVringKick(index, kicks[i].fd)
            if acked & vhostUserProtocolFeaturesBit != 0 { try f.setVringEnable(index, true) }
        }
    }

    /// Host virtual address of a checked guest range (what vhost-user's
    /// SET_VRING_ADDR expects).
    private func hostAddress(_ gpa: UInt64, _ length: UInt64) -> UInt64? {
        guard let region = memory.region(containing: GuestAddress(gpa), length: length) else { return nil }
        return region.hostAddress + (gpa - region.start.raw)
    }

    // MARK: backend restarts (main-loop thread)

    /// The backend's socket closed: the device needs a reset until it is back.
    /// With inflight tracking the guest is not told: its requests wait
    /// for the restarted backend, which resubmits the ones it lost.
    func backendDisconnected() {
        let (wasActive, tracked) = state.withLock { s -> (Bool, Bool) in
            s.frontend?.close()
            s.frontend = nil
            s.disconnectedWhileActive = s.active != nil
            // Quiesced rings have nothing in flight: nothing to lose.
            return (s.active != nil, s.inflight != nil || s.quiesced)
        }
        Log.warning("\(kind.name) backend \(socketPath) went away; reconnecting\(tracked ? " (its requests in flight wait for it)" : "")")
        if wasActive && !tracked { transport?.signalNeedsReset() }
    }

    /// The backend is not coming back (apusd gave up restarting it): the
    /// device needs a reset, as the virtio spec's DEVICE_NEEDS_RESET says.
    public func backendFailed() {
        let wasActive = state.withLock { $0.active != nil }
        Log.warning("\(kind.name) backend \(socketPath) failed for good; the device needs a reset")
        if wasActive { transport?.signalNeedsReset() }
    }

    /// Tries to reconnect; returns true once connected. If the device was
    /// running and no request was in flight, it resumes transparently.
    func tryReconnect() -> Bool {
        guard let frontend = try? VhostUserFrontend(path: socketPath) else { return false }
        enum Outcome { case resumed, notResumed, held }
        let outcome = state.withLock { s -> Outcome? in
            guard let h = try? Self.handshake(frontend, kind: kind) else {
                frontend.close()
                return nil
            }
            s.frontend = frontend
            s.backendFeatures = h.features
            s.protocolFeatures = h.protocolFeatures
            if !h.config.isEmpty { s.config = h.config }
            guard let active = s.active else { return .notResumed }
            // Held rings start when the machine releases them, at their bases.
            if s.quiesced {
                s.disconnectedWhileActive = false
                return .held
            }
            // With the inflight region the new backend resubmits what the old
            // one took and never completed, and resumes the avail ring after
            // it (from used.idx on). Without it, resume only if nothing was
            // in flight: those requests cannot be replayed safely.
            let tracked = s.inflight != nil && h.protocolFeatures.contains(.inflightSharedMemory)
            if !tracked { s.inflight = nil }
            var bases: [UInt16] = []
            for q in active.queues {
                guard q.ready else { bases.append(0); continue }
                guard let avail = try? memory.read(UInt16.self, at: GuestAddress(q.availRing + 2)),
                      let used = try? memory.read(UInt16.self, at: GuestAddress(q.usedRing + 2)),
                      tracked || avail == used else { return .notResumed }
                bases.append(used)
            }
            guard h.features & active.features == active.features & s.backendFeatures else { return .notResumed }
            do {
                try setUp(frontend, s: &s, features: active.features, queues: active.queues, bases: bases)
                s.disconnectedWhileActive = false
                return .resumed
            } catch {
                return .notResumed
            }
        }
        guard let outcome else { return false }
        switch outcome {
        case .resumed:
            Log.warning("\(kind.name) backend \(socketPath) is back; device resumed")
            transport?.clearNeedsReset()
        case .held:
            Log.warning("\(kind.name) backend \(socketPath) is back; its rings start when the machine is released")
        case .notResumed:
            Log.warning("\(kind.name) backend \(socketPath) is back; the guest must reset the device")
            if state.withLock({ $0.active != nil }) { transport?.signalNeedsReset() }
        }
        return true
    }
}
