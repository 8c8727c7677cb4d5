import NIOCore

/// Runs the tasks of a connection's calls on its event loop's thread: a
/// call is read, dispatched (the domain manager included, which runs on
/// its callers' executor) and answered without one thread handing work to
/// another. Calls never block the thread: what they wait for (apus-hv and
/// the backends, child processes) they await.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // SAFETY (Sendable): the event loop is thread-safe; nothing else is held.
    let loop: any NIOCore.EventLoop

    init(_ loop: any NIOCore.EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { [self] in job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}
