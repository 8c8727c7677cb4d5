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

    public init(dispatcher: Dispatcher, threads: Int = 1) {
        self.dispatcher = dispatcher
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// Binds a socket at `path`; connections through it are read-only if `readOnly`.
    public func listen(path: String, readOnly: Bool, mode: mode_t) async throws {
        let dispatcher = self.dispatcher
        let executors = self.executors
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let client = Client(channel: channel, dispatcher: dispatcher, readOnly: readOnly, executor: executors.executor(for: channel.eventLoop))
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(PacketDecoder()),
                        MessageToByteHandler(PacketEncoder()),
                        RPCHandler(client: client),
                    ])
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
            .get()
        chmod(path, mode)
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
