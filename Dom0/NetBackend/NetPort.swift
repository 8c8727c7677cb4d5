import VirtioSpec
import ApusSys
import Virtqueue
import VhostUser

/// One switch port as a vhost-user-net device: the frontend (apus-hv,
/// QEMU's vhost-user-net-pci, apus-vhost-test) negotiates here and its
/// queues are handed to the switch engine.
public final class NetPort: VhostUserDeviceBackend, @unchecked Sendable {
    // SAFETY (Sendable): immutable after init; queue state lives in the engine.
    public let name: String
    public let id: Int
    let engine: SwitchEngine
    /// Reported in config space when set (the frontend usually provides its own).
    let mac: [UInt8]?

    public init(name: String, id: Int, engine: SwitchEngine, mac: [UInt8]? = nil) {
        self.name = name
        self.id = id
        self.engine = engine
        self.mac = mac
    }

    public var features: UInt64 {
        var f = Virtq.featureVersion1 | Virtq.featureEventIndex | Virtq.featureIndirectDescriptors
            | VirtioNet.featureMergeableRxBuffers | VirtioNet.featureStatus
        if mac != nil { f |= VirtioNet.featureMAC }
        return f
    }

    /// INFLIGHT_SHMFD for the transmit queue: a frame taken and not
    /// completed when apus-netback died is sent by the one started next.
    /// (The receive queue gives buffers back when a frame does not fit, so
    /// it resumes at the used index instead, where nothing is lost.)
    public var protocolFeatures: VhostUserProtocolFeatures { [.replyAck, .config, .inflightSharedMemory] }

    public func tracksInflight(_ index: Int) -> Bool { index == VirtioNet.transmitQueue }
    public var queueCount: Int { 2 }
    public var maxQueueSize: UInt16 { 1024 }

    /// virtio-net config space: mac[6], status, max_virtqueue_pairs.
    public func readConfig(offset: Int, size: Int) -> [UInt8] {
        var c = [UInt8](repeating: 0, count: 10)
        if let mac { for i in 0..<6 { c[i] = mac[i] } }
        c[6] = UInt8(VirtioNet.statusLinkUp)
        c[8] = 1
        guard offset >= 0, size >= 0, size <= 4096 else { return [] }
        var out = [UInt8](repeating: 0, count: size)
        for i in 0..<size where offset + i < c.count { out[i] = c[offset + i] }
        return out
    }

    public func writeConfig(offset: Int, bytes: [UInt8]) -> Bool { false }

    public func featuresAcknowledged(_ features: UInt64) {
        engine.setMergeable(port: id, features & VirtioNet.featureMergeableRxBuffers != 0)
    }

    public func startQueue(_ index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall) {
        engine.startQueue(port: id, index: index, queue: queue, kick: kick, call: call)
    }

    public func stopQueue(_ index: Int) -> UInt16 { engine.stopQueue(port: id, index: index) }

    public func sessionEnded() {
        for i in 0..<2 { _ = engine.stopQueue(port: id, index: i) }
    }
}

/// The ports netback serves: each one's vhost-user server runs on its own
/// thread; adding and removing ports is safe while others carry traffic.
public final class PortSet: @unchecked Sendable {
    // SAFETY (Sendable): `servers` is guarded by `lock`.
    public let engine: SwitchEngine
    private let lock = ConditionLock()
    private var servers: [String: (server: VhostUserBackendServer, thread: OSThread)] = [:]

    public init(engine: SwitchEngine) { self.engine = engine }

    public enum AddError: Error, CustomStringConvertible {
        case port(SwitchEngine.PortError)
        case socket(String, SystemCallError)
        case thread(SystemCallError)
        public var description: String {
            switch self {
            case .port(let e): e.description
            case .socket(let path, let e): "cannot listen on \(path): \(e)"
            case .thread(let e): "cannot start the port's thread: \(e)"
            }
        }
    }

    /// Adds port `name`, listening for its frontend on `socket`.
    public func add(_ name: String, socket: String, mac: [UInt8]? = nil) throws(AddError) {
        let id: Int
        do {
            id = try engine.addPort(name)
        } catch {
            throw .port(error)
        }
        let port = NetPort(name: name, id: id, engine: engine, mac: mac)
        let server: VhostUserBackendServer
        do {
            server = try VhostUserBackendServer(path: socket, device: port)
        } catch {
            engine.removePort(name)
            throw .socket(socket, error)
        }
        server.onSessionEnd = { reason in
            if reason != .peerClosed { ErrorLog.shared.warn("port \(name): session ended: \(reason)") }
        }
        let thread = OSThread(name: "port-\(name)") { server.run() }
        do {
            try thread.start()
        } catch {
            engine.removePort(name)
            throw .thread(error)
        }
        lock.withLock { servers[name] = (server, thread) }
    }

    /// Removes port `name`: ends its session, stops listening, forgets it.
    @discardableResult
    public func remove(_ name: String) -> Bool {
        guard let s = lock.withLock({ servers.removeValue(forKey: name) }) else { return false }
        s.server.stop()
        s.thread.join()
        engine.removePort(name)
        return true
    }

    public func removeAll() {
        for name in lock.withLock({ Array(servers.keys) }) { remove(name) }
    }
}
