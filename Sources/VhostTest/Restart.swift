import ApusControl
import ApusSys
import VirtioSpec
import GuestMemory

/// `restart`: a vhost-user-blk backend killed (SIGKILL) at random moments
/// under queue-depth-32 writes and reads of checksummed blocks, started
/// again at once, and picked up again as QEMU does after a backend crash:
/// the kept inflight region handed to the new process (when the backend
/// offers INFLIGHT_SHMFD), the rings resumed from the used index the guest
/// sees. Per kill it reports the requests in flight, how many the region
/// recorded for resubmission, how many completed after the restart, how
/// many were lost (never completed) or completed twice, and the time from
/// the kill to the first completion; the blocks are read back against the
/// model at the end.
public enum Restart {
    public struct Target: Sendable {
        public let name: String
        public let socket: String
        /// The backend's command line (run with /bin/sh -c, as `exec ...`).
        public let command: String
        public init(name: String, socket: String, command: String) {
            self.name = name; self.socket = socket; self.command = command
        }
    }

    /// What one kill did.
    public struct Kill: Sendable {
        public var inflight = 0
        /// Heads the inflight region recorded (nil: the backend keeps none).
        public var recorded: Int?
        public var completed = 0
        public var lost = 0
        public var duplicated = 0
        /// Requests completed after the restart without an interrupt: a
        /// guest asleep on it would have waited forever.
        public var missedInterrupt = false
        public var recoveryMilliseconds: Double?
    }

    /// A whole run against one backend.
    public struct Summary: Sendable {
        public var name: String
        public var tracksInflight = false
        public var kills: [Kill] = []
        public var requests = 0
        public var errors = 0
        public var blocksChecked = 0
        public var mismatches = 0
        public var failure: String?

        public var lost: Int { kills.reduce(0) { $0 + $1.lost } }
        public var missedInterrupts: Int { kills.filter(\.missedInterrupt).count }
        public var duplicated: Int { kills.reduce(0) { $0 + $1.duplicated } }
        public var inflight: Int { kills.reduce(0) { $0 + $1.inflight } }
        public var recorded: Int { kills.reduce(0) { $0 + ($1.recorded ?? 0) } }
        /// p50 and p99 of the kill-to-next-completion times, ms.
        public var recovery: (p50: Double, p99: Double) {
            let t = kills.compactMap(\.recoveryMilliseconds).sorted()
            guard !t.isEmpty else { return (.nan, .nan) }
            return (t[t.count / 2], t[min(t.count - 1, Int((Double(t.count) * 0.99).rounded(.up)) - 1)])
        }
    }

    static let blockSize = 4096
    static let sectorsPerBlock = UInt64(blockSize / 512)

    /// The bytes of `block` at write `generation`: its identity, then noise.
    static func content(block: UInt64, generation: UInt64) -> [UInt8] {
        var rng = SeededRandom(seed: block &* 0x9E37_79B9_7F4A_7C15 ^ generation)
        var out = rng.bytes(blockSize)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: block >> (8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: generation >> (8 * UInt64(i)))
        }
        return out
    }

    /// Runs `kills` kills against each target in turn, prints one table,
    /// and records a check per target in `report`: a backend that keeps an
    /// inflight region must lose, duplicate and corrupt nothing; one that
    /// does not is only reported.
    public static func run(targets: [Target], kills: Int, seed: UInt64, depth: Int, report: Report) -> [Summary] {
        var summaries: [Summary] = []
        for t in targets {
            var s = Summary(name: t.name)
            do {
                try runOne(t, kills: kills, seed: seed, depth: depth, summary: &s, report: report)
            } catch {
                s.failure = "\(error)"
            }
            summaries.append(s)
            if s.tracksInflight {
                report.check("\(t.name): \(s.kills.count) kills, nothing lost, duplicated, corrupted or left unannounced",
                             s.failure == nil && s.kills.count == kills && s.lost == 0 && s.duplicated == 0 && s.mismatches == 0 && s.errors == 0
                                && s.missedInterrupts == 0,
                             "\(s.failure ?? "") lost \(s.lost), duplicated \(s.duplicated), mismatched \(s.mismatches) of \(s.blocksChecked) blocks, \(s.errors) I/O errors, \(s.missedInterrupts) missed interrupts")
            } else {
                report.check("\(t.name): \(s.kills.count) kills (no inflight tracking: losses reported, not failed)", s.failure == nil, s.failure ?? "")
            }
        }
        report.emit("")
        report.emit("| backend | inflight tracking | kills | requests | outstanding at kill | recorded, resubmitted | lost | duplicated | blocks mismatched | interrupts missed | recovery p50 (ms) | p99 (ms) |")
        report.emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in summaries {
            let r = s.recovery
            report.emit("| \(s.name) | \(s.tracksInflight ? "INFLIGHT_SHMFD" : "none") | \(s.kills.count) | \(s.requests) | \(s.inflight) | \(s.tracksInflight ? String(s.recorded) : "-") | \(s.lost) | \(s.duplicated) | \(s.mismatches) of \(s.blocksChecked) | \(s.missedInterrupts) | \(Report.decimal(r.p50, 1)) | \(Report.decimal(r.p99, 1)) |")
        }
        return summaries
    }

    /// The backend process: started, killed, started again.
    final class Backend {
        let target: Target
        private(set) var pid: Int32 = 0
        init(_ t: Target) { target = t }

        func start() throws {
            FileSystem.remove(target.socket)
            pid = try ProcessControl.spawn("/bin/sh", ["-c", "exec " + target.command])
        }

        func kill() {
            guard pid > 0 else { return }
            _ = ProcessControl.signal(pid, 9)
            while ProcessControl.exitStatus(ifEnded: pid) == nil { Clock.sleep(nanoseconds: 200_000) }
            pid = 0
        }
    }

    static func runOne(_ t: Target, kills: Int, seed: UInt64, depth: Int, summary s: inout Summary, report: Report) throws {
        let backend = Backend(t)
        try backend.start()
        defer { backend.kill() }
        let client = try BlockClient(socket: t.socket, inflight: true)
        defer { client.harness.close() }
        s.tracksInflight = client.harness.inflight != nil
        guard !client.readOnly else { throw HarnessError("the backend's disk is read-only") }
        var rng = SeededRandom(seed: seed)
        let blocks = min(client.capacitySectors / sectorsPerBlock, 16384)
        guard blocks >= UInt64(depth * 4) else { throw HarnessError("the disk has \(blocks) blocks; restart needs \(depth * 4)") }
        /// The generation last acknowledged per block; blocks with a request in flight.
        var model: [UInt64: UInt64] = [:]
        var busy: [Int: (block: UInt64, write: Bool, generation: UInt64)] = [:]
        var nextGeneration: UInt64 = 1

        func submitOne() throws {
            var block = UInt64.random(in: 0..<blocks, using: &rng)
            while busy.values.contains(where: { $0.block == block }) { block = UInt64.random(in: 0..<blocks, using: &rng) }
            let write = model[block] == nil || Bool.random(using: &rng)
            let sector = block * sectorsPerBlock
            if write {
                let g = nextGeneration
                nextGeneration += 1
                guard let slot = try client.submit(type: VirtioBlock.typeOut, sector: sector, data: content(block: block, generation: g)) else { return }
                busy[slot] = (block, true, g)
            } else {
                guard let slot = try client.submit(type: VirtioBlock.typeIn, sector: sector, readLength: blockSize) else { return }
                busy[slot] = (block, false, 0)
            }
            s.requests += 1
        }
        func complete(_ c: BlockClient.Completion) throws {
            guard let r = busy.removeValue(forKey: c.slot) else { return }
            guard c.status == VirtioBlock.statusOK else { s.errors += 1; return }
            if r.write {
                model[r.block] = max(model[r.block] ?? 0, r.generation)
            } else if let g = model[r.block] {
                let data = try client.harness.memory.readBytes(at: client.slots[c.slot].data, count: blockSize)
                if data != content(block: r.block, generation: g) { s.mismatches += 1 }
                s.blocksChecked += 1
            }
        }
        /// Keeps `depth` requests in flight for `nanoseconds`.
        func work(_ nanoseconds: UInt64) throws {
            let end = Clock.monotonicNanoseconds() + nanoseconds
            while Clock.monotonicNanoseconds() < end {
                while busy.count < depth { try submitOne() }
                for c in try client.reap(timeoutMilliseconds: 1000) { try complete(c) }
            }
        }

        try work(50_000_000)
        for k in 0..<kills {
            try work(UInt64.random(in: 5_000_000...60_000_000, using: &rng))
            // The queue full again, and a random moment (0-60 µs) into the
            // backend's work on it: some requests taken, some done, some not yet seen.
            while busy.count < depth { try submitOne() }
            Clock.sleep(nanoseconds: UInt64.random(in: 0...60_000, using: &rng))
            var kill = Kill()
            kill.inflight = busy.count
            let duplicatesBefore = client.unexpectedCompletions
            let killedAt = Clock.monotonicNanoseconds()
            backend.kill()
            kill.recorded = client.harness.inflightHeads(queue: 0)?.count
            try backend.start()
            try client.harness.resumeAfterRestart(deviceFeatures: BlockClient.drivenFeatures)
            // Everything that was in flight should now complete (no new
            // requests meanwhile), and the driver be told by an interrupt.
            let waiting = Set(busy.keys)
            if !waiting.isEmpty, try !client.queue.waitInterrupt(timeoutMilliseconds: 3000) {
                kill.missedInterrupt = try client.queue.driver.usedIndex() != client.queue.driver.lastUsedIndex
            }
            let deadline = Clock.monotonicNanoseconds() + 3_000_000_000
            while Clock.monotonicNanoseconds() < deadline && busy.keys.contains(where: waiting.contains) {
                let done = try client.reap(timeoutMilliseconds: 200)
                if kill.recoveryMilliseconds == nil, !done.isEmpty {
                    kill.recoveryMilliseconds = Double(Clock.monotonicNanoseconds() - killedAt) / 1e6
                }
                for c in done where waiting.contains(c.slot) { kill.completed += 1; try complete(c) }
                for c in done where !waiting.contains(c.slot) { try complete(c) }
            }
            kill.lost = busy.keys.filter(waiting.contains).count
            if kill.recoveryMilliseconds == nil {
                // Nothing was in flight: the first request after the restart.
                try submitOne()
                let done = try client.reap(timeoutMilliseconds: 3000)
                if !done.isEmpty { kill.recoveryMilliseconds = Double(Clock.monotonicNanoseconds() - killedAt) / 1e6 }
                for c in done { try complete(c) }
            }
            kill.duplicated = client.unexpectedCompletions - duplicatesBefore
            if kill.lost > 0 {
                // Requests that never come back hang a guest; the harness starts a new session to go on.
                for (_, r) in busy where r.write { model.removeValue(forKey: r.block) } // content unknown now
                busy.removeAll()
                try client.restartSession()
            }
            s.kills.append(kill)
            report.measure([("backend", .string(t.name)), ("kill", .integer(Int64(k + 1))), ("in_flight", .integer(Int64(kill.inflight))),
                            ("recorded", kill.recorded.map { .integer(Int64($0)) } ?? .null), ("completed", .integer(Int64(kill.completed))),
                            ("lost", .integer(Int64(kill.lost))), ("duplicated", .integer(Int64(kill.duplicated))),
                            ("missed_interrupt", .bool(kill.missedInterrupt)), ("recovery_ms", kill.recoveryMilliseconds.map { .number($0) } ?? .null)])
        }
        // Drain, then read every block written back against the model.
        let deadline = Clock.monotonicNanoseconds() + 5_000_000_000
        while !busy.isEmpty && Clock.monotonicNanoseconds() < deadline {
            for c in try client.reap(timeoutMilliseconds: 500) { try complete(c) }
        }
        for (block, g) in model.sorted(by: { $0.key < $1.key }) {
            let r = try client.read(sector: block * sectorsPerBlock, count: blockSize)
            s.blocksChecked += 1
            if r.status != VirtioBlock.statusOK || r.data != content(block: block, generation: g) { s.mismatches += 1 }
        }
        report.emit("\(t.name): \(s.kills.count) kills, \(s.requests) requests, inflight tracking \(s.tracksInflight ? "yes" : "no"): lost \(s.lost), duplicated \(s.duplicated), \(s.mismatches) of \(s.blocksChecked) blocks mismatched")
    }
}
