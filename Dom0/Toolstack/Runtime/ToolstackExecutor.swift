import ApusSys

/// The toolstack's own threads for its async work (protocol calls, the
/// domain manager, exit handling), instead of Swift's cooperative pool: a
/// process that hosts apusd's server next to code that blocks pool threads
/// (a test runner, an embedding tool) must not stall libvirt clients, and
/// apusd's latency does not depend on what else shares the pool.
/// Tasks started with this preference also run default-actor code here.
public final class ToolstackExecutor: TaskExecutor, @unchecked Sendable {
    // SAFETY (Sendable): `jobs` and `head` are only touched under `lock`.
    private let lock = ConditionLock()
    /// A FIFO: jobs[head...] are waiting; the consumed prefix is dropped
    /// once it is half the array, so dequeuing stays O(1) amortized.
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var threads: [OSThread] = []

    /// The executor apusd's tasks use (started on first use).
    public static let shared = ToolstackExecutor(threads: 2)

    public init(threads count: Int) {
        for i in 0..<max(1, count) {
            let t = OSThread(name: "apus-exec-\(i)") { [unowned self] in self.work() }
            threads.append(t)
            // A thread that cannot start leaves the others; with none, the
            // first enqueue still runs nothing, so fail loudly here.
            do { try t.start() } catch { fatalError("cannot start the toolstack's threads: \(error)") }
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.withLock {
            jobs.append(job)
            lock.broadcast()
        }
    }

    private func work() {
        while true {
            let job = lock.withLock { () -> UnownedJob in
                while head == jobs.count { lock.wait() }
                let job = jobs[head]
                head += 1
                if head == jobs.count {
                    jobs.removeAll(keepingCapacity: true)
                    head = 0
                } else if head >= 64 && head * 2 >= jobs.count {
                    jobs.removeFirst(head)
                    head = 0
                }
                return job
            }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
