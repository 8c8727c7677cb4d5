import ApusSys
import GuestMemory

/// A second thread for one queue's large reads from an image in memory.
///
/// A read from tmpfs is one kernel copy, and one thread copying is the
/// bound once a queue is deep: a plain pread loop moves about 60k 128 KiB
/// reads a second on this kind of host, two such loops about 100k between
/// them. So when a turn has several large reads, the queue's thread and
/// this one take them in turn, and the queue completes them all (only the
/// queue's thread touches the ring). Writes are not split: tmpfs takes the
/// inode's lock for a write, so two writers take turns and gain nothing.
///
/// Fork-join: ``run(_:)`` returns when every job of its batch is done, and
/// is only called within one turn of the queue's worker, so the guest
/// memory and descriptors a job names outlive it.
final class CopyHelper: @unchecked Sendable {
    // SAFETY (Sendable): `jobs`, `next`, `results`, `done` and `stopping`
    // are only touched under `lock`; a job's memory and descriptor are only
    // used inside ``run(_:)``, while the queue's thread waits for them.
    struct Job {
        let memory: GuestMemory
        let fd: FileDescriptor
        let offset: UInt64
        let segments: [IOSegment]
    }

    private let lock = ConditionLock()
    private var jobs: [Job] = []
    private var next = 0
    private var results: [Int32] = []
    private var done = 0
    private var stopping = false
    private var thread: OSThread?

    init(name: String) throws(SystemCallError) {
        let t = OSThread(name: name) { [self] in loop() }
        try t.start()
        thread = t
    }

    /// Copies a batch of reads, this thread and the helper taking jobs in
    /// turn until none is left; each job's bytes read, or -errno, in order.
    func run(_ batch: [Job]) -> [Int32] {
        lock.withLock {
            jobs = batch
            next = 0
            done = 0
            results = Array(repeating: 0, count: batch.count)
        }
        lock.broadcast()
        work()
        return lock.withLock {
            while done < jobs.count { lock.wait() }
            jobs = []
            return results
        }
    }

    /// Ends the thread.
    func stop() {
        lock.withLock { stopping = true }
        lock.broadcast()
        thread?.join()
        thread = nil
    }

    /// Takes jobs of the current batch until there are none.
    private func work() {
        while let (i, job) = lock.withLock({ () -> (Int, Job)? in
            guard next < jobs.count else { return nil }
            next += 1
            return (next - 1, jobs[next - 1])
        }) {
            let r = BlockQueue.transferNow(write: false, memory: job.memory, fd: job.fd, offset: job.offset, segments: job.segments)
            let finished = lock.withLock { () -> Bool in
                results[i] = r
                done += 1
                return done == jobs.count
            }
            if finished { lock.broadcast() }
        }
    }

    private func loop() {
        while true {
            let go = lock.withLock { () -> Bool in
                while next >= jobs.count && !stopping { lock.wait() }
                return !stopping
            }
            guard go else { return }
            work()
        }
    }
}
