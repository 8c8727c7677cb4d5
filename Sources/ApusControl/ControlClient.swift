import ApusSys

/// Sends control calls without blocking the caller: every exchange
/// (connect, request line, reply line) runs on one I/O thread's event loop,
/// with a deadline, and many run at once. The toolstack awaits replies, so a
/// hung backend costs its own caller a timeout and nobody else anything.
public final class ControlClient: @unchecked Sendable {
    // SAFETY (Sendable): `submitted` is guarded by `lock`; `loop` and
    // `exchanges` are only touched on the client's thread.
    private let loop: EventLoop
    private let wake: EventFD
    private let lock = ConditionLock()
    private var submitted: [(EventLoop) -> Void] = []
    private var exchanges: [UInt64: Exchange] = [:]
    private var nextID: UInt64 = 1
    private var thread: OSThread?

    /// The client of this process (its thread starts on first use).
    public static let shared: ControlClient = {
        do {
            return try ControlClient()
        } catch {
            // Without an epoll and an eventfd nothing in the process can work.
            fatalError("cannot create the control client: \(error)")
        }
    }()

    /// How long a call may take unless the caller says otherwise.
    public static let defaultTimeoutMilliseconds: UInt64 = 5000

    public init() throws(SystemCallError) {
        loop = try EventLoop()
        wake = try EventFD()
        try loop.register(wake.fd) { [unowned self] _ in
            self.wake.drain()
            let work = self.lock.withLock { () -> [(EventLoop) -> Void] in
                defer { self.submitted.removeAll() }
                return self.submitted
            }
            for w in work { w(self.loop) }
        }
        let t = OSThread(name: "apus-control") { [unowned self] in try? self.loop.run() }
        try t.start()
        thread = t
    }

    // MARK: calling

    /// Sends `call` to the control socket at `path` and awaits its reply.
    public func call<Reply: ControlReply>(_ path: String, _ call: ControlCall<Reply>,
                                          timeoutMilliseconds: UInt64 = ControlClient.defaultTimeoutMilliseconds) async throws(ControlError) -> Reply {
        let result = await withCheckedContinuation { (k: CheckedContinuation<Result<Reply, ControlError>, Never>) in
            start(path, call, timeoutMilliseconds: timeoutMilliseconds) { k.resume(returning: $0) }
        }
        return try result.get()
    }

    /// The same call for code that may block its thread (command-line tools
    /// and tests; never the toolstack's executor).
    public func callBlocking<Reply: ControlReply>(_ path: String, _ call: ControlCall<Reply>,
                                                  timeoutMilliseconds: UInt64 = ControlClient.defaultTimeoutMilliseconds) throws(ControlError) -> Reply {
        let done = ConditionLock()
        nonisolated(unsafe) var result: Result<Reply, ControlError>?
        start(path, call, timeoutMilliseconds: timeoutMilliseconds) { r in
            done.withLock {
                result = r
                done.broadcast()
            }
        }
        let r = done.withLock { () -> Result<Reply, ControlError> in
            while result == nil { done.wait() }
            return result ?? .failure(.timedOut("\(path): no reply"))
        }
        return try r.get()
    }

    /// Starts an exchange; `completion` runs on the client's thread.
    public func start<Reply: ControlReply>(_ path: String, _ call: ControlCall<Reply>, timeoutMilliseconds: UInt64,
                                           completion: @escaping @Sendable (Result<Reply, ControlError>) -> Void) {
        let request = Array((ControlLine.request(call.words) + "\n").utf8)
        let command = call.words.first ?? ""
        let finish: @Sendable (Result<String, ControlError>) -> Void = { line in
            completion(line.flatMap { (l: String) -> Result<Reply, ControlError> in
                do throws(ControlError) {
                    return .success(try ControlLine.reply(l, as: Reply.self))
                } catch {
                    if case .refused = error { return .failure(error) }
                    return .failure(.malformedReply("\(path) '\(command)': \(error.description)"))
                }
            })
        }
        submit { [unowned self] loop in
            let id = self.nextID
            self.nextID += 1
            let e = Exchange(path: path, request: request, command: command, finish: finish)
            self.exchanges[id] = e
            e.deadline = loop.after(milliseconds: timeoutMilliseconds) { [unowned self] in
                self.complete(id, .failure(.timedOut("\(path): no reply to '\(command)' within \(timeoutMilliseconds) ms")))
            }
            self.connect(id)
        }
    }

    private func submit(_ body: @escaping (EventLoop) -> Void) {
        lock.withLock { submitted.append(body) }
        wake.signal()
    }

    // MARK: one exchange (client thread)

    private final class Exchange {
        let path: String
        let request: [UInt8]
        let command: String
        let finish: @Sendable (Result<String, ControlError>) -> Void
        var socket: UnixSocket?
        var sent = 0
        var reply: [UInt8] = []
        var deadline: UInt64 = 0

        init(path: String, request: [UInt8], command: String, finish: @escaping @Sendable (Result<String, ControlError>) -> Void) {
            self.path = path; self.request = request; self.command = command; self.finish = finish
        }
    }

    private func connect(_ id: UInt64) {
        guard let e = exchanges[id] else { return }
        let s: UnixSocket
        do {
            s = try UnixSocket.connect(path: e.path, nonBlocking: true)
        } catch where error == .wouldBlock {
            // The listener's backlog is full: its owner is busy; try again shortly.
            loop.after(milliseconds: 5) { [unowned self] in self.connect(id) }
            return
        } catch {
            complete(id, .failure(.unreachable("cannot reach \(e.path): \(error)")))
            return
        }
        e.socket = s
        do {
            _ = try loop.register(s.fd, events: [.readable, .writable]) { [unowned self] events in self.ready(id, events) }
        } catch {
            complete(id, .failure(.unreachable("\(e.path): \(error)")))
        }
    }

    private func ready(_ id: UInt64, _ events: Epoll.Events) {
        guard let e = exchanges[id], let s = e.socket else { return }
        if e.sent < e.request.count {
            do {
                e.sent += try s.send(Array(e.request[e.sent...]))
            } catch where error == .wouldBlock {
                return
            } catch {
                complete(id, .failure(.unreachable("\(e.path): \(error) sending '\(e.command)'")))
                return
            }
            if e.sent == e.request.count { loop.modify(s.fd, events: .readable) }
        }
        while true {
            let r: UnixSocket.Received
            do {
                r = try s.receive(maxBytes: 65536, maxFDs: 0)
            } catch where error == .wouldBlock {
                return
            } catch {
                complete(id, .failure(.unreachable("\(e.path): \(error) waiting for the reply to '\(e.command)'")))
                return
            }
            if r.bytes.isEmpty {
                complete(id, .failure(.unreachable("\(e.path): closed without replying to '\(e.command)'")))
                return
            }
            e.reply += r.bytes
            if let nl = e.reply.firstIndex(of: UInt8(ascii: "\n")) {
                complete(id, .success(String(decoding: e.reply[..<nl], as: UTF8.self)))
                return
            }
            if e.reply.count > ControlLine.maxReply {
                complete(id, .failure(.malformedReply("\(e.path): reply to '\(e.command)' longer than \(ControlLine.maxReply) bytes")))
                return
            }
        }
    }

    private func complete(_ id: UInt64, _ result: Result<String, ControlError>) {
        guard let e = exchanges.removeValue(forKey: id) else { return }
        loop.cancel(e.deadline)
        if let s = e.socket { loop.unregister(s.fd) }
        e.socket = nil
        e.finish(result)
    }
}
