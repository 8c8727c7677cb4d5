import ApusSys
import Synchronization

/// The host side of COM1: buffers what the guest transmits (vCPU threads
/// never block on a slow console), and moves bytes between the UART and the
/// configured backend on the main loop.
final class SerialConsole: SerialOutput, @unchecked Sendable {
    // SAFETY (Sendable): `pending` is a Mutex; the descriptors and loop state
    // are only touched on the main-loop thread.
    /// Output kept while the backend cannot take it; the oldest bytes go first.
    static let bufferCapacity = 1 << 20

    private let pending = Mutex<[UInt8]>([])
    private let dropped = Atomic<UInt64>(0)
    /// Signalled when output becomes pending.
    let ready: EventFD
    weak var uart: Serial8250?

    private let mode: SerialMode
    private var input: FileDescriptor?
    private var output: FileDescriptor?
    private var outputIsTerminal = false
    private var listener: UnixListener?
    private var client: UnixSocket?
    private var rawTerminal: RawTerminal?
    private var ptyController: OwnedDescriptor?
    private var restoreStdoutBlocking = false
    private var inputThrottled = false
    private var waitingForWritable = false
    private weak var loop: EventLoop?

    init(mode: SerialMode) throws(MachineError) {
        self.mode = mode
        do {
            ready = try EventFD()
        } catch {
            throw .system(error.description)
        }
    }

    /// Called on vCPU threads for every transmitted byte.
    func transmit(_ byte: UInt8) {
        let wasEmpty = pending.withLock { buffer -> Bool in
            let wasEmpty = buffer.isEmpty
            if buffer.count >= Self.bufferCapacity {
                buffer.removeFirst(buffer.count / 4)
                dropped.add(UInt64(Self.bufferCapacity / 4), ordering: .relaxed)
            }
            buffer.append(byte)
            return wasEmpty
        }
        if wasEmpty { ready.signal() }
    }

    /// Opens the backend and registers it with `loop`. Returns a line to
    /// print for the user (the pty path), if any.
    func attach(to loop: EventLoop) throws(MachineError) -> String? {
        self.loop = loop
        var note: String? = nil
        do {
            switch mode {
            case .stdio:
                input = .standardInput
                output = .standardOutput
                outputIsTerminal = FileDescriptor.standardOutput.isTerminal
                rawTerminal = RawTerminal(fd: .standardInput)
                if !outputIsTerminal {
                    try? FileDescriptor.standardOutput.setNonBlocking(true)
                    restoreStdoutBlocking = true
                }
            case .pty:
                let pty = try PseudoTerminal.open()
                ptyController = OwnedDescriptor(pty.controller)
                try pty.controller.setNonBlocking(true)
                input = pty.controller
                output = pty.controller
                note = "serial console on \(pty.path)"
            case .file(let path):
                output = try FileDescriptor.open(path, [.writeOnly, .create, .append])
            case .unix(let path):
                let l = try UnixListener(path: path, mode: 0o600)
                try l.fd.setNonBlocking(true)
                listener = l
                try loop.register(l.fd) { [weak self] _ in self?.acceptClient() }
            case .none:
                break
            }
            if let input {
                if !Self.isPollable(input) {
                    // A regular file or /dev/null cannot be polled: no console input.
                    self.input = nil
                } else {
                    try loop.register(input) { [weak self] events in self?.readInput(events) }
                }
            }
            try loop.register(ready.fd) { [weak self] _ in
                self?.ready.drain()
                self?.flush()
            }
        } catch let e as SystemCallError {
            throw .system("serial \(mode): \(e)")
        } catch let e as Errno {
            throw .system("serial \(mode): \(e)")
        } catch {
            throw .system("serial \(mode): \(error)")
        }
        return note
    }

    /// Whether epoll can watch `fd` (pipes, sockets, terminals; not files or /dev/null).
    static func isPollable(_ fd: FileDescriptor) -> Bool {
        guard let probe = try? Epoll() else { return false }
        do {
            try probe.add(fd, events: .readable, token: 0)
            return true
        } catch {
            return false
        }
    }

    private func acceptClient() {
        guard let listener, let socket = try? listener.accept() else { return }
        if let old = client {
            loop?.unregister(old.fd)
            old.shutdown()
        }
        try? socket.fd.setNonBlocking(true)
        client = socket
        input = socket.fd
        output = socket.fd
        _ = try? loop?.register(socket.fd) { [weak self] events in self?.readInput(events) }
        flush()
    }

    private func dropClient() {
        guard let c = client else { return }
        loop?.unregister(c.fd)
        client = nil
        input = nil
        output = nil
        waitingForWritable = false
    }

    /// Moves console input into the UART's receive buffer.
    private func readInput(_ events: Epoll.Events) {
        if events.contains(.writable), waitingForWritable {
            flush()
        }
        guard events.contains(.readable) || events.contains(.hangup) || events.contains(.error) else { return }
        guard let input, let uart else { return }
        let space = uart.receiveSpace
        if space == 0 {
            throttleInput()
            return
        }
        var buffer = [UInt8](repeating: 0, count: min(space, 4096))
        let n = buffer.withUnsafeMutableBytes { b in (try? input.read(into: b)) ?? -1 }
        if n > 0 {
            uart.receive(buffer[0..<n])
        } else if n == 0 || (events.contains(.hangup) && n < 0) {
            // End of input: a client left, or stdin reached EOF.
            if client != nil {
                dropClient()
            } else if mode != .pty {
                loop?.unregister(input)
                self.input = nil
            }
        }
    }

    /// Stops polling input until the guest drains the UART (retried by timer).
    private func throttleInput() {
        guard !inputThrottled, let input, let loop else { return }
        inputThrottled = true
        loop.modify(input, events: waitingForWritable ? .writable : [])
        loop.after(milliseconds: 10) { [weak self] in
            guard let self, let input = self.input else { return }
            self.inputThrottled = false
            self.loop?.modify(input, events: self.waitingForWritable ? [.readable, .writable] : .readable)
        }
    }

    /// Writes pending output to the backend.
    func flush() {
        guard let output else {
            if case .none = mode { pending.withLock { $0.removeAll() } }
            return
        }
        let bytes = pending.withLock { b -> [UInt8] in
            let out = b
            b.removeAll(keepingCapacity: true)
            return out
        }
        guard !bytes.isEmpty else { return }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { b in
                (try? output.write(UnsafeRawBufferPointer(rebasing: b[written...]))) ?? -1
            }
            if n <= 0 { break }
            written += n
        }
        if written < bytes.count {
            let rest = bytes[written...]
            pending.withLock { $0.insert(contentsOf: rest, at: 0) }
            if client != nil || mode == .stdio || mode == .pty {
                if Errno.current == .wouldBlock {
                    waitingForWritable = true
                    loop?.modify(output, events: input == output ? [.readable, .writable] : .writable)
                    if input != output {
                        _ = try? loop?.register(output, events: .writable) { [weak self] _ in self?.flush() }
                    }
                } else if client != nil {
                    dropClient()
                }
            }
        } else if waitingForWritable {
            waitingForWritable = false
            if input == output { loop?.modify(output, events: .readable) } else { loop?.unregister(output) }
        }
    }

    /// Bytes dropped because the backend could not keep up.
    var droppedBytes: UInt64 { dropped.load(ordering: .relaxed) }

    /// Final flush (blocking) and terminal restore.
    func close() {
        if let output, !outputIsTerminal { try? output.setNonBlocking(false) }
        flush()
        rawTerminal?.restore()
        if restoreStdoutBlocking { try? FileDescriptor.standardOutput.setNonBlocking(false) }
        if case .file = mode, let output { output.close() }
    }
}
