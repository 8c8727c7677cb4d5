import ApusControl
import ApusSys
import VirtioSpec

/// `bench`: IOPS, MiB/s and latency percentiles for 4 KiB random and 128 KiB
/// sequential reads and writes at queue depths 1 and 32, against one or
/// more backends, printed as one table.
public enum Bench {
    public struct Scenario: Sendable {
        public let name: String
        public let write: Bool
        public let blockSize: Int
        public let random: Bool
        public let depth: Int
    }

    public static let scenarios: [Scenario] = [
        Scenario(name: "4k randread", write: false, blockSize: 4096, random: true, depth: 1),
        Scenario(name: "4k randread", write: false, blockSize: 4096, random: true, depth: 32),
        Scenario(name: "4k randwrite", write: true, blockSize: 4096, random: true, depth: 1),
        Scenario(name: "4k randwrite", write: true, blockSize: 4096, random: true, depth: 32),
        Scenario(name: "128k seqread", write: false, blockSize: 128 << 10, random: false, depth: 1),
        Scenario(name: "128k seqread", write: false, blockSize: 128 << 10, random: false, depth: 32),
        Scenario(name: "128k seqwrite", write: true, blockSize: 128 << 10, random: false, depth: 1),
        Scenario(name: "128k seqwrite", write: true, blockSize: 128 << 10, random: false, depth: 32),
    ]

    public struct Result: Sendable {
        public let iops: Double
        public let mibPerSecond: Double
        public let p50Microseconds: Double
        public let p99Microseconds: Double
        public let errors: Int
    }

    /// Runs `scenario` for `seconds` against `client`.
    public static func measure(_ scenario: Scenario, client: BlockClient, seconds: Double, span: UInt64, seed: UInt64) throws -> Result {
        var rng = SeededRandom(seed: seed)
        let sectorsPerIO = UInt64(scenario.blockSize / 512)
        let ioSpan = max(1, span / sectorsPerIO)
        var sequential: UInt64 = 0
        let payload = rng.bytes(scenario.blockSize)
        // Written into each slot once: the harness's copy is not measured.
        let payloadID = Int(truncatingIfNeeded: rng.next())
        // Each slot's start time (0: not in flight), by slot.
        var started = [UInt64](repeating: 0, count: client.slots.count)
        var inFlight = 0
        var latencies: [UInt64] = []
        latencies.reserveCapacity(1 << 20)
        var completed = 0, errors = 0
        let begin = Clock.monotonicNanoseconds()
        let end = begin + UInt64(seconds * 1e9)
        func nextSector() -> UInt64 {
            if scenario.random { return UInt64.random(in: 0..<ioSpan, using: &rng) * sectorsPerIO }
            defer { sequential = (sequential + 1) % ioSpan }
            return sequential * sectorsPerIO
        }
        while true {
            let now = Clock.monotonicNanoseconds()
            if now < end {
                while inFlight < scenario.depth {
                    let sector = nextSector()
                    let t = Clock.monotonicNanoseconds()
                    let slot = scenario.write
                        ? try client.submit(type: VirtioBlock.typeOut, sector: sector, data: payload, payload: payloadID)
                        : try client.submit(type: VirtioBlock.typeIn, sector: sector, readLength: scenario.blockSize)
                    guard let slot else { break }
                    started[slot] = t
                    inFlight += 1
                }
            }
            if inFlight == 0 { break }
            let done = try client.reap(timeoutMilliseconds: 30_000)
            if done.isEmpty { throw HarnessError("\(scenario.name) QD\(scenario.depth): no completion in 30 s") }
            let t = Clock.monotonicNanoseconds()
            for c in done {
                if c.slot < started.count, started[c.slot] != 0 {
                    latencies.append(t - started[c.slot])
                    started[c.slot] = 0
                    inFlight -= 1
                }
                if c.status != VirtioBlock.statusOK { errors += 1 }
                completed += 1
            }
        }
        let elapsed = Double(Clock.monotonicNanoseconds() - begin) / 1e9
        latencies.sort()
        func pct(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return .nan }
            return Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000
        }
        let iops = Double(completed) / elapsed
        return Result(iops: iops, mibPerSecond: iops * Double(scenario.blockSize) / 1_048_576,
                      p50Microseconds: pct(0.50), p99Microseconds: pct(0.99), errors: errors)
    }

    /// Runs every scenario against every target and prints one table. With
    /// `rounds` above 1, each scenario is measured that many times per
    /// target, `seconds / rounds` each, the targets taking turns round by
    /// round, and each cell is the median of its rounds: a host whose
    /// speed drifts then slows every target alike, not whichever ran last.
    public static func run(targets: [(name: String, socket: String)], seconds: Double, rounds: Int = 1, seed: UInt64, report: Report) {
        var clients: [(String, BlockClient)] = []
        for t in targets {
            do {
                let c = try BlockClient(socket: t.socket, queueSize: 256)
                clients.append((t.name, c))
            } catch {
                report.check("connect \(t.name)", false, "\(error)")
                return
            }
        }
        defer { for (_, c) in clients { c.harness.close() } }
        let span = clients.map { min($0.1.capacitySectors, 2 << 20) }.min() ?? 0 // at most 1 GiB
        guard span >= 1024 else { report.check("device size", false, "\(span) sectors"); return }
        let rounds = max(1, rounds)
        report.emit("| workload | QD | backend | IOPS | MiB/s | p50 µs | p99 µs |")
        report.emit("|---|---|---|---|---|---|---|")
        for s in scenarios {
            var results = Array(repeating: [Result](), count: clients.count)
            var failed = Array(repeating: false, count: clients.count)
            for round in 0..<rounds {
                for (i, (name, client)) in clients.enumerated() where !failed[i] {
                    do {
                        results[i].append(try measure(s, client: client, seconds: seconds / Double(rounds), span: span, seed: seed &+ UInt64(round)))
                    } catch {
                        failed[i] = true
                        report.check("\(name) \(s.name) QD\(s.depth)", false, "\(error)")
                    }
                }
            }
            for (i, (name, _)) in clients.enumerated() where !failed[i] {
                let r = median(results[i])
                report.emit(String(format4(s.name, s.depth, name, r)))
                report.measure([("workload", .string(s.name)), ("depth", .integer(Int64(s.depth))), ("backend", .string(name)),
                                ("iops", .number(r.iops)), ("mib_per_second", .number(r.mibPerSecond)),
                                ("p50_us", .number(r.p50Microseconds)), ("p99_us", .number(r.p99Microseconds)), ("errors", .integer(Int64(r.errors))),
                                ("rounds", .integer(Int64(results[i].count)))])
                if r.errors > 0 { report.check("\(name) \(s.name) QD\(s.depth) completes without errors", false, "\(r.errors) errors") }
            }
        }
    }

    /// Each figure's median over rounds (errors summed).
    static func median(_ rs: [Result]) -> Result {
        func mid(_ key: (Result) -> Double) -> Double {
            let v = rs.map(key).sorted()
            guard !v.isEmpty else { return .nan }
            return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
        }
        return Result(iops: mid(\.iops), mibPerSecond: mid(\.mibPerSecond), p50Microseconds: mid(\.p50Microseconds),
                      p99Microseconds: mid(\.p99Microseconds), errors: rs.reduce(0) { $0 + $1.errors })
    }

    static func format4(_ workload: String, _ depth: Int, _ name: String, _ r: Result) -> String {
        let f = Report.decimal
        return "| \(workload) | \(depth) | \(name) | \(f(r.iops, 0)) | \(f(r.mibPerSecond, 1)) | \(f(r.p50Microseconds, 1)) | \(f(r.p99Microseconds, 1)) |"
    }
}
