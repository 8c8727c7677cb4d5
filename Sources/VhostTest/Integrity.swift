import ApusSys
import VirtioSpec

/// `integrity`: random writes with known content at several queue depths,
/// reads checked against a model, flush, write-zeroes, a session restart,
/// and a full read-back.
public enum Integrity {
    public static func run(socket: String, report: Report, seed: UInt64, operations: Int) {
        report.attempt("integrity") {
            var rng = SeededRandom(seed: seed)
            var client = try BlockClient(socket: socket)
            defer { client.harness.close() }
            guard !client.readOnly else {
                report.check("device is writable", false, "the backend is read-only; integrity needs a writable image")
                return
            }
            // Work inside the first 64 MiB (or the whole device if smaller).
            let span = min(client.capacitySectors, 128 * 1024)
            guard span >= 256 else { report.check("device is large enough", false, "\(span) sectors"); return }
            var model: [UInt64: [UInt8]] = [:] // sector -> 512 bytes
            var mismatches = 0
            var errors = 0

            func randomExtent() -> (UInt64, Int) {
                let sectors = Int.random(in: 1...128, using: &rng)
                let start = UInt64.random(in: 0..<(span - UInt64(sectors)), using: &rng)
                return (start, sectors)
            }
            func verify(_ sector: UInt64, _ data: [UInt8]) {
                for i in 0..<(data.count / 512) {
                    if let expected = model[sector + UInt64(i)], expected != Array(data[(i * 512)..<((i + 1) * 512)]) { mismatches += 1 }
                }
            }

            // Writes and reads at queue depth 1.
            for _ in 0..<operations {
                let (start, sectors) = randomExtent()
                if Bool.random(using: &rng) {
                    let data = rng.bytes(sectors * 512)
                    if try client.write(sector: start, data) != VirtioBlock.statusOK { errors += 1; continue }
                    for i in 0..<sectors { model[start + UInt64(i)] = Array(data[(i * 512)..<((i + 1) * 512)]) }
                } else {
                    let r = try client.read(sector: start, count: sectors * 512)
                    if r.status != VirtioBlock.statusOK { errors += 1; continue }
                    verify(start, r.data)
                }
            }
            report.check("random writes and reads at QD1 match", mismatches == 0 && errors == 0, "\(operations) ops, \(mismatches) mismatched sectors, \(errors) errors")

            // Non-overlapping writes at queue depth 16, then read back.
            var batch: [(UInt64, [UInt8])] = []
            var used = Set<UInt64>()
            while batch.count < 16 {
                let (start, sectors) = randomExtent()
                let range = (start..<(start + UInt64(sectors)))
                if range.contains(where: used.contains) { continue }
                range.forEach { used.insert($0) }
                batch.append((start, rng.bytes(sectors * 512)))
            }
            for (s, d) in batch { _ = try client.submit(type: VirtioBlock.typeOut, sector: s, data: d) }
            var done = 0, batchErrors = 0
            while done < batch.count {
                let c = try client.reap(timeoutMilliseconds: 10_000)
                if c.isEmpty { throw HarnessError("QD16 writes timed out") }
                done += c.count
                batchErrors += c.filter { $0.status != VirtioBlock.statusOK }.count
            }
            for (s, d) in batch { for i in 0..<(d.count / 512) { model[s + UInt64(i)] = Array(d[(i * 512)..<((i + 1) * 512)]) } }
            mismatches = 0
            for (s, d) in batch { verify(s, try client.read(sector: s, count: d.count).data) }
            report.check("concurrent writes at QD16 land intact", batchErrors == 0 && mismatches == 0, "\(batchErrors) errors, \(mismatches) mismatched sectors")

            // Large writes, then large reads, 16 at a time (a backend may
            // spread a deep queue's large copies over threads).
            let large = 256 // sectors: 128 KiB
            var slabs: [UInt64] = []
            for s in stride(from: UInt64(0), to: span - UInt64(large), by: large) where slabs.count < 16 {
                if !(s..<(s + UInt64(large))).contains(where: used.contains) { slabs.append(s) }
            }
            // Every completion of `count` requests in flight.
            func reapAll(_ count: Int, _ what: String) throws -> [BlockClient.Completion] {
                var out: [BlockClient.Completion] = []
                while out.count < count {
                    let c = try client.reap(timeoutMilliseconds: 10_000)
                    if c.isEmpty { throw HarnessError("\(what) timed out") }
                    out += c
                }
                return out
            }
            var contents: [Int: (UInt64, [UInt8])] = [:]
            var largeErrors = 0
            for s in slabs {
                let d = rng.bytes(large * 512)
                guard let slot = try client.submit(type: VirtioBlock.typeOut, sector: s, data: d) else { throw HarnessError("no free request slot") }
                contents[slot] = (s, d)
            }
            var written: [(UInt64, [UInt8])] = []
            for x in try reapAll(contents.count, "QD16 large writes") {
                if x.status != VirtioBlock.statusOK { largeErrors += 1 } else if let w = contents[x.slot] { written.append(w) }
            }
            for (s, d) in written { for i in 0..<large { model[s + UInt64(i)] = Array(d[(i * 512)..<((i + 1) * 512)]) } }
            var reads: [Int: UInt64] = [:]
            for (s, _) in written {
                guard let slot = try client.submit(type: VirtioBlock.typeIn, sector: s, readLength: large * 512) else { throw HarnessError("no free request slot") }
                reads[slot] = s
            }
            mismatches = 0
            for x in try reapAll(reads.count, "QD16 large reads") {
                guard let s = reads[x.slot] else { continue }
                if x.status != VirtioBlock.statusOK { largeErrors += 1; continue }
                verify(s, try client.harness.memory.readBytes(at: client.slots[x.slot].data, count: large * 512))
            }
            report.check("large writes and reads at QD16 match", largeErrors == 0 && mismatches == 0 && written.count == slabs.count,
                         "\(slabs.count) of 128 KiB, \(largeErrors) errors, \(mismatches) mismatched sectors")

            report.check("flush", try client.flush() == VirtioBlock.statusOK)

            if client.harness.ackedFeatures & VirtioBlock.featureWriteZeroes != 0 {
                let (start, sectors) = randomExtent()
                let status = try client.rangeRequest(type: VirtioBlock.typeWriteZeroes, [(start, UInt32(sectors))])
                let r = try client.read(sector: start, count: sectors * 512)
                report.check("write-zeroes reads back as zeros", status == VirtioBlock.statusOK && r.data.allSatisfy { $0 == 0 }, "status \(status)")
                for i in 0..<sectors { model[start + UInt64(i)] = [UInt8](repeating: 0, count: 512) }
            }
            if client.harness.ackedFeatures & VirtioBlock.featureDiscard != 0 {
                let (start, sectors) = randomExtent()
                let status = try client.rangeRequest(type: VirtioBlock.typeDiscard, [(start, UInt32(sectors))])
                report.check("discard answers OK", status == VirtioBlock.statusOK, "status \(status)")
                for i in 0..<sectors { model.removeValue(forKey: start + UInt64(i)) } // content undefined after discard
            }
            report.check("flush before restart", try client.flush() == VirtioBlock.statusOK)

            // A new session (as after a frontend restart) sees everything.
            try client.restartSession()
            mismatches = 0
            var checked = 0
            for sector in model.keys.sorted() {
                let r = try client.read(sector: sector, count: 512)
                checked += 1
                if r.status != VirtioBlock.statusOK || r.data != model[sector] { mismatches += 1 }
            }
            report.check("read-back after session restart", mismatches == 0, "\(checked) sectors checked, \(mismatches) mismatched")
            client = client // keep alive
        }
        report.summary("integrity")
    }
}
