import ApusSys
import GuestMemory
import Virtqueue
import VirtioDriver
import VhostUser

/// A vhost-user frontend that plays the guest: real memfd memory shared with
/// the backend, driver-side virtqueues, kick and call eventfds. Drives any
/// vhost-user backend (apus-blkback, qemu-storage-daemon, ...).
public final class VhostHarness: @unchecked Sendable {
    // SAFETY (Sendable): driven by one thread.
    public let socketPath: String
    public let memory: GuestMemory
    public private(set) var frontend: VhostUserFrontend
    public private(set) var backendFeatures: UInt64 = 0
    public private(set) var ackedFeatures: UInt64 = 0
    public private(set) var protocolFeatures = VhostUserProtocolFeatures()
    public private(set) var queues: [HarnessQueue] = []
    public let queueSize: UInt16

    /// Guest-physical layout: rings in the first MiB, buffers after it.
    public static let memorySize: UInt64 = 64 << 20
    public static let ringArea: UInt64 = 0x10000
    public static let bufferStart: UInt64 = 1 << 20

    /// Features the harness can drive.
    public static let driverFeatures: UInt64 = Virtq.featureVersion1 | Virtq.featureEventIndex | Virtq.featureIndirectDescriptors
    public static let wantedProtocol: VhostUserProtocolFeatures = [.multiQueue, .replyAck, .config]
    /// The protocol features this harness asks for (restart mode adds INFLIGHT_SHMFD).
    public var wanted = VhostHarness.wantedProtocol
    /// The inflight region the backend made (GET_INFLIGHT_FD), kept across
    /// backend restarts as a frontend keeps it, and mapped here to count what
    /// a killed backend left in flight.
    public private(set) var inflight: (shape: VhostUserInflight, memory: GuestMemory)?

    public init(socketPath: String, queueSize: UInt16 = 256, connectTimeoutSeconds: Double = 10) throws {
        self.socketPath = socketPath
        self.queueSize = queueSize
        memory = try GuestMemory(ranges: [(GuestAddress(0), Self.memorySize)], backing: .sharedMemfd)
        frontend = try Self.connect(socketPath, timeout: connectTimeoutSeconds)
    }

    static func connect(_ path: String, timeout: Double) throws -> VhostUserFrontend {
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeout * 1e9)
        while true {
            do {
                return try VhostUserFrontend(path: path)
            } catch {
                if Clock.monotonicNanoseconds() > deadline { throw error }
                Clock.sleep(nanoseconds: 20_000_000)
            }
        }
    }

    /// Negotiates features: the backend's offer intersected with `wanted`
    /// (plus device features in `deviceFeatures`), then protocol features.
    public func negotiate(deviceFeatures: UInt64) throws {
        try frontend.setOwner()
        backendFeatures = try frontend.getFeatures()
        var acked = backendFeatures & (Self.driverFeatures | deviceFeatures | vhostUserProtocolFeaturesBit)
        if backendFeatures & vhostUserProtocolFeaturesBit != 0 {
            let offered = try frontend.getProtocolFeatures()
            protocolFeatures = offered.intersection(wanted)
            try frontend.setProtocolFeatures(protocolFeatures)
        } else {
            acked &= ~vhostUserProtocolFeaturesBit
        }
        try frontend.setFeatures(acked)
        ackedFeatures = acked
    }

    /// The number of queues the backend supports (1 without MQ).
    public func maxQueues() throws -> Int {
        protocolFeatures.contains(.multiQueue) ? Int(try frontend.getQueueNum()) : 1
    }

    /// With INFLIGHT_SHMFD negotiated: gets the region once (GET_INFLIGHT_FD)
    /// and hands it to the backend (SET_INFLIGHT_FD), before the memory table
    /// and rings, as QEMU does at each start. False when not negotiated.
    @discardableResult
    public func shareInflight(queues: Int) throws -> Bool {
        guard protocolFeatures.contains(.inflightSharedMemory) else {
            inflight = nil
            return false
        }
        if inflight == nil {
            let (shape, fd) = try frontend.getInflightFD(queueCount: UInt16(queues), queueSize: queueSize)
            let region = try GuestRegion(start: GuestAddress(0), size: shape.mmapSize, fd: fd, fileOffset: 0, mmapOffset: shape.mmapOffset)
            inflight = (shape, try GuestMemory(regions: [region]))
        }
        guard let inflight, let fd = inflight.memory.regions.first?.backing?.fd else { return false }
        try frontend.setInflightFD(inflight.shape, fd)
        return true
    }

    /// Heads queue `index`'s inflight record says are in flight (nil without a region).
    public func inflightHeads(queue index: Int) -> [UInt16]? {
        guard let inflight, let q = InflightQueue(region: inflight.memory, index: index, queueSize: inflight.shape.queueSize) else { return nil }
        return q.inflightHeads()
    }

    /// After the backend was restarted: a new connection and session for the
    /// same queues, which resume where the guest's used ring is (QEMU's
    /// SET_VRING_BASE after a crash); the kept inflight region goes first.
    public func resumeAfterRestart(deviceFeatures: UInt64, timeoutSeconds: Double = 10) throws {
        frontend.close()
        frontend = try Self.connect(socketPath, timeout: timeoutSeconds)
        let kept = queues
        try negotiate(deviceFeatures: deviceFeatures)
        try shareInflight(queues: kept.count)
        try shareMemory()
        for q in kept { try startQueue(q, base: try q.driver.usedIndex()) }
        queues = kept
    }

    /// Shares the harness memory with the backend.
    public func shareMemory() throws {
        let region = memory.regions[0]
        guard let fd = region.backing?.fd else { throw VhostUserError.protocolViolation("harness memory is not shareable") }
        try frontend.setMemTable([(VhostUserMemoryRegion(guestPhysicalAddress: region.start.raw, size: region.size,
                                                         userspaceAddress: region.hostAddress, mmapOffset: 0), fd)])
    }

    /// Sets up `count` queues and starts them (kick, call, enable).
    public func startQueues(_ count: Int, base: UInt16 = 0) throws {
        queues = []
        for i in 0..<count {
            let ringBase = GuestAddress(Self.ringArea * UInt64(i + 1))
            let q = try HarnessQueue(index: i, memory: memory, size: queueSize, base: ringBase)
            queues.append(q)
            try startQueue(q, base: base)
        }
    }

    /// Sends the ring setup for one queue (SET_VRING_NUM/ADDR/BASE/CALL/KICK/ENABLE).
    public func startQueue(_ q: HarnessQueue, base: UInt16) throws {
        let i = UInt32(q.index)
        let hostBase = memory.regions[0].hostAddress
        try frontend.setVringNum(i, q.driver.size)
        try frontend.setVringAddr(VringAddress(index: i, descriptor: hostBase + q.driver.descriptorTable.raw,
                                               used: hostBase + q.driver.usedRing.raw, avail: hostBase + q.driver.availRing.raw))
        try frontend.setVringBase(i, base)
        try frontend.setVringCall(i, q.call.fd)
        try frontend.setVringKick(i, q.kick.fd)
        if ackedFeatures & vhostUserProtocolFeaturesBit != 0 { try frontend.setVringEnable(i, true) }
    }

    /// Stops a queue (GET_VRING_BASE) and returns where it stopped.
    public func stopQueue(_ index: Int) throws -> UInt16 {
        try frontend.getVringBase(UInt32(index))
    }

    /// Reads `size` bytes of config space (needs the CONFIG protocol feature).
    public func config(size: Int) throws -> [UInt8]? {
        guard protocolFeatures.contains(.config) else { return nil }
        return try frontend.getConfig(offset: 0, size: size)
    }

    /// Drops the connection and opens a new one (a new session).
    public func reconnect() throws {
        frontend.close()
        frontend = try Self.connect(socketPath, timeout: 10)
        queues = []
        inflight = nil
    }

    public func close() { frontend.close() }
}

/// One driver-side queue with its kick and call eventfds.
public final class HarnessQueue: @unchecked Sendable {
    // SAFETY (Sendable): driven by one thread.
    public let index: Int
    public let driver: DriverQueue
    public let kick: EventFD
    /// Blocking: waiting for an interrupt blocks on it.
    public let call: EventFD
    public let epoll: Epoll

    init(index: Int, memory: GuestMemory, size: UInt16, base: GuestAddress) throws {
        self.index = index
        driver = try DriverQueue(memory: memory, size: size, base: base)
        kick = try EventFD()
        call = try EventFD()
        epoll = try Epoll()
        try epoll.add(call.fd, events: .readable, token: 1)
    }

    /// Publishes added chains and kicks the backend (honouring its avail_event).
    public func notify(eventIndex: Bool, previousAvail: UInt16) throws {
        try driver.publish()
        if eventIndex {
            let event = try driver.availEvent()
            if Virtq.needsEvent(eventIndex: event, new: driver.availIndex, old: previousAvail) { kick.signal() }
        } else if try driver.usedFlags() & Virtq.usedNoNotify == 0 {
            kick.signal()
        }
    }

    /// Waits for the backend's interrupt alone (as a guest sleeping on it
    /// does); true if it came within `timeoutMilliseconds`.
    public func waitInterrupt(timeoutMilliseconds: Int32) throws -> Bool {
        try driver.setUsedEvent(driver.lastUsedIndex)
        let ready = try epoll.wait(maxEvents: 1, timeoutMilliseconds: timeoutMilliseconds)
        guard !ready.isEmpty else { return false }
        call.drain()
        return true
    }

    /// Waits for used entries (interrupt or polling), up to `timeoutMilliseconds`.
    public func waitUsed(timeoutMilliseconds: Int32) throws -> [(head: UInt16, length: UInt32)] {
        var out: [(head: UInt16, length: UInt32)] = []
        let deadline = Clock.monotonicNanoseconds() + UInt64(max(0, timeoutMilliseconds)) * 1_000_000
        while true {
            // Ask for an interrupt at the next completion, then check.
            try driver.setUsedEvent(driver.lastUsedIndex)
            while let u = try driver.popUsed() { out.append(u) }
            if !out.isEmpty { return out }
            let now = Clock.monotonicNanoseconds()
            if now >= deadline { return out }
            _ = try epoll.wait(maxEvents: 1, timeoutMilliseconds: Int32((deadline - now) / 1_000_000) + 1)
            call.drain()
        }
    }
}
