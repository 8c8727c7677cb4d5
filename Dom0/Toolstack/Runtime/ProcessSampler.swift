import ApusSys

/// Reads a running domain's apus-hv figures from /proc cheaply, again and
/// again: the /proc files stay open and are re-read from offset 0 (the
/// kernel regenerates them), so a `domstats` over hundreds of domains costs
/// a few preads each instead of path walks, opens and closes.
public final class ProcessSampler: @unchecked Sendable {
    // SAFETY (Sendable): every mutable field is guarded by `lock`.
    public let pid: Int32
    private let lock = ConditionLock()
    private var stat: FileDescriptor?
    private var statm: FileDescriptor?
    /// Each thread's schedstat, and the vCPU index of the vcpuN threads.
    private var threads: [(schedstat: FileDescriptor, vcpu: UInt32?)] = []
    private var samplesSinceScan = 0
    private var buffer = [UInt8](repeating: 0, count: 1024)

    /// How often the thread list is read again (apus-hv's threads are fixed
    /// after start; a rescan catches any that come later).
    static let rescanEvery = 64

    public init(pid: Int32) { self.pid = pid }

    deinit { closeAll() }

    /// The process now; nil if it is gone.
    public func sample() -> HostInfo.ProcessSample? {
        lock.withLock { () -> HostInfo.ProcessSample? in
            if threads.isEmpty || samplesSinceScan >= Self.rescanEvery { scan() }
            samplesSinceScan += 1
            guard let stat, let statm else { return nil }
            var s = HostInfo.ProcessSample()
            for t in threads {
                guard let f = fields(t.schedstat, count: 2) else { continue }
                s.cpuNanoseconds &+= f[0]
                if let n = t.vcpu { s.vcpus[n] = (f[0], f[1]) }
            }
            // /proc/PID/stat: "pid (comm) state ..." with utime and stime the
            // 14th and 15th fields; comm may hold spaces and parentheses.
            guard let n = read(stat) else { return nil }
            if let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")) {
                let rest = numbers(buffer[(close + 1)..<n], skipping: 11, count: 2)
                let tick = UInt64(1_000_000_000) / UInt64(max(1, ProcessControl.clockTicksPerSecond()))
                if rest.count == 2 { s.userNanoseconds = rest[0] * tick; s.systemNanoseconds = rest[1] * tick }
            }
            if let m = fields(statm, count: 2) { s.residentKiB = m[1] * UInt64(ProcessControl.pageSize) / 1024 }
            return s
        }
    }

    // MARK: reading (lock held)

    private func scan() {
        closeAll()
        samplesSinceScan = 0
        let base = "/proc/\(pid)"
        stat = try? FileDescriptor.open(base + "/stat", .readOnly)
        statm = try? FileDescriptor.open(base + "/statm", .readOnly)
        for t in ProcessControl.directoryEntries(base + "/task") {
            guard let fd = try? FileDescriptor.open(base + "/task/" + t + "/schedstat", .readOnly) else { continue }
            var vcpu: UInt32?
            if let comm = ProcessControl.readSmallFile(base + "/task/" + t + "/comm"), comm.starts(with: Array("vcpu".utf8)) {
                vcpu = numbers(comm[4...], skipping: 0, count: 1).first.map { UInt32(truncatingIfNeeded: $0) }
            }
            threads.append((fd, vcpu))
        }
    }

    private func closeAll() {
        stat?.close(); statm?.close()
        stat = nil; statm = nil
        for t in threads { t.schedstat.close() }
        threads.removeAll()
    }

    /// The file's text from offset 0 into `buffer`; its length.
    private func read(_ fd: FileDescriptor) -> Int? {
        let n = buffer.withUnsafeMutableBytes { b in (try? fd.read(into: b, atOffset: 0)) ?? -1 }
        return n > 0 ? n : nil
    }

    private func fields(_ fd: FileDescriptor, count: Int) -> [UInt64]? {
        guard let n = read(fd) else { return nil }
        let f = numbers(buffer[0..<n], skipping: 0, count: count)
        return f.count == count ? f : nil
    }

    /// Space-separated fields read as decimal numbers (a field that is not
    /// one, such as the state letter, reads as its digits or 0), after
    /// skipping `skipping` fields.
    private func numbers(_ bytes: ArraySlice<UInt8>, skipping: Int, count: Int) -> [UInt64] {
        var out: [UInt64] = []
        var index = 0, value: UInt64 = 0, inField = false
        func endField() {
            if inField {
                if index >= skipping { out.append(value) }
                index += 1
            }
            inField = false
            value = 0
        }
        for b in bytes {
            if b == UInt8(ascii: " ") || b == UInt8(ascii: "\n") {
                endField()
                if out.count == count { return out }
            } else {
                inField = true
                if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") { value = value &* 10 &+ UInt64(b - UInt8(ascii: "0")) }
            }
        }
        endField()
        return Array(out.prefix(count))
    }
}
