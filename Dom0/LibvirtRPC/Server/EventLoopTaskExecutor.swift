import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Runs the tasks of a connection's calls on its event loop's thread: a
/// call is read, dispatched (the domain manager included, which runs on
/// its callers' executor) and answered without one thread handing work to
/// another. Calls never block the thread: what they wait for (apus-hv and
/// the backends, child processes) they await.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // SAFETY (Sendable): the event loop is thread-safe; nothing else is held.
    let loop: any EventLoop
    let spinner: EventLoopSpinner

    init(_ loop: any EventLoop) {
        self.loop = loop
        spinner = EventLoopSpinner(loop, windowNanoseconds: 50_000)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { [self] in job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}

/// Keeps an event loop polling (instead of sleeping in epoll_wait) for a
/// short window after it answered a call: clients send their next call
/// within microseconds (virsh list asks for each domain's state in turn),
/// and on a virtual machine waking an idle CPU costs more than the call.
/// The same trade apus-blkback makes for its queues.
final class EventLoopSpinner: @unchecked Sendable {
    // SAFETY (Sendable): `deadline` and `spinning` are only touched on the loop's thread.
    let loop: any EventLoop
    let window: UInt64
    private var deadline: UInt64 = 0
    private var spinning = false

    init(_ loop: any EventLoop, windowNanoseconds: UInt64) {
        self.loop = loop
        window = windowNanoseconds
    }

    /// Called on the loop's thread after a reply: poll for another window.
    func extend() {
        deadline = DispatchTimeNow.nanoseconds() + window
        guard !spinning, window > 0 else { return }
        spinning = true
        loop.execute { [self] in spin() }
    }

    private func spin() {
        // Each pass through the loop polls its descriptors without blocking
        // while a task is queued.
        guard DispatchTimeNow.nanoseconds() < deadline else { spinning = false; return }
        loop.execute { [self] in spin() }
    }
}

enum DispatchTimeNow {
    static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
