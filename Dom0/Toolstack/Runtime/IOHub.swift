import ApusSys

/// One thread that watches everything apusd waits on outside the RPC
/// server: domain processes exiting (pidfds, which also work for processes
/// a previous apusd started) and domain consoles (log + live sessions).
public final class IOHub: @unchecked Sendable {
    // SAFETY (Sendable): `pending` is guarded by `lock`; the loop and the
    // console table are only touched on the hub thread.
    private let loop: EventLoop
    private let wake: EventFD
    private let lock = ConditionLock()
    private var pending: [(EventLoop) -> Void] = []
    private var thread: OSThread?
    private var consoles: [String: ConsolePump] = [:]

    public init() throws {
        loop = try EventLoop()
        wake = try EventFD()
        try loop.register(wake.fd) { [unowned self] _ in
            self.wake.drain()
            let work = self.lock.withLock { () -> [(EventLoop) -> Void] in
                defer { self.pending.removeAll() }
                return self.pending
            }
            for w in work { w(self.loop) }
        }
        // Zombies of processes this apusd spawned are reaped regularly too.
        scheduleReap()
    }

    private func scheduleReap() {
        loop.after(milliseconds: 1000) { [weak self] in
            _ = ProcessControl.reapChildren()
            self?.scheduleReap()
        }
    }

    public func start() throws {
        let t = OSThread(name: "apusd-io") { [unowned self] in try? self.loop.run() }
        try t.start()
        thread = t
    }

    /// Runs `body` on the hub thread.
    public func perform(_ body: @escaping @Sendable (EventLoop) -> Void) {
        lock.withLock { pending.append(body) }
        wake.signal()
    }

    /// Calls `onExit` (on the hub thread) when process `pid` exits. False if
    /// it cannot be watched (already gone).
    public func watchExit(_ pid: Int32, _ onExit: @escaping @Sendable () -> Void) -> Bool {
        guard let pidfd = try? ProcessControl.pidFD(pid) else { return false }
        perform { loop in
            let fd = pidfd.fd
            _ = try? loop.register(fd) { _ in
                loop.unregister(fd)
                _ = ProcessControl.reapChildren()
                withExtendedLifetime(pidfd) {}
                onExit()
            }
        }
        return true
    }

    // MARK: consoles

    /// Starts logging and relaying the console of domain `name` from the
    /// apus-hv console socket at `socket`, and gives it a pty (users attach
    /// with `screen PTY`; `virsh ttyconsole` prints it). Returns the pty's
    /// path, or nil if none could be made (the console still works).
    @discardableResult
    public func attachConsole(name: String, socket: String, log: String) -> String? {
        let pty = try? PseudoTerminal.open()
        let keeper = pty.flatMap { try? FileDescriptor.open($0.path, [.readWrite, .noControllingTerminal, .closeOnExec]) }
        let box = ConsolePTY(pty: pty, keeper: keeper)
        perform { [unowned self] loop in
            self.consoles[name]?.close()
            let pump = ConsolePump(name: name, socketPath: socket, logPath: log, loop: loop, pty: box)
            self.consoles[name] = pump
            pump.connect()
        }
        return pty?.path
    }

    /// Connects the console of `name` to its apus-hv again (a new apus-hv
    /// after a reboot); its log, session and pty carry on.
    public func reconnectConsole(name: String) {
        perform { [unowned self] _ in self.consoles[name]?.reconnect() }
    }

    /// Stops relaying a console (the domain stopped); any session gets EOF.
    public func detachConsole(name: String) {
        perform { [unowned self] _ in
            self.consoles.removeValue(forKey: name)?.close()
        }
    }

    /// Opens an interactive session. `output` receives guest output, `ended`
    /// is called when the console closes. Fails if a session exists and
    /// `force` is false.
    public func openSession(name: String, force: Bool, output: @escaping @Sendable ([UInt8]) -> Void,
                            ended: @escaping @Sendable () -> Void) async -> ConsoleSession? {
        await withCheckedContinuation { (k: CheckedContinuation<ConsoleSession?, Never>) in
            perform { [unowned self] _ in
                guard let pump = self.consoles[name] else { k.resume(returning: nil); return }
                k.resume(returning: pump.open(force: force, output: output, ended: ended, hub: self))
            }
        }
    }

    /// Whether a console session is open (for the "Active console session exists" check).
    func input(_ bytes: [UInt8], name: String, session: UInt64) {
        perform { [unowned self] _ in self.consoles[name]?.input(bytes, session: session) }
    }

    func closeSession(name: String, session: UInt64) {
        perform { [unowned self] _ in self.consoles[name]?.closeSession(session) }
    }
}

/// An open `virsh console` session.
public final class ConsoleSession: Sendable {
    let hub: IOHub
    let name: String
    let id: UInt64
    init(hub: IOHub, name: String, id: UInt64) { self.hub = hub; self.name = name; self.id = id }

    /// Keystrokes to the guest.
    public func send(_ bytes: [UInt8]) { hub.input(bytes, name: name, session: id) }
    /// Ends the session (the console keeps being logged).
    public func close() { hub.closeSession(name: name, session: id) }
}

/// A console's pty: the controller side apusd pumps, and one open device
/// side it never reads, so the controller does not report a hangup while
/// nobody is attached (output then fills the pty's buffer and is dropped).
final class ConsolePTY: @unchecked Sendable {
    // SAFETY (Sendable): handed once to the hub thread, which alone uses it.
    let pty: PseudoTerminal?
    let keeper: FileDescriptor?
    init(pty: PseudoTerminal?, keeper: FileDescriptor?) { self.pty = pty; self.keeper = keeper }
    func close() {
        pty?.controller.close()
        keeper?.close()
    }
}

/// Reads a domain's console socket, appends to its log and relays to the
/// session and the pty. Lives on the hub thread.
final class ConsolePump {
    let name: String
    let socketPath: String
    let log: FileDescriptor?
    unowned let loop: EventLoop
    var socket: UnixSocket?
    var closed = false
    struct Session {
        let id: UInt64
        let output: @Sendable ([UInt8]) -> Void
        let ended: @Sendable () -> Void
    }
    var session: Session?
    var nextSession: UInt64 = 1
    var attempts = 0

    let pty: ConsolePTY

    init(name: String, socketPath: String, logPath: String, loop: EventLoop, pty: ConsolePTY) {
        self.name = name
        self.socketPath = socketPath
        self.loop = loop
        self.pty = pty
        log = try? FileDescriptor.open(logPath, .log, mode: 0o600)
        if let controller = pty.pty?.controller {
            try? controller.setNonBlocking(true)
            _ = try? loop.register(controller) { [weak self] _ in self?.ptyReadable() }
        }
    }

    /// Keystrokes typed on the pty go to the guest.
    func ptyReadable() {
        guard let controller = pty.pty?.controller else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { b in (try? controller.read(into: b)) ?? -1 }
        guard n > 0 else {
            // The device side hung up (impossible while the keeper is open) or failed.
            if n == 0 || Errno.current != .wouldBlock { loop.unregister(controller) }
            return
        }
        queueInput(Array(buffer[0..<n]))
    }

    /// Input for the guest that apus-hv's console socket has not taken yet.
    /// It is sent without blocking (this thread watches every domain); a
    /// guest that does not read its console (paused, or just busy) makes
    /// input beyond ``maxPendingInput`` be dropped, not apusd wait or grow.
    var pendingInput: [UInt8] = []
    static let maxPendingInput = 64 << 10

    func queueInput(_ bytes: [UInt8]) {
        guard socket != nil else { return }
        pendingInput += bytes.prefix(max(0, Self.maxPendingInput - pendingInput.count))
        flushInput()
    }

    func flushInput() {
        guard let s = socket else { pendingInput = []; return }
        while !pendingInput.isEmpty {
            do {
                let n = try s.send(pendingInput)
                pendingInput.removeFirst(n)
            } catch {
                if error == .wouldBlock || error == .interrupted {
                    loop.modify(s.fd, events: [.readable, .writable])
                } else {
                    pendingInput = []
                }
                return
            }
        }
        loop.modify(s.fd, events: .readable)
    }

    func connect() {
        guard !closed else { return }
        guard let s = try? UnixSocket.connect(path: socketPath) else {
            // apus-hv may still be starting; retry for a while.
            attempts += 1
            if attempts < 100 { loop.after(milliseconds: 100) { [weak self] in self?.connect() } }
            return
        }
        try? s.fd.setNonBlocking(true)
        socket = s
        _ = try? loop.register(s.fd) { [weak self] events in
            if events.contains(.writable) { self?.flushInput() }
            if !events.isDisjoint(with: [.readable, .hangup, .error]) { self?.readable() }
        }
    }

    func readable() {
        guard let s = socket else { return }
        while true {
            let r: UnixSocket.Received
            do {
                r = try s.receive(maxBytes: 65536, maxFDs: 0)
            } catch {
                if error == .wouldBlock { return }
                disconnect()
                return
            }
            if r.bytes.isEmpty {
                disconnect()
                return
            }
            if let log { try? log.writeAll(r.bytes) }
            session?.output(r.bytes)
            // Non-blocking: output nobody reads from the pty is dropped once its buffer is full.
            if let controller = pty.pty?.controller {
                _ = r.bytes.withUnsafeBytes { b in try? controller.write(b) }
            }
        }
    }

    func disconnect() {
        if let s = socket { loop.unregister(s.fd) }
        socket = nil
        pendingInput = []
    }

    func reconnect() {
        disconnect()
        attempts = 0
        connect()
    }

    func open(force: Bool, output: @escaping @Sendable ([UInt8]) -> Void, ended: @escaping @Sendable () -> Void, hub: IOHub) -> ConsoleSession? {
        if let existing = session {
            guard force else { return nil }
            existing.ended()
        }
        let id = nextSession
        nextSession += 1
        session = Session(id: id, output: output, ended: ended)
        return ConsoleSession(hub: hub, name: name, id: id)
    }

    func input(_ bytes: [UInt8], session id: UInt64) {
        guard session?.id == id else { return }
        queueInput(bytes)
    }

    func closeSession(_ id: UInt64) {
        if session?.id == id { session = nil }
    }

    func close() {
        closed = true
        disconnect()
        session?.ended()
        session = nil
        log?.close()
        if let controller = pty.pty?.controller { loop.unregister(controller) }
        pty.close()
    }
}
