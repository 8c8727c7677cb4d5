import ApusSys

/// A backend's listening socket: accepts one frontend at a time and runs a
/// session for it on the calling thread; when the frontend goes away the
/// next one may connect (apus-hv reconnects this way after a restart).
public final class VhostUserBackendServer: @unchecked Sendable {
    // SAFETY (Sendable): `current` is guarded by `lock`.
    public let listener: UnixListener
    public let device: any VhostUserDeviceBackend
    public let path: String
    private let lock = ConditionLock()
    private var current: VhostUserBackendSession?
    private var stopped = false
    /// Called with each session's end reason (for logging).
    public var onSessionEnd: (@Sendable (VhostUserError) -> Void)?

    public init(path: String, device: any VhostUserDeviceBackend) throws(SystemCallError) {
        listener = try UnixListener(path: path, mode: 0o600)
        self.device = device
        self.path = path
    }

    /// Serves frontends until ``stop()``.
    public func run() {
        while !lock.withLock({ stopped }) {
            let socket: UnixSocket?
            do {
                socket = try listener.accept()
            } catch {
                if lock.withLock({ stopped }) { return }
                Clock.sleep(nanoseconds: 10_000_000)
                continue
            }
            guard let socket else { continue }
            let session = VhostUserBackendSession(connection: VhostUserConnection(socket: socket), device: device, label: path)
            lock.withLock { current = session }
            let reason = session.run()
            lock.withLock { current = nil }
            onSessionEnd?(reason)
        }
    }

    /// Ends the current session and stops accepting.
    public func stop() {
        let s = lock.withLock { () -> VhostUserBackendSession? in
            stopped = true
            return current
        }
        s?.connection.close()
        listener.fd.shutdownListening()
    }
}
