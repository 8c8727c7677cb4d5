/// A single-threaded epoll event loop with descriptor handlers and one-shot
/// timers: the control plane of apus-hv and of the Dom0 backends. Not
/// thread-safe; everything registered runs on the thread calling ``run()``.
public final class EventLoop {
    /// A registered descriptor's handler, called with its ready events.
    public typealias Handler = (Epoll.Events) -> Void

    let epoll: Epoll
    private var handlers: [UInt64: Handler] = [:]
    private var tokens: [Int32: UInt64] = [:]
    private var nextToken: UInt64 = 1
    private var timers: [(deadline: UInt64, id: UInt64, body: () -> Void)] = []
    private var stopped = false

    public init() throws(SystemCallError) {
        epoll = try Epoll()
    }

    /// Watches `fd`; replaces an earlier registration of the same descriptor.
    /// Returns the registration's token (for ``rearm(_:token:events:)``).
    @discardableResult
    public func register(_ fd: FileDescriptor, events: Epoll.Events = .readable, _ handler: @escaping Handler) throws(SystemCallError) -> UInt64 {
        if let old = tokens[fd.rawValue] {
            handlers[old] = handler
            try epoll.modify(fd, events: events, token: old)
            return old
        }
        let token = nextToken
        nextToken += 1
        try epoll.add(fd, events: events, token: token)
        tokens[fd.rawValue] = token
        handlers[token] = handler
        return token
    }

    /// The loop's epoll instance. Re-arming a one-shot registration with
    /// `poller.modify(fd, events:, token:)` is safe from any thread.
    public var poller: Epoll { epoll }

    /// Changes the events watched on a registered descriptor.
    public func modify(_ fd: FileDescriptor, events: Epoll.Events) {
        guard let token = tokens[fd.rawValue] else { return }
        try? epoll.modify(fd, events: events, token: token)
    }

    /// Stops watching `fd` (call before closing it).
    public func unregister(_ fd: FileDescriptor) {
        guard let token = tokens.removeValue(forKey: fd.rawValue) else { return }
        handlers.removeValue(forKey: token)
        epoll.remove(fd)
    }

    /// Runs `body` once after `milliseconds`; returns an id for ``cancel(_:)``.
    @discardableResult
    public func after(milliseconds: UInt64, _ body: @escaping () -> Void) -> UInt64 {
        let id = nextToken
        nextToken += 1
        timers.append((Clock.monotonicNanoseconds() + milliseconds * 1_000_000, id, body))
        return id
    }

    /// Cancels a pending timer.
    public func cancel(_ id: UInt64) { timers.removeAll { $0.id == id } }

    /// Makes ``run()`` return after the current iteration.
    public func stop() { stopped = true }

    /// Whether ``stop()`` was called.
    public var isStopped: Bool { stopped }

    /// Waits for and dispatches one batch of events and due timers.
    public func runOnce(maxWaitMilliseconds: Int32 = -1) throws(SystemCallError) {
        var timeout = maxWaitMilliseconds
        if let next = timers.map(\.deadline).min() {
            let now = Clock.monotonicNanoseconds()
            let ms = next > now ? Int32(min((next - now + 999_999) / 1_000_000, 60_000)) : 0
            timeout = timeout < 0 ? ms : min(timeout, ms)
        }
        let ready = try epoll.wait(maxEvents: 64, timeoutMilliseconds: timeout)
        for r in ready {
            // A handler may unregister others; look each one up afresh.
            handlers[r.token]?(r.events)
            if stopped { return }
        }
        let now = Clock.monotonicNanoseconds()
        let due = timers.filter { $0.deadline <= now }
        timers.removeAll { $0.deadline <= now }
        for t in due.sorted(by: { $0.deadline < $1.deadline }) { t.body() }
    }

    /// Runs until ``stop()``.
    public func run() throws(SystemCallError) {
        while !stopped { try runOnce() }
    }
}
