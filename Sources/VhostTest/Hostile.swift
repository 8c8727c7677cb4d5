import ApusSys
import VirtioSpec
import GuestMemory
import Virtqueue
import VirtioDriver

/// `hostile`: malformed descriptor chains a buggy or malicious guest could
/// post. For each one the backend must stay alive, must not answer OK, must
/// not write outside the chain's buffers, and must serve valid requests
/// again (directly, after a ring reset, or after a new session).
public enum Hostile {
    struct Case {
        let name: String
        /// Writes descriptors/avail entries; returns the head to watch for (nil: none expected).
        let post: (Context) throws -> UInt16?
    }

    /// What a case may use: raw descriptor slots at the top of the table,
    /// a valid header, a bait area filled with canaries.
    struct Context {
        let client: BlockClient
        var driver: DriverQueue { client.queue.driver }
        var size: UInt16 { driver.size }
        /// Raw descriptor indices, away from the ones normal requests use.
        func slot(_ i: UInt16) -> UInt16 { size - 1 - i }
        let header: GuestAddress
        let bait: GuestAddress
        static let baitSize = 8192

        func desc(_ i: UInt16, _ address: UInt64, _ length: UInt32, _ flags: UInt16, next: UInt16 = 0) throws {
            try driver.writeRaw(Descriptor(address: address, length: length, flags: flags, next: next), at: slot(i))
        }
        func headerFor(type: UInt32, sector: UInt64 = 0) throws {
            var h = [UInt8](repeating: 0, count: 16)
            for i in 0..<4 { h[i] = UInt8(truncatingIfNeeded: type >> (8 * UInt32(i))) }
            for i in 0..<8 { h[8 + i] = UInt8(truncatingIfNeeded: sector >> (8 * UInt64(i))) }
            try client.harness.memory.write(bytes: h, at: header)
        }
    }

    static let W = Virtq.descriptorWrite, N = Virtq.descriptorNext, I = Virtq.descriptorIndirect

    static var cases: [Case] {
        [
            Case(name: "self-looping chain") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(0))
                return c.slot(0)
            },
            Case(name: "two-descriptor cycle") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, c.bait.raw, 512, N | W, next: c.slot(0))
                return c.slot(0)
            },
            Case(name: "data buffer outside guest RAM") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, VhostHarness.memorySize + 0x10000, 4096, N | W, next: c.slot(2))
                try c.desc(2, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "buffer address overflows 64 bits") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, UInt64.max - 0xFFF, 0x2000, N | W, next: c.slot(2))
                try c.desc(2, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "zero-length status descriptor") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, c.bait.raw + 1024, 512, N | W, next: c.slot(2))
                try c.desc(2, c.bait.raw, 0, W)
                return c.slot(0)
            },
            Case(name: "status descriptor not device-writable") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, c.bait.raw, 1, 0)
                return c.slot(0)
            },
            Case(name: "header in a device-writable buffer") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N | W, next: c.slot(1))
                try c.desc(1, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "readable descriptor after a writable one") { c in
                try c.headerFor(type: VirtioBlock.typeOut)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, c.bait.raw + 1024, 512, N | W, next: c.slot(2))
                try c.desc(2, c.bait.raw + 2048, 512, N, next: c.slot(3))
                try c.desc(3, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "header shorter than 16 bytes") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 7, N, next: c.slot(1))
                try c.desc(1, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "data length not a multiple of 512") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, c.bait.raw + 1024, 700, N | W, next: c.slot(2))
                try c.desc(2, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "sector number overflows") { c in
                try c.headerFor(type: VirtioBlock.typeIn, sector: UInt64.max - 1)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, c.bait.raw + 1024, 4096, N | W, next: c.slot(2))
                try c.desc(2, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "huge data length (4 GiB - 1)") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.slot(1))
                try c.desc(1, c.bait.raw + 1024, UInt32.max, N | W, next: c.slot(2))
                try c.desc(2, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "next index out of range") { c in
                try c.headerFor(type: VirtioBlock.typeIn)
                try c.desc(0, c.header.raw, 16, N, next: c.size + 7)
                return c.slot(0)
            },
            Case(name: "indirect table with a bad length") { c in
                try c.desc(0, c.bait.raw + 4096, 20, I)
                return c.slot(0)
            },
            Case(name: "indirect table of 1M entries") { c in
                try c.desc(0, c.bait.raw + 4096, 16 << 20, I)
                return c.slot(0)
            },
            Case(name: "indirect descriptor with NEXT") { c in
                try c.desc(0, c.bait.raw + 4096, 32, I | N, next: c.slot(1))
                try c.desc(1, c.bait.raw, 1, W)
                return c.slot(0)
            },
            Case(name: "nested indirect table") { c in
                let table = c.bait.raw + 4096
                let mem = c.client.harness.memory
                try Descriptor(address: table + 64, length: 32, flags: I, next: 0).write(mem, at: GuestAddress(table))
                try c.desc(0, table, 16, I)
                return c.slot(0)
            },
            Case(name: "chain as long as the whole table") { c in
                // Every slot points at the next: longer than any legal chain.
                try c.headerFor(type: VirtioBlock.typeIn)
                for i in 0..<c.size { try c.driver.writeRaw(Descriptor(address: c.header.raw, length: 16, flags: N, next: (i + 1) % c.size), at: i) }
                return 0
            },
            Case(name: "head index out of range") { c in
                try c.driver.pushAvail(c.size + 100)
                return nil
            },
            Case(name: "avail index jumps past the ring") { c in
                try c.driver.forceAvailIndex(c.driver.availIndex &+ 1000)
                return nil
            },
        ]
    }

    public static func run(socket: String, report: Report) {
        report.attempt("hostile") {
            var client = try BlockClient(socket: socket)
            defer { client.harness.close() }
            for hostile in cases {
                let outcome = try exercise(hostile, client: &client, socket: socket)
                report.check("\(hostile.name): \(outcome.summary)", outcome.passed, outcome.detail)
            }
        }
        report.summary("hostile")
    }

    struct Outcome {
        var summary: String
        var passed: Bool
        var detail: String
    }

    static func exercise(_ hostile: Case, client: inout BlockClient, socket: String) throws -> Outcome {
        let memory = client.harness.memory
        guard let slot = client.freeSlots.last else { throw HarnessError("no free slot") }
        let s = client.slots[slot]
        // Bait: the slot's data area, filled with canaries.
        let bait = s.data
        try memory.fill(BlockClient.canary, at: bait, count: Context.baitSize)
        try memory.fill(BlockClient.canary, at: GuestAddress(bait.raw + UInt64(Context.baitSize)), count: 4096)
        let context = Context(client: client, header: s.header, bait: bait)
        let q = client.queue
        let previous = q.driver.availIndex
        let head = try hostile.post(context)
        if q.driver.availIndex == previous { try q.driver.pushAvail(head ?? 0) }
        try q.notify(eventIndex: client.eventIndex, previousAvail: previous)
        try q.driver.publish()
        q.kick.signal()

        // Did the backend return the chain, and with what?
        var returned: (UInt16, UInt32)? = nil
        let deadline = Clock.monotonicNanoseconds() + 1_500_000_000
        while returned == nil, Clock.monotonicNanoseconds() < deadline {
            for u in try q.waitUsed(timeoutMilliseconds: 200) where u.head == head { returned = (u.head, u.length) }
        }
        let statusByte = try memory.read(UInt8.self, at: bait)
        var summary: String
        var answeredOK = false
        if let (_, len) = returned {
            if len >= 1, statusByte != BlockClient.canary {
                summary = "answered status \(statusByte)"
                answeredOK = statusByte == VirtioBlock.statusOK
            } else {
                summary = "returned with nothing written"
            }
        } else {
            summary = "not completed"
        }
        // Nothing may be written past the bait's legal bytes: the guard page after it.
        let guardBytes = try memory.readBytes(at: GuestAddress(bait.raw + UInt64(Context.baitSize)), count: 4096)
        let overrun = guardBytes.contains { $0 != BlockClient.canary }

        // Liveness: a valid request on the same queue, then a ring reset, then a new session.
        var recovery = "serves valid requests"
        if !(try liveness(client)) {
            recovery = "serves valid requests after a new session"
            client.harness.close()
            client = try BlockClient(socket: socket)
            guard try liveness(client) else {
                return Outcome(summary: summary, passed: false, detail: "backend does not serve requests after a new session")
            }
        } else {
            // Reset the queue so the next case starts from a clean ring.
            client = try reset(client, socket: socket)
        }
        summary += ", \(recovery)"
        let passed = !answeredOK && !overrun
        var detail = ""
        if answeredOK { detail = "a malformed request was answered OK" }
        if overrun { detail += (detail.isEmpty ? "" : "; ") + "the backend wrote outside the chain's buffers" }
        return Outcome(summary: summary, passed: passed, detail: detail)
    }

    static func liveness(_ client: BlockClient) throws -> Bool {
        do {
            let r = try client.run(type: VirtioBlock.typeIn, sector: 0, readLength: 512, timeoutSeconds: 2)
            return r.status == VirtioBlock.statusOK
        } catch {
            return false
        }
    }

    /// A fresh session: clean rings for the next case.
    static func reset(_ client: BlockClient, socket: String) throws -> BlockClient {
        client.harness.close()
        return try BlockClient(socket: socket)
    }
}
