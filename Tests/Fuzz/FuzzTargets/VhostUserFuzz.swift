import ApusSys
import Virtqueue
import VhostUser

/// Fuzzes what a vhost-user peer controls: message headers and payloads,
/// and the backend session's state machine fed a stream of messages.
public enum VhostUserFuzz {
    final class NullDevice: VhostUserDeviceBackend, @unchecked Sendable {
        let features: UInt64 = Virtq.featureVersion1 | Virtq.featureEventIndex
        let protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .config, .multiQueue]
        let queueCount = 2
        let maxQueueSize: UInt16 = 256
        func readConfig(offset: Int, size: Int) -> [UInt8] { [UInt8](repeating: 0, count: max(0, min(size, 256))) }
        func writeConfig(offset: Int, bytes: [UInt8]) -> Bool { true }
        func featuresAcknowledged(_ features: UInt64) {}
        func startQueue(_ index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall) {}
        func stopQueue(_ index: Int) -> UInt16 { 0 }
        func sessionEnded() {}
    }

    public static func run(_ input: [UInt8]) {
        // Payload parsers on their own.
        _ = try? VhostUserMessage.parseHeader(Array(input.prefix(12)))
        _ = try? VringAddress(parsing: input)
        _ = try? VhostUserMemoryTable(parsing: input)
        _ = try? VhostUserConfig(parsing: input)
        _ = try? VhostUserPayload.parseVringState(input)

        // The session, fed the input as a message stream (no descriptors).
        guard let (a, b) = try? UnixSocket.pair() else { return }
        let session = VhostUserBackendSession(connection: VhostUserConnection(socket: b), device: NullDevice())
        var offset = 0
        while offset + 12 <= input.count {
            let header = Array(input[offset..<(offset + 12)])
            guard let (code, flags, size) = try? VhostUserMessage.parseHeader(header), offset + 12 + size <= input.count else { break }
            let payload = Array(input[(offset + 12)..<(offset + 12 + size)])
            offset += 12 + size
            do {
                try session.handle(VhostUserMessage(requestCode: code, flags: flags, payload: payload, fds: []))
            } catch {
                break
            }
            // Drain replies so the socket never fills.
            try? a.fd.setNonBlocking(true)
            while let r = try? a.receive(maxBytes: 4096), !r.bytes.isEmpty {}
        }
        session.end()
    }
}
