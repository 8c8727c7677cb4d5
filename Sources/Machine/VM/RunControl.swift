import ApusSys

/// The run state shared by the vCPU threads and the control plane: whether
/// the machine should stop (and why), pause requests, and how many vCPUs are
/// parked. The platform devices report power-off and reset through it.
final class RunControl: PlatformControl, @unchecked Sendable {
    // SAFETY (Sendable): every mutable field is guarded by `lock`.
    let lock = ConditionLock()
    private var _exitReason: ExitReason?
    private var pauseRequested = false
    private var parked = 0
    /// vCPUs with a non-maskable interrupt to inject before their next run.
    private var nmiPending: Set<UInt32> = []
    /// Signalled when an exit is requested, to wake the main loop.
    let exitEvent: EventFD
    /// Kicks every vCPU out of KVM_RUN; set once the vCPUs exist.
    var kickAll: @Sendable () -> Void = {}

    init() throws(SystemCallError) {
        exitEvent = try EventFD()
    }

    var exitReason: ExitReason? { lock.withLock { _exitReason } }
    var isPaused: Bool { lock.withLock { pauseRequested } }

    /// Records why the machine stops (the first reason wins) and stops the vCPUs.
    func requestExit(_ reason: ExitReason) {
        lock.withLock {
            if _exitReason == nil { _exitReason = reason }
            lock.broadcast()
        }
        exitEvent.signal()
        kickAll()
    }

    func guestRequestedPowerOff() { requestExit(.powerOff) }
    func guestRequestedReset() { requestExit(.reboot) }

    /// Called by a vCPU thread between runs: parks while paused; returns false
    /// when the vCPU should exit its loop.
    func vcpuMayRun() -> Bool {
        lock.withLock {
            if _exitReason != nil { return false }
            if pauseRequested {
                parked += 1
                lock.broadcast()
                while pauseRequested && _exitReason == nil { lock.wait() }
                parked -= 1
                lock.broadcast()
            }
            return _exitReason == nil
        }
    }

    /// Pauses every vCPU and waits until all `count` are parked (or the
    /// machine is stopping). Returns false on timeout.
    func pause(vcpuCount count: Int, timeoutNanoseconds: UInt64 = 5_000_000_000) -> Bool {
        lock.withLock { pauseRequested = true }
        kickAll()
        let deadline = Clock.monotonicNanoseconds() + timeoutNanoseconds
        return lock.withLock {
            while parked < count && _exitReason == nil {
                let now = Clock.monotonicNanoseconds()
                if now >= deadline { return false }
                lock.wait(timeoutNanoseconds: deadline - now)
            }
            return true
        }
    }

    /// Asks every vCPU to take an NMI (each injects it on its own thread).
    func requestNMI(vcpus: [UInt32]) {
        lock.withLock { nmiPending.formUnion(vcpus) }
        kickAll()
    }

    /// Called by a vCPU thread before it runs: whether it owes the guest an NMI.
    func takeNMI(_ vcpu: UInt32) -> Bool {
        lock.withLock { nmiPending.remove(vcpu) != nil }
    }

    /// Sets the pause flag without waiting (used before the vCPUs start).
    func setPausedBeforeStart() { lock.withLock { pauseRequested = true } }

    /// Lets parked vCPUs run again.
    func resume() {
        lock.withLock {
            pauseRequested = false
            lock.broadcast()
        }
    }
}
