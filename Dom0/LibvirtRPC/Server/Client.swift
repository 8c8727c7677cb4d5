import ApusSys
import NIOCore
import Toolstack

/// One client connection: its protocol state (opened, read-only), its event
/// registrations and its console streams. NIO's handler feeds it packets;
/// procedure calls run as tasks, so a slow call never delays a keepalive
/// PONG or another call's reply.
final class Client: @unchecked Sendable {
    // SAFETY (Sendable): every mutable field is guarded by `lock`; `channel`
    // is thread-safe.
    let channel: Channel
    let dispatcher: Dispatcher
    let lock = ConditionLock()

    /// Set by CONNECT_OPEN; before it only the handshake procedures work.
    private var opened = false
    /// Connected through the -ro socket, or opened with VIR_CONNECT_RO.
    private(set) var readOnly: Bool
    private var inFlight = 0
    private var closed = false

    /// Event registrations: callbackID → (eventID, domain filter).
    private var callbacks: [Int32: (event: Int32, domain: DomainUUID?)] = [:]
    /// Legacy registrations (procs 167/168): event IDs.
    private var legacyEvents: Set<Int32> = []
    private var subscription: UInt64?

    /// Storage pool and network event registrations.
    let storageEvents = ObjectEventRegistrations<StoragePoolEvent>()
    let networkEvents = ObjectEventRegistrations<NetworkEvent>()
    /// Volume uploads and downloads by the serial of their call.
    private var transfers: [UInt32: VolumeTransfer] = [:]

    /// Console streams by the serial of their OPEN_CONSOLE call.
    private var streams: [UInt32: Stream] = [:]
    struct Stream {
        var session: ConsoleSession?
        /// The OPEN_CONSOLE reply has been queued: data may follow it.
        var replied = false
        /// Guest output that arrived before the reply.
        var buffered: [[UInt8]] = []
        /// EOF arrived before the reply.
        var endedEarly = false
    }

    /// APUS_RPC_TRACE=1: every call and how it ended, on stderr (to see what a client asks for).
    static let trace = getenvString("APUS_RPC_TRACE") == "1"

    static func log(_ number: Int32, _ api: String, _ result: Result<Dispatcher.Reply, ToolstackError>) {
        let outcome: String
        switch result {
        case .success: outcome = "ok"
        case .failure(let e): outcome = "error \(e.code.rawValue): \(e.message)"
        }
        try? FileDescriptor.standardError.writeAll("apusd: rpc \(number) \(api): \(outcome)\n")
    }

    /// Calls in progress before the connection stops reading (libvirtd's
    /// max_client_requests is 5; this is generous).
    static let maxInFlight = 32

    /// Where this connection's calls run: its event loop's thread.
    let executor: EventLoopTaskExecutor

    init(channel: Channel, dispatcher: Dispatcher, readOnly: Bool, executor: EventLoopTaskExecutor? = nil) {
        self.channel = channel
        self.executor = executor ?? EventLoopTaskExecutor(channel.eventLoop)
        self.dispatcher = dispatcher
        self.readOnly = readOnly
    }

    // MARK: inbound

    /// Called on the channel's event loop for every decoded packet.
    func received(_ packet: Packet) {
        let h = packet.header
        switch h.program {
        case PacketHeader.keepaliveProgram:
            // Answered inline, whatever calls are running.
            if h.procedure == KeepaliveProc.ping.rawValue && h.type == .message {
                send(Packet(header: PacketHeader(program: h.program, version: 1, procedure: KeepaliveProc.pong.rawValue,
                                                 type: .message, serial: 0, status: .ok)))
            }
        case PacketHeader.remoteProgram where h.version == 1:
            switch h.type {
            case .call: call(packet)
            case .stream, .streamHole: streamPacket(packet)
            default: break // clients never send replies or messages on this program
            }
        default:
            if h.type == .call {
                reply(to: h, error: ToolstackError(.rpc, "Cannot find program \(h.program) version \(h.version)", origin: .rpc))
            }
        }
    }

    /// A call: run now, or (maxInFlight calls already counting) queued in
    /// arrival order and the connection stops being read. A call counts
    /// until its reply has left apusd (reached the socket), so a client that
    /// pipelines calls and never reads holds at most maxInFlight replies
    /// here, plus the small calls of one read.
    private func call(_ packet: Packet) {
        let (start, throttle) = lock.withLock { () -> (Bool, Bool) in
            guard inFlight < Self.maxInFlight else {
                waiting.append(packet)
                return (false, false)
            }
            inFlight += 1
            return (true, inFlight == Self.maxInFlight)
        }
        if throttle { channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
        if start { run(packet) }
    }

    /// Calls read while maxInFlight were counting, in arrival order.
    private var waiting: [Packet] = []

    private func run(_ packet: Packet) {
        let h = packet.header
        let procedure: Procedure
        do {
            let (isOpen, ro) = lock.withLock { (opened, readOnly) }
            procedure = try dispatcher.admit(h.procedure, opened: isOpen, readOnly: ro)
        } catch {
            if Self.trace { Self.log(h.procedure, "?", .failure(error)) }
            finished(channel.writeAndFlush(errorReply(to: h, error)))
            return
        }
        let payload = packet.payload
        Task(executorPreference: executor) { [self] in
            let result: Result<Dispatcher.Reply, ToolstackError>
            do throws(ToolstackError) {
                result = .success(try await dispatcher.call(procedure, payload, client: self, serial: h.serial))
            } catch {
                result = .failure(error)
            }
            let written: EventLoopFuture<Void>
            switch result {
            case .success(let r):
                written = channel.writeAndFlush(Packet(header: replyHeader(h, .ok), payload: r.payload))
                r.afterReply?()
            case .failure(let e):
                written = channel.writeAndFlush(errorReply(to: h, e))
            }
            if Self.trace { Self.log(h.procedure, procedure.api, result) }
            finished(written)
        }
    }

    /// A call's reply left (or the connection failed): the next waiting
    /// call takes its place, or reading resumes.
    private func finished(_ written: EventLoopFuture<Void>) {
        written.whenComplete { [self] _ in
            let (next, resume) = lock.withLock { () -> (Packet?, Bool) in
                if closed { waiting.removeAll() }
                if !waiting.isEmpty { return (waiting.removeFirst(), false) }
                inFlight -= 1
                return (nil, inFlight == Self.maxInFlight - 1)
            }
            if let next { run(next) }
            if resume { channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
        }
    }

    /// Bytes of replies and events queued for a client that is not reading
    /// them, past which events end the connection (a subscriber that never
    /// reads cannot make apusd hold its events without bound).
    static let maxUnread = 8 << 20

    /// Whether CONNECT_OPEN succeeded (frames may be full size).
    var isOpen: Bool { lock.withLock { opened } }

    private func replyHeader(_ call: PacketHeader, _ status: PacketHeader.Status) -> PacketHeader {
        PacketHeader(program: call.program, version: call.version, procedure: call.procedure, type: .reply, serial: call.serial, status: status)
    }

    private func errorReply(to call: PacketHeader, _ error: ToolstackError) -> Packet {
        Packet(header: replyHeader(call, .error), payload: encodeError(error))
    }

    private func reply(to call: PacketHeader, error: ToolstackError) { send(errorReply(to: call, error)) }

    func send(_ packet: Packet) {
        channel.writeAndFlush(packet, promise: nil)
    }

    /// The socket closed: end console sessions and event delivery.
    func disconnected() {
        let (sessions, sub, moving) = lock.withLock { () -> ([ConsoleSession], UInt64?, [VolumeTransfer]) in
            closed = true
            defer {
                streams.removeAll(); callbacks.removeAll(); legacyEvents.removeAll(); subscription = nil
                transfers.removeAll()
            }
            return (streams.values.compactMap(\.session), subscription, Array(transfers.values))
        }
        for s in sessions { s.close() }
        for t in moving { t.disconnect() }
        if let sub { dispatcher.events.unsubscribe(sub) }
        storageEvents.close()
        networkEvents.close()
    }

    // MARK: volume transfers

    func addTransfer(_ t: VolumeTransfer) {
        let refused = lock.withLock { () -> Bool in
            guard !closed else { return true }
            transfers[t.serial] = t
            return false
        }
        if refused { t.disconnect() }
    }

    func transfer(_ serial: UInt32) -> VolumeTransfer? { lock.withLock { transfers[serial] } }

    func transferEnded(serial: UInt32) { _ = lock.withLock { transfers.removeValue(forKey: serial) } }

    /// A STREAM or STREAM_HOLE packet of an upload or download.
    private func transferPacket(_ packet: Packet, _ t: VolumeTransfer) {
        let h = packet.header
        let upload = t.procedure == 208
        switch (h.type, h.status) {
        case (.streamHole, _):
            guard upload else { return }
            guard let hole = try? StreamHole.decode(packet.payload), hole.length >= 0 else {
                t.received(.abort)
                return
            }
            t.received(.hole(UInt64(hole.length)))
        case (.stream, .continue):
            if upload && !packet.payload.isEmpty { t.received(.data(packet.payload)) }
        case (.stream, .ok):
            if upload { t.received(.finish) } else { t.closeDownload() }
        case (.stream, .error):
            if upload { t.received(.abort) } else { t.closeDownload() }
        default:
            break
        }
    }

    // MARK: object events

    /// A new callback id (unique across every kind of event).
    func newCallbackID() -> Int32 { Int32(truncatingIfNeeded: Self.nextCallback.next()) }

    /// Sends an event message (procedure `proc`) to the client.
    func sendEvent(_ proc: Int32, _ payload: [UInt8]) {
        guard channel.isWritable else {
            // maxUnread bytes wait already: the client is not reading.
            channel.close(promise: nil)
            return
        }
        send(message(proc, payload))
    }

    // MARK: connection state (used by the dispatcher)

    func open(readOnly ro: Bool) {
        lock.withLock {
            opened = true
            if ro { readOnly = true }
        }
    }

    // MARK: events

    static let nextCallback = AtomicCounter()

    /// Registers for `event` (optionally one domain); returns the callback ID.
    func registerEvent(_ event: Int32, domain: DomainUUID?) -> Int32 {
        let id = Int32(truncatingIfNeeded: Self.nextCallback.next())
        lock.withLock { callbacks[id] = (event, domain) }
        ensureSubscribed()
        return id
    }

    func deregisterEvent(callback: Int32) -> Bool {
        lock.withLock { callbacks.removeValue(forKey: callback) != nil }
    }

    func registerLegacyEvent(_ event: Int32) -> Bool {
        let added = lock.withLock { legacyEvents.insert(event).inserted }
        ensureSubscribed()
        return added
    }

    func deregisterLegacyEvent(_ event: Int32) -> Bool {
        lock.withLock { legacyEvents.remove(event) != nil }
    }

    private func ensureSubscribed() {
        let needed = lock.withLock { subscription == nil && !closed }
        guard needed else { return }
        let id = dispatcher.events.subscribe { [weak self] event in self?.deliver(event) }
        let keep = lock.withLock { () -> Bool in
            guard subscription == nil && !closed else { return false }
            subscription = id
            return true
        }
        if !keep { dispatcher.events.unsubscribe(id) }
    }

    private func deliver(_ event: DomainEvent) {
        let dom = RemoteDomain(name: event.name, uuid: event.uuid, id: event.id)
        for e in EventMessage.encodings(event.kind, dom: dom) {
            let (targets, legacy) = lock.withLock { () -> ([Int32], Bool) in
                let ids = callbacks.filter { $0.value.event == e.id && ($0.value.domain == nil || $0.value.domain == event.uuid) }
                    .map(\.key).sorted()
                return (ids, legacyEvents.contains(e.id))
            }
            // A callback message is the callback's id, then the legacy message.
            for callback in targets { sendEvent(e.callback, IntResult(callback).xdr + e.payload) }
            if legacy { sendEvent(e.legacy, e.payload) }
        }
    }

    private func message(_ proc: Int32, _ payload: [UInt8]) -> Packet {
        Packet(header: PacketHeader(program: PacketHeader.remoteProgram, version: 1, procedure: proc,
                                    type: .message, serial: 0, status: .ok), payload: payload)
    }

    // MARK: console streams

    private func streamHeader(_ serial: UInt32, _ status: PacketHeader.Status) -> PacketHeader {
        PacketHeader(program: PacketHeader.remoteProgram, version: 1, procedure: Self.consoleProcedure,
                     type: .stream, serial: serial, status: status)
    }

    /// DOMAIN_OPEN_CONSOLE: its streams carry its number and the call's serial.
    static let consoleProcedure: Int32 = 201

    /// Opens `virsh console` on the console `name`: a stream named by the
    /// call's serial, whose data follows the call's reply (``streamReplied``).
    func openConsole(name: String, force: Bool, serial: UInt32, hub: IOHub) async throws(ToolstackError) {
        beginStream(serial: serial)
        let session = await hub.openSession(
            name: name, force: force,
            output: { [weak self] bytes in self?.streamOutput(bytes, serial: serial) },
            ended: { [weak self] in self?.streamEnded(serial: serial) })
        guard let session else {
            abandonStream(serial: serial)
            throw .failed("Active console session exists for this domain")
        }
        guard attach(session, serial: serial) else {
            session.close()
            throw .failed("the client went away")
        }
    }

    /// Reserves a stream for an OPEN_CONSOLE call before the session opens,
    /// so output that arrives before the reply is kept.
    func beginStream(serial: UInt32) {
        lock.withLock { streams[serial] = Stream() }
    }

    func attach(_ session: ConsoleSession, serial: UInt32) -> Bool {
        lock.withLock {
            guard streams[serial] != nil, !closed else { return false }
            streams[serial]?.session = session
            return true
        }
    }

    func abandonStream(serial: UInt32) {
        _ = lock.withLock { streams.removeValue(forKey: serial) }
    }

    /// Guest output for the stream (from the IO hub thread).
    func streamOutput(_ bytes: [UInt8], serial: UInt32) {
        lock.withLock {
            guard streams[serial] != nil else { return }
            if streams[serial]!.replied {
                sendChunks(bytes, serial: serial)
            } else {
                streams[serial]!.buffered.append(bytes)
            }
        }
    }

    private func sendChunks(_ bytes: [UInt8], serial: UInt32) {
        // Console output a client is not reading is dropped past maxUnread
        // (as the pty drops what nobody reads), never queued without bound.
        guard channel.isWritable else { return }
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + PacketHeader.streamChunk)
            send(Packet(header: streamHeader(serial, .continue), payload: Array(bytes[offset..<end])))
            offset = end
        }
    }

    /// The console closed (domain stopped or another session took over):
    /// EOF is an empty CONTINUE; the client then finishes the stream.
    func streamEnded(serial: UInt32) {
        lock.withLock {
            guard streams[serial] != nil else { return }
            streams[serial]!.session = nil
            if streams[serial]!.replied {
                send(Packet(header: streamHeader(serial, .continue)))
            } else {
                streams[serial]!.endedEarly = true
            }
        }
    }

    /// The OPEN_CONSOLE reply was queued: release what was held back.
    func streamReplied(serial: UInt32) {
        lock.withLock {
            guard var s = streams[serial] else { return }
            s.replied = true
            for chunk in s.buffered { sendChunks(chunk, serial: serial) }
            s.buffered.removeAll()
            if s.endedEarly { send(Packet(header: streamHeader(serial, .continue))) }
            streams[serial] = s
        }
    }

    /// A STREAM packet from the client: keystrokes, finish or abort.
    private func streamPacket(_ packet: Packet) {
        let h = packet.header
        if let t = transfer(h.serial), t.procedure == h.procedure {
            transferPacket(packet, t)
            return
        }
        guard h.procedure == Self.consoleProcedure, h.type == .stream else { return }
        switch h.status {
        case .continue:
            let session = lock.withLock { streams[h.serial]?.session }
            if !packet.payload.isEmpty { session?.send(packet.payload) }
        case .ok, .error:
            // Finish or abort: confirm with an empty STREAM OK. Late packets
            // for a stream already closed are dropped, as libvirtd does.
            let (known, session) = lock.withLock { () -> (Bool, ConsoleSession?) in
                guard let s = streams.removeValue(forKey: h.serial) else { return (false, nil) }
                return (true, s.session)
            }
            guard known else { return }
            session?.close()
            send(Packet(header: streamHeader(h.serial, .ok)))
        }
    }
}

/// A process-wide counter for callback IDs (libvirtd's are global too).
final class AtomicCounter: @unchecked Sendable {
    // SAFETY (Sendable): guarded by `lock`.
    private let lock = ConditionLock()
    private var value: Int64 = 0
    func next() -> Int64 { lock.withLock { value += 1; return value } }
}
