import ApusControl
import ApusSys
import GuestMemory
import Virtqueue
import VirtioDriver

/// `apus-vhost-test net`: two vhost-user-net ports of any switch backend
/// driven as two guests would: frame integrity, hostile chains, and a
/// throughput bench.
public enum NetModes {
    static let macA: [UInt8] = [0x52, 0x54, 0x00, 0xa0, 0x00, 0x0a]
    static let macB: [UInt8] = [0x52, 0x54, 0x00, 0xa0, 0x00, 0x0b]
    static let broadcast = [UInt8](repeating: 0xff, count: 6)

    /// Receives until `count` frames arrived or `quietMilliseconds` pass without any.
    static func collect(_ c: NetClient, _ count: Int, quietMilliseconds: Int32 = 1000) throws -> [[UInt8]] {
        var got: [[UInt8]] = []
        while got.count < count {
            let more = try c.receive(timeoutMilliseconds: quietMilliseconds)
            if more.isEmpty { break }
            got += more
        }
        return got
    }

    /// Both ports announce themselves so the switch learns where they are.
    static func introduce(_ a: NetClient, _ b: NetClient) throws {
        try a.send([a.frame(to: broadcast, size: 60, seed: 0xa)])
        _ = try collect(b, 1, quietMilliseconds: 2000)
        try b.send([b.frame(to: broadcast, size: 60, seed: 0xb)])
        _ = try collect(a, 1, quietMilliseconds: 2000)
    }

    // MARK: integrity

    public static func integrity(a socketA: String, b socketB: String, frames: Int, report: Report) {
        report.attempt("net integrity") {
            let a = try NetClient(socket: socketA, mac: macA)
            defer { a.close() }
            let b = try NetClient(socket: socketB, mac: macB)
            defer { b.close() }
            report.check("both ports negotiate and start their queues", true, "mergeable rx: \(a.mergeable)/\(b.mergeable)")

            let hello = a.frame(to: broadcast, size: 60, seed: 1)
            try a.send([hello])
            report.check("a broadcast floods to the other port", try collect(b, 1) == [hello])
            report.check("a frame never returns to its sender", try a.receive(timeoutMilliseconds: 200).isEmpty)
            try b.send([b.frame(to: broadcast, size: 60, seed: 2)])
            _ = try collect(a, 1)

            for (name, from, to, toMAC) in [("a to b", a, b, macB), ("b to a", b, a, macA)] {
                var expected: [[UInt8]] = []
                var received: [[UInt8]] = []
                var n = 0
                while n < frames {
                    var batch: [[UInt8]] = []
                    for _ in 0..<min(64, frames - n) {
                        batch.append(from.frame(to: toMAC, size: 60 + (n * 37) % 1455, seed: UInt32(n + 100)))
                        n += 1
                    }
                    var offset = 0
                    while offset < batch.count {
                        offset += try from.send(Array(batch[offset...]))
                        received += try to.receive(timeoutMilliseconds: 0)
                    }
                    expected += batch
                    received += try to.receive(timeoutMilliseconds: 0)
                }
                received += try collect(to, expected.count - received.count)
                let intact = received == expected
                report.check("\(frames) unicast frames \(name) (60-1514 bytes) arrive intact and in order", intact,
                             "received \(received.count)")
            }
            report.check("every transmitted chain is completed", try a.waitTransmitted() && b.waitTransmitted())
        }
        report.summary("net integrity")
    }

    // MARK: hostile

    /// Malformed transmit chains from port a: each must be completed (the
    /// guest gets its buffer back), none may reach port b, and the switch
    /// must carry on.
    public static func hostile(a socketA: String, b socketB: String, report: Report) {
        report.attempt("net hostile") {
            let a = try NetClient(socket: socketA, mac: macA)
            defer { a.close() }
            let b = try NetClient(socket: socketB, mac: macB)
            defer { b.close() }
            try introduce(a, b)
            let memoryEnd = VhostHarness.memorySize
            let scratch = GuestAddress(memoryEnd - 8192)
            try a.harness.memory.write(bytes: [UInt8](repeating: 0, count: 12) + a.frame(to: macB, size: 60, seed: 9), at: scratch)
            let cases: [(String, [DescriptorBuffer])] = [
                ("a writable transmit buffer", [DescriptorBuffer(address: scratch, length: 72, isWriteOnly: true)]),
                ("shorter than the virtio-net header", [DescriptorBuffer(address: scratch, length: 8, isWriteOnly: false)]),
                ("a runt frame (8 bytes)", [DescriptorBuffer(address: scratch, length: 20, isWriteOnly: false)]),
                ("an address outside guest memory", [DescriptorBuffer(address: GuestAddress(1 << 40), length: 72, isWriteOnly: false)]),
                ("a buffer running past the end of memory", [DescriptorBuffer(address: GuestAddress(memoryEnd - 16), length: 72, isWriteOnly: false)]),
                ("an oversized frame (70000 bytes)", [DescriptorBuffer(address: GuestAddress(0), length: 70_012, isWriteOnly: false)]),
                ("a zero-length buffer", [DescriptorBuffer(address: scratch, length: 0, isWriteOnly: false)]),
            ]
            for (name, chain) in cases {
                try a.sendRaw([chain])
                let completed = try a.waitTransmitted(timeoutMilliseconds: 3000)
                let leaked = try b.receive(timeoutMilliseconds: 100)
                report.check("\(name): completed, nothing forwarded", completed && leaked.isEmpty,
                             completed ? "\(leaked.count) frame(s) forwarded" : "the chain was never completed")
            }
            let fine = a.frame(to: macB, size: 1514, seed: 77)
            try a.send([fine])
            report.check("the switch still forwards good frames", try collect(b, 1) == [fine])
        }
        report.summary("net hostile")
    }

    // MARK: bench

    public struct BenchResult: Sendable {
        public let target: String
        public let frameSize: Int
        public let sent: Int
        public let received: Int
        public let seconds: Double
        public var packetsPerSecond: Double { Double(received) / seconds }
        public var gigabitsPerSecond: Double { Double(received * frameSize * 8) / seconds / 1e9 }
        public var lossPercent: Double { sent == 0 ? 0 : Double(sent - min(received, sent)) * 100 / Double(sent) }
    }

    /// Frames of `size` bytes from a to b for `seconds`: a sender thread
    /// keeps a's transmit ring full, this thread drains b.
    static func measure(target: String, a: NetClient, b: NetClient, size: Int, seconds: Double) throws -> BenchResult {
        let template = a.frame(to: macB, size: size, seed: 5)
        let batch = [[UInt8]](repeating: template, count: 64)
        let stop = LockedBox(false)
        let sentBox = LockedBox(0)
        let sender = OSThread(name: "bench-send") {
            var sent = 0
            while !stop.withValue({ $0 }) {
                do {
                    let n = try a.send(batch)
                    sent += n
                    if n == 0 { try a.waitForTransmitRoom(timeoutMilliseconds: 1) }
                } catch {
                    break
                }
            }
            sentBox.withValue { $0 = sent }
        }
        try sender.start()
        let start = Clock.monotonicNanoseconds()
        let end = start + UInt64(seconds * 1e9)
        var received = 0
        while Clock.monotonicNanoseconds() < end {
            received += try b.receive(timeoutMilliseconds: 10).count
        }
        let elapsed = Double(Clock.monotonicNanoseconds() - start) / 1e9
        stop.withValue { $0 = true }
        sender.join()
        received += try collect(b, Int.max, quietMilliseconds: 100).count
        return BenchResult(target: target, frameSize: size, sent: sentBox.withValue { $0 }, received: received, seconds: elapsed)
    }

    public static func bench(targets: [(name: String, a: String, b: String)], sizes: [Int], seconds: Double, report: Report) -> [BenchResult] {
        var results: [BenchResult] = []
        for size in sizes {
            for t in targets {
                report.attempt("net bench \(t.name) \(size) B") {
                    let a = try NetClient(socket: t.a, mac: macA)
                    defer { a.close() }
                    let b = try NetClient(socket: t.b, mac: macB)
                    defer { b.close() }
                    try introduce(a, b)
                    results.append(try measure(target: t.name, a: a, b: b, size: size, seconds: seconds))
                }
            }
        }
        let f = Report.decimal
        report.emit("| backend | frame (B) | Mpps | Gbit/s | sent | received | loss % |")
        report.emit("|---|---|---|---|---|---|---|")
        for r in results {
            report.emit("| \(r.target) | \(r.frameSize) | \(f(r.packetsPerSecond / 1e6, 3)) | \(f(r.gigabitsPerSecond, 2)) | \(r.sent) | \(r.received) | \(f(r.lossPercent, 1)) |")
            report.measure([("backend", .string(r.target)), ("frame_bytes", .integer(Int64(r.frameSize))), ("pps", .number(r.packetsPerSecond)),
                            ("gbit_per_second", .number(r.gigabitsPerSecond)), ("sent", .integer(Int64(r.sent))),
                            ("received", .integer(Int64(r.received))), ("loss_percent", .number(r.lossPercent))])
        }
        return results
    }
}
