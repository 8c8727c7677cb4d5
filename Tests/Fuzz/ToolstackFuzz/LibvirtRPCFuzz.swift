#if canImport(Glibc)
import Glibc
#endif
import ApusSys
import LibvirtRPC
import Toolstack

/// libvirt's remote protocol from an untrusted client: the packet and XDR
/// decoders on their own, then the whole server (NIO framing, the client
/// state machine, every procedure's argument decoding and the toolstack
/// behind it) fed the input as one client's byte stream. The server runs
/// in this process over a throwaway root with no hypervisor binaries, so a
/// "start" fails cleanly instead of booting anything.
public enum LibvirtRPCFuzz {
    /// Returns whether the server answered the sentinel call that follows
    /// the input (it must, unless the input broke the framing).
    @discardableResult
    public static func run(_ input: [UInt8]) -> Bool {
        decoders(input)
        guard let server = Server.shared else { return false }
        return server.feed(input)
    }

    /// The parsers a packet meets before dispatch.
    static func decoders(_ input: [UInt8]) {
        if let packet = try? Packet.decode(input) {
            _ = packet.encoded()
            var r = XDRReader(packet.payload)
            _ = try? r.optionalString()
            _ = try? r.string()
        }
        var r = XDRReader(input)
        while (try? r.uint()) != nil {
            _ = try? r.opaque(max: 1 << 16)
            _ = try? r.hyper()
        }
    }

    final class Server: @unchecked Sendable {
        let paths: ApusPaths
        let rpc: RPCServer

        static let shared: Server? = {
            var template = Array("/tmp/apus-fuzz-rpc-XXXXXX".utf8CString)
            guard let dir = mkdtemp(&template) else { return nil }
            let root = String(cString: dir)
            let paths = ApusPaths(root: root + "/root", binaries: root + "/no-binaries")
            guard (try? paths.create()) != nil, let hub = try? IOHub(), (try? hub.start()) != nil else { return nil }
            let manager = DomainManager(paths: paths, hub: hub)
            let rpc = RPCServer(dispatcher: Dispatcher(manager: manager, hub: hub))
            final class Started: @unchecked Sendable {
                let lock = ConditionLock()
                var listening: Bool?
            }
            let started = Started()
            Task(executorPreference: ToolstackExecutor.shared) {
                await manager.load()
                let ok = (try? await rpc.listen(path: paths.readWriteSocket, readOnly: false, mode: 0o600)) != nil
                started.lock.withLock { started.listening = ok; started.lock.broadcast() }
            }
            let ok = started.lock.withLock { () -> Bool in
                while started.listening == nil { started.lock.wait() }
                return started.listening ?? false
            }
            return ok ? Server(paths: paths, rpc: rpc) : nil
        }()

        init(paths: ApusPaths, rpc: RPCServer) {
            self.paths = paths
            self.rpc = rpc
        }

        /// Sends the complete frames of `input` (a bad length goes as is:
        /// the server must drop the connection), then a CONNECT_GET_TYPE
        /// sentinel, and reads until the sentinel's answer, EOF or a short
        /// timeout: by then the server has handled the stream.
        func feed(_ input: [UInt8]) -> Bool {
            var end = 0
            while end + 4 <= input.count {
                let n = Int(UInt32(input[end]) << 24 | UInt32(input[end + 1]) << 16 | UInt32(input[end + 2]) << 8 | UInt32(input[end + 3]))
                if n < 28 || n > 32 << 20 { end = input.count; break }
                guard end + n <= input.count else { break }
                end += n
            }
            guard let socket = try? UnixSocket.connect(path: paths.readWriteSocket) else {
                fatalError("the protocol server stopped accepting connections")
            }
            socket.setReceiveTimeout(milliseconds: 300)
            let sentinelSerial: UInt32 = 0xFEED_FACE
            let sentinel = Packet(header: PacketHeader(program: PacketHeader.remoteProgram, version: 1, procedure: 3,
                                                       type: .call, serial: sentinelSerial, status: .ok), payload: [])
            guard (try? socket.sendAll(Array(input[0..<end]) + sentinel.encoded())) != nil else { return false }
            var buffer: [UInt8] = []
            while let r = try? socket.receive(maxBytes: 1 << 16, maxFDs: 0), !r.bytes.isEmpty {
                buffer += r.bytes
                var offset = 0
                while offset + 4 <= buffer.count {
                    let n = Int(UInt32(buffer[offset]) << 24 | UInt32(buffer[offset + 1]) << 16
                                | UInt32(buffer[offset + 2]) << 8 | UInt32(buffer[offset + 3]))
                    guard n >= 4, offset + n <= buffer.count else { break }
                    if let p = try? Packet.decode(Array(buffer[(offset + 4)..<(offset + n)])),
                       p.header.type == .reply, p.header.serial == sentinelSerial {
                        return true
                    }
                    offset += n
                }
                buffer.removeFirst(offset)
            }
            return false
        }
    }
}
