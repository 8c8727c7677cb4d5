import VirtioSpec
import GuestMemory
import Virtqueue

/// A guest buffer range that data moves through.
public struct IOSegment: Equatable, Sendable {
    public var address: GuestAddress
    public var length: UInt32
    public init(address: GuestAddress, length: UInt32) { self.address = address; self.length = length }
}

/// One discard / write-zeroes range.
public struct BlockRange: Equatable, Sendable {
    public var sector: UInt64
    public var sectors: UInt32
    public var flags: UInt32
}

/// A virtio-blk request parsed from a descriptor chain (§5.2.6): every field
/// copied out of guest memory and checked against the device's size.
public struct BlockRequest: Equatable, Sendable {
    public enum Operation: Equatable, Sendable {
        case read(sector: UInt64, into: [IOSegment])
        case write(sector: UInt64, from: [IOSegment])
        case flush
        case getID(into: [IOSegment])
        case discard([BlockRange])
        case writeZeroes([BlockRange])
        /// The request type is unknown or not offered: answer UNSUPP.
        case unsupported(type: UInt32)
        /// The request is malformed or out of range: answer IOERR.
        case invalid(String)
    }

    public let head: UInt16
    public let operation: Operation
    /// Where the status byte goes.
    public let status: GuestAddress
    /// Data bytes the device writes into the chain (reads, GET_ID).
    public var dataLength: UInt64 {
        switch operation {
        case .read(_, let segs), .getID(let segs): return segs.reduce(0) { $0 + UInt64($1.length) }
        default: return 0
        }
    }

    /// A chain that cannot even carry a status byte: it is returned with
    /// used length 0 (there is nowhere to report the error).
    public struct Unanswerable: Error, Equatable, Sendable {
        public let head: UInt16
        public let reason: String
    }

    /// What the device supports; requests outside it are refused.
    public struct Limits: Equatable, Sendable {
        public var capacitySectors: UInt64
        public var readOnly: Bool
        public var discard: Bool
        public var writeZeroes: Bool
        public var maxDiscardSegments: UInt32
        public init(capacitySectors: UInt64, readOnly: Bool = false, discard: Bool = true, writeZeroes: Bool = true,
                    maxDiscardSegments: UInt32 = VirtioBlock.maxDiscardSegments) {
            self.capacitySectors = capacitySectors; self.readOnly = readOnly
            self.discard = discard; self.writeZeroes = writeZeroes; self.maxDiscardSegments = maxDiscardSegments
        }
    }

    /// Parses `chain`. Throws only when no status byte exists; every other
    /// problem becomes `.invalid` / `.unsupported` answered through the status.
    public static func parse(_ chain: DescriptorChain, memory: GuestMemory, limits: Limits) throws(Unanswerable) -> BlockRequest {
        // The status byte is the last byte of the last (device-writable) buffer.
        guard let last = chain.buffers.last, last.isWriteOnly, last.length >= 1 else {
            throw Unanswerable(head: chain.head, reason: "no device-writable status byte")
        }
        let status = GuestAddress(last.address.raw + UInt64(last.length) - 1)
        func answer(_ op: Operation) -> BlockRequest { BlockRequest(head: chain.head, operation: op, status: status) }

        let readable = Array(chain.readable)
        // Device-writable data: every writable byte except the status byte.
        var writableData = Array(chain.writable)
        if let l = writableData.last {
            if l.length == 1 { writableData.removeLast() } else { writableData[writableData.count - 1].length -= 1 }
        }

        let header: [UInt8]
        do {
            header = try ChainIO.read(memory, readable, count: 16)
        } catch {
            return answer(.invalid("header unreadable: \(error)"))
        }
        guard header.count == 16 else { return answer(.invalid("request header is \(header.count) bytes")) }
        let type = UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24
        var sector: UInt64 = 0
        for i in 0..<8 { sector |= UInt64(header[8 + i]) << (8 * UInt64(i)) }
        let readableData = segments(readable, skipping: 16)

        switch type {
        case VirtioBlock.typeIn:
            let segs = segments(writableData, skipping: 0)
            if let problem = checkRange(sector: sector, bytes: total(segs), limits: limits) { return answer(.invalid(problem)) }
            guard total(segs) > 0 else { return answer(.invalid("read without a data buffer")) }
            return answer(.read(sector: sector, into: segs))
        case VirtioBlock.typeOut:
            if limits.readOnly { return answer(.invalid("write to a read-only device")) }
            if let problem = checkRange(sector: sector, bytes: total(readableData), limits: limits) { return answer(.invalid(problem)) }
            guard total(readableData) > 0 else { return answer(.invalid("write without a data buffer")) }
            return answer(.write(sector: sector, from: readableData))
        case VirtioBlock.typeFlush:
            return answer(.flush)
        case VirtioBlock.typeGetID:
            let segs = segments(writableData, skipping: 0)
            guard total(segs) >= 1 else { return answer(.invalid("GET_ID without a buffer")) }
            return answer(.getID(into: segs))
        case VirtioBlock.typeDiscard, VirtioBlock.typeWriteZeroes:
            let isDiscard = type == VirtioBlock.typeDiscard
            guard isDiscard ? limits.discard : limits.writeZeroes else { return answer(.unsupported(type: type)) }
            if limits.readOnly { return answer(.invalid("\(isDiscard ? "discard" : "write-zeroes") on a read-only device")) }
            let bytes = total(readableData)
            guard bytes > 0, bytes % UInt64(VirtioBlock.segmentSize) == 0 else {
                return answer(.invalid("segment list of \(bytes) bytes"))
            }
            let count = bytes / UInt64(VirtioBlock.segmentSize)
            guard count <= UInt64(limits.maxDiscardSegments) else { return answer(.invalid("\(count) segments (max \(limits.maxDiscardSegments))")) }
            let raw: [UInt8]
            do {
                raw = try ChainIO.read(memory, readable, offset: 16, count: Int(bytes))
            } catch {
                return answer(.invalid("segments unreadable: \(error)"))
            }
            var ranges: [BlockRange] = []
            for i in 0..<Int(count) {
                let o = i * VirtioBlock.segmentSize
                var s: UInt64 = 0
                for k in 0..<8 { s |= UInt64(raw[o + k]) << (8 * UInt64(k)) }
                let n = UInt32(raw[o + 8]) | UInt32(raw[o + 9]) << 8 | UInt32(raw[o + 10]) << 16 | UInt32(raw[o + 11]) << 24
                let f = UInt32(raw[o + 12]) | UInt32(raw[o + 13]) << 8 | UInt32(raw[o + 14]) << 16 | UInt32(raw[o + 15]) << 24
                if let problem = checkRange(sector: s, bytes: UInt64(n) * VirtioBlock.sectorSize, limits: limits) {
                    return answer(.invalid(problem))
                }
                // Discard takes no flags; write-zeroes only "unmap".
                if isDiscard ? f != 0 : f & ~VirtioBlock.writeZeroesUnmap != 0 {
                    return answer(.unsupported(type: type))
                }
                ranges.append(BlockRange(sector: s, sectors: n, flags: f))
            }
            return answer(isDiscard ? .discard(ranges) : .writeZeroes(ranges))
        default:
            return answer(.unsupported(type: type))
        }
    }

    static func total(_ segs: [IOSegment]) -> UInt64 { segs.reduce(0) { $0 + UInt64($1.length) } }

    /// The buffers' bytes after the first `skip` bytes, as segments.
    static func segments(_ buffers: [DescriptorBuffer], skipping skip: UInt64) -> [IOSegment] {
        var out: [IOSegment] = []
        var skip = skip
        for b in buffers {
            if skip >= UInt64(b.length) { skip -= UInt64(b.length); continue }
            let len = UInt32(UInt64(b.length) - skip)
            if len > 0 { out.append(IOSegment(address: GuestAddress(b.address.raw + skip), length: len)) }
            skip = 0
        }
        return out
    }

    /// nil if `[sector, sector + bytes)` is sector-aligned and inside the device.
    static func checkRange(sector: UInt64, bytes: UInt64, limits: Limits) -> String? {
        guard bytes % VirtioBlock.sectorSize == 0 else { return "length \(bytes) is not a multiple of 512" }
        let sectors = bytes / VirtioBlock.sectorSize
        let (end, overflow) = sector.addingReportingOverflow(sectors)
        guard !overflow, end <= limits.capacitySectors else {
            return "sectors \(sector)+\(sectors) beyond the end of the device (\(limits.capacitySectors) sectors)"
        }
        return nil
    }
}
