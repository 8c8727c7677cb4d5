import ApusSys
import NIOCore
import NIOPosix
import Toolstack
#if canImport(Glibc)
import Glibc
#endif

/// apusd's two listening sockets, as libvirt's modular daemons have them:
/// the read-write socket (0600, root only) and the read-only socket (0666,
/// every procedure that changes something is refused).
public final class RPCServer: Sendable {
    public let dispatcher: Dispatcher
    let group: MultiThreadedEventLoopGroup
    private let channels = LockedBox<[Channel]>([])
    /// One task executor per event loop (its connections share it).
    let executors = LoopExecutors()

    /// Connections open on all sockets, and the most allowed (libvirt's
    /// max_clients): one more is closed at once, so a flood of connections
    /// cannot take every descriptor apusd has.
    private let connections = LockedBox(0)
    public let maxClients: Int

    public init(dispatcher: Dispatcher, threads: Int = 1, maxClients: Int = 5000) {
        self.dispatcher = dispatcher
        self.maxClients = maxClients
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// Binds a socket at `path`; connections through it are read-only if
    /// `readOnly`. The socket is bound in a fresh directory (mode 0700) only
    /// apusd's user can enter, given `mode` there and then renamed to `path`, so it never
    /// exists at `path` with another mode (binding in place and then
    /// chmod'ing let a local user connect in between, whatever the umask).
    /// `group`, when given, owns it (libvirtd.conf's unix_sock_group).
    public func listen(path: String, readOnly: Bool, mode: mode_t, group socketGroup: UInt32? = nil) async throws {
        let parent = FileSystem.directory(of: path)
        let privateDirectory: String
        do {
            privateDirectory = try FileSystem.makeTemporaryDirectory(in: parent, prefix: ".apusd-bind-")
        } catch {
            throw SystemCallError("mkdtemp in \(parent)", error)
        }
        defer { try? FileSystem.removeDirectory(privateDirectory) }
        let bound = privateDirectory + "/sock"
        let dispatcher = self.dispatcher
        let executors = self.executors
        let connections = self.connections, maxClients = self.maxClients
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            // Replies and events a client does not read: past the high mark
            // the channel is unwritable (calls wait, events end the connection).
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 1 << 20, high: Client.maxUnread))
            .childChannelInitializer { channel in
                let admitted = connections.withValue { n in
                    guard n < maxClients else { return false }
                    n += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in connections.withValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    let client = Client(channel: channel, dispatcher: dispatcher, readOnly: readOnly, executor: executors.executor(for: channel.eventLoop))
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(PacketDecoder(maxMessage: { client.isOpen ? PacketHeader.maxMessage : PacketDecoder.maxBeforeOpen })),
                        MessageToByteHandler(PacketEncoder()),
                        RPCHandler(client: client),
                    ])
                }
            }
            .bind(unixDomainSocketPath: bound)
            .get()
        do {
            try FileSystem.setPermissions(bound, mode: UInt32(mode), group: socketGroup)
            try FileSystem.rename(bound, path)
        } catch {
            try? FileSystem.unlink(bound)
            try? await channel.close()
            throw SystemCallError("listen on \(path)", error)
        }
        channels.withValue { $0.append(channel) }
    }

    /// Stops listening and drops every client (domains keep running).
    public func shutdown() async {
        let all = channels.withValue { c in defer { c.removeAll() }; return c }
        for c in all { try? await c.close() }
        try? await group.shutdownGracefully()
    }
}

/// Feeds decoded packets to the connection's `Client`.
final class RPCHandler: ChannelInboundHandler {
    typealias InboundIn = Packet
    let client: Client

    init(client: Client) { self.client = client }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        client.disconnected()
        context.fireChannelInactive()
    }

    /// A packet that cannot be framed (bad length, bad header): libvirt
    /// closes such a connection; the daemon and other clients carry on.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}


/// The task executor of each event loop, made on first use.
final class LoopExecutors: Sendable {
    private let table = LockedBox<[ObjectIdentifier: EventLoopTaskExecutor]>([:])

    func executor(for loop: any NIOCore.EventLoop) -> EventLoopTaskExecutor {
        table.withValue { t in
            let key = ObjectIdentifier(loop as AnyObject)
            if let e = t[key] { return e }
            let e = EventLoopTaskExecutor(loop)
            t[key] = e
            return e
        }
    }
}
