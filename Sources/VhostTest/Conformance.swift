import VirtioSpec
import Virtqueue
import VhostUser

/// `conformance`: feature and protocol negotiation, config space, queue
/// setup, stop/restart (GET/SET_VRING_BASE) and session teardown.
public enum Conformance {
    public static func run(socket: String, report: Report) {
        report.attempt("connect and negotiate") {
            let client = try BlockClient(socket: socket)
            defer { client.harness.close() }
            let h = client.harness
            report.check("offers VIRTIO_F_VERSION_1", h.backendFeatures & Virtq.featureVersion1 != 0,
                         "features 0x\(String(h.backendFeatures, radix: 16))")
            report.check("offers VHOST_USER_F_PROTOCOL_FEATURES", h.backendFeatures & vhostUserProtocolFeaturesBit != 0)
            report.check("negotiates REPLY_ACK", h.protocolFeatures.contains(.replyAck), "protocol 0x\(String(h.protocolFeatures.rawValue, radix: 16))")
            report.check("offers CONFIG (GET_CONFIG)", h.protocolFeatures.contains(.config))
            if h.protocolFeatures.contains(.multiQueue) {
                let n = try h.maxQueues()
                report.check("GET_QUEUE_NUM >= 1", n >= 1, "\(n) queues")
            }
            report.check("config: capacity > 0", client.capacitySectors > 0, "\(client.capacitySectors) sectors")
            if h.ackedFeatures & VirtioBlock.featureBlockSize != 0 {
                let bs = client.le32(client.config, 20)
                report.check("config: blk_size is a power of two >= 512", bs >= 512 && bs & (bs - 1) == 0, "\(bs)")
            }
            if h.ackedFeatures & VirtioBlock.featureSegMax != 0 {
                report.check("config: seg_max >= 1", client.le32(client.config, 12) >= 1)
            }

            let first = try client.read(sector: 0, count: 4096)
            report.check("queue setup: read sector 0", first.status == VirtioBlock.statusOK && first.data.count == 4096, "status \(first.status)")
            let indirect = try client.run(type: VirtioBlock.typeIn, sector: 8, readLength: 4096, indirect: true)
            report.check("indirect descriptors", h.ackedFeatures & Virtq.featureIndirectDescriptors == 0 || indirect.status == VirtioBlock.statusOK,
                         "status \(indirect.status)")
            let id = try client.getID()
            report.check("GET_ID answers OK or UNSUPP", id.status == VirtioBlock.statusOK || id.status == VirtioBlock.statusUnsupported,
                         "status \(id.status) id \"\(id.id)\"")
            let beyond = try client.read(sector: client.capacitySectors, count: 512)
            report.check("read past the end answers IOERR", beyond.status == VirtioBlock.statusIOError, "status \(beyond.status)")
            let unknown = try client.run(type: 0x7777, sector: 0)
            report.check("unknown request type answers UNSUPP", unknown.status == VirtioBlock.statusUnsupported, "status \(unknown.status)")
            if client.readOnly {
                let w = try client.write(sector: 0, [UInt8](repeating: 1, count: 512))
                report.check("write to a read-only device answers IOERR", w == VirtioBlock.statusIOError, "status \(w)")
            }
            if h.ackedFeatures & VirtioBlock.featureFlush != 0 {
                report.check("flush answers OK", try client.flush() == VirtioBlock.statusOK)
            }

            // Stop the ring: the backend reports how far it got.
            let submitted = client.queue.driver.availIndex
            let base = try h.stopQueue(0)
            report.check("GET_VRING_BASE returns the next avail index", base == submitted, "got \(base), expected \(submitted)")
            // Restart from there: used.idx continues where it was.
            try h.startQueue(client.queue, base: base)
            let again = try client.read(sector: 0, count: 512)
            report.check("ring restarts from SET_VRING_BASE", again.status == VirtioBlock.statusOK)
            report.check("used index continues after restart", try client.queue.driver.usedIndex() == submitted &+ 1)

            if h.protocolFeatures.contains(.multiQueue), try h.maxQueues() >= 2 {
                try client.restartSession(queues: 2)
                let r = try client.run(type: VirtioBlock.typeIn, sector: 0, readLength: 512, queue: client.harness.queues[1])
                report.check("second queue serves requests", r.status == VirtioBlock.statusOK, "status \(r.status)")
            }

            try client.restartSession()
            let afterReconnect = try client.read(sector: 0, count: 512)
            report.check("new session after disconnect", afterReconnect.status == VirtioBlock.statusOK)
        }
        report.summary("conformance")
    }
}
