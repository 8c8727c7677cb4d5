#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// A dedicated OS thread (pthread), for work that must block outside Swift's
/// cooperative pool: vCPUs in KVM_RUN, backend queue workers.
public final class OSThread: @unchecked Sendable {
    // SAFETY (Sendable): `handle` is written once before `start` returns and
    // only read by join/signal afterwards.
    private var handle: pthread_t = pthread_t()
    private var started = false
    private let body: @Sendable () -> Void
    /// A name shown in /proc (15 characters at most).
    public let name: String

    private final class Box {
        let body: @Sendable () -> Void
        let name: String
        init(_ body: @escaping @Sendable () -> Void, _ name: String) { self.body = body; self.name = name }
    }

    /// Creates (does not start) a thread running `body`.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    /// Starts the thread.
    public func start() throws(SystemCallError) {
        let box = Unmanaged.passRetained(Box(body, name)).toOpaque()
        // A non-capturing closure: the context travels through `box`.
        let r = pthread_create(&handle, nil, { arg in
            guard let arg else { return nil }
            let box = Unmanaged<Box>.fromOpaque(arg).takeRetainedValue()
            _ = apus_set_thread_name(box.name)
            box.body()
            return nil
        }, box)
        guard r == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemCallError("pthread_create", Errno(rawValue: r))
        }
        started = true
    }

    /// Sends `signal` to the thread (used to kick a vCPU out of KVM_RUN).
    public func send(signal: Int32) {
        guard started else { return }
        _ = pthread_kill(handle, signal)
    }

    /// Lets the thread end on its own (no join): for short-lived workers.
    public func detach() {
        guard started else { return }
        started = false
        _ = pthread_detach(handle)
    }

    /// Waits for the thread to finish.
    public func join() {
        guard started else { return }
        started = false
        _ = pthread_join(handle, nil)
    }
}

/// Signal numbers and handlers used by apus-hv.
public enum Signals {
    /// The signal that kicks a vCPU thread out of KVM_RUN.
    public static var vcpuKick: Int32 { apus_sigrtmin() + 1 }

    /// Installs the no-op kick handler (without SA_RESTART).
    public static func installKickHandler() throws(SystemCallError) {
        guard apus_install_kick_handler(vcpuKick) == 0 else {
            throw SystemCallError("sigaction", Errno.current)
        }
    }

    /// Makes `signals` signal `event` (from whichever thread takes them)
    /// instead of their default action: a daemon's way to learn of SIGTERM
    /// when it does not own all its threads' signal masks.
    public static func notify(_ signals: [Int32], to event: EventFD) throws(SystemCallError) {
        for s in signals where apus_install_notify_handler(s, event.fd.rawValue) != 0 {
            throw SystemCallError("sigaction \(s)", Errno.current)
        }
    }

    /// The last signal ``notify(_:to:)`` delivered (0 if none yet).
    public static var lastNotified: Int32 { apus_notified_signal_number() }

    /// Ignores SIGPIPE process-wide (writes to closed sockets return EPIPE instead).
    public static func ignoreBrokenPipe() {
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks `signal` in the calling thread (so a signalfd can take it).
    public static func block(_ signal: Int32) { _ = apus_block_signal(signal, 1) }

    /// Unblocks `signal` in the calling thread.
    public static func unblock(_ signal: Int32) { _ = apus_block_signal(signal, 0) }

    /// Clears the calling thread's blocked-signal mask: a parent may have
    /// left signals blocked across exec, and a blocked kick signal would
    /// leave vCPU threads stuck in KVM_RUN.
    public static func unblockAll() { _ = apus_unblock_all_signals() }
}

/// A signalfd(2): delivers blocked signals as readable events.
public final class SignalFD: @unchecked Sendable {
    // SAFETY (Sendable): immutable descriptor.
    /// The descriptor (owned).
    public let fd: FileDescriptor

    /// Blocks `signals` in this thread (call before starting other threads so
    /// they inherit the mask) and returns a descriptor that reports them.
    public init(signals: [Int32]) throws(SystemCallError) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let raw = signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        guard raw >= 0 else { throw SystemCallError("signalfd", Errno.current) }
        fd = FileDescriptor(rawValue: raw)
    }

    /// Reads one pending signal number, if any.
    public func next() -> Int32? {
        var info = signalfd_siginfo()
        let n = withUnsafeMutableBytes(of: &info) { b in Glibc.read(fd.rawValue, b.baseAddress, b.count) }
        return n == MemoryLayout<signalfd_siginfo>.size ? Int32(info.ssi_signo) : nil
    }

    deinit { fd.close() }
}

/// A mutex with a condition variable (pthread), for threads that must sleep
/// until another thread changes shared state (paused vCPUs).
public final class ConditionLock: @unchecked Sendable {
    // SAFETY (Sendable): the pthread objects are heap-allocated once and only
    // used through pthread calls, which are thread-safe by definition.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    /// Creates an unlocked lock.
    public init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    /// Runs `body` holding the lock.
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits (lock held by the caller inside `withLock`) until signalled or
    /// `timeoutNanoseconds` passes; returns false on timeout.
    @discardableResult
    public func wait(timeoutNanoseconds: UInt64? = nil) -> Bool {
        guard let timeoutNanoseconds else {
            pthread_cond_wait(cond, mutex)
            return true
        }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let total = UInt64(now.tv_nsec) + timeoutNanoseconds
        var deadline = timespec(tv_sec: now.tv_sec + Int(total / 1_000_000_000), tv_nsec: Int(total % 1_000_000_000))
        return pthread_cond_timedwait(cond, mutex, &deadline) == 0
    }

    /// Wakes all waiters (call with the lock held or not).
    public func broadcast() { pthread_cond_broadcast(cond) }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }
}

/// A value behind a lock, shared between threads.
public final class LockedBox<T>: @unchecked Sendable {
    // SAFETY (Sendable): `value` is only touched under `lock`.
    private let lock = ConditionLock()
    private var value: T
    public init(_ v: T) { value = v }
    public func withValue<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
}
