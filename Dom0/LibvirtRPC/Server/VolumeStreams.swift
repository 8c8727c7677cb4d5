import ApusSys
import DiskImage
import NIOCore
import Toolstack

/// The data streams of vol-upload and vol-download. Each runs on a thread
/// of its own (file I/O never runs on the connection's event loop); an
/// upload stops reading the socket while too much is queued for its file,
/// a download waits for the socket to take what it sent.
final class VolumeTransfer: @unchecked Sendable {
    // SAFETY (Sendable): mutable state is guarded by `lock`; the thread owns the file.
    enum Piece {
        case data([UInt8])
        case hole(UInt64)
        case finish
        case abort
    }

    let serial: UInt32
    let procedure: Int32
    private let lock = ConditionLock()
    private var queue: [Piece] = []
    private var head = 0
    private var queuedBytes = 0
    private var stopped = false
    private var paused = false
    private weak var client: Client?
    private var thread: OSThread?

    /// An upload stops reading its socket above this many queued bytes, and resumes below half of it.
    static let highWater = 32 << 20

    init(serial: UInt32, procedure: Int32, client: Client) {
        self.serial = serial
        self.procedure = procedure
        self.client = client
    }

    private func header(_ type: PacketHeader.MessageType, _ status: PacketHeader.Status) -> PacketHeader {
        PacketHeader(program: PacketHeader.remoteProgram, version: 1, procedure: procedure, type: type, serial: serial, status: status)
    }

    private func fail(_ message: String) {
        client?.send(Packet(header: header(.stream, .error), payload: encodeError(.failed(message))))
    }

    // MARK: upload

    /// Starts the writer thread; `done` runs when the stream has ended,
    /// however it ended, and before the client hears of the end (so the
    /// volume is free again when its next call arrives).
    func startUpload(_ writer: FileStreamWriter, done: @escaping @Sendable () async -> Void) {
        let t = OSThread(name: "vol-upload") { [self] in
            let reply = runUpload(writer)
            // Take no more data while `done` runs.
            lock.withLock { stopped = true }
            Task { [self] in
                await done()
                end(reply: reply)
            }
        }
        thread = t
        do {
            try t.start()
        } catch {
            fail("cannot start the upload: \(error)")
            Task { [self] in
                await done()
                end(reply: false)
            }
        }
    }

    /// A packet of the client's for this upload (from the event loop).
    func received(_ piece: Piece) {
        let pause = lock.withLock { () -> Bool in
            guard !stopped else { return false }
            if case .data(let b) = piece { queuedBytes += b.count }
            queue.append(piece)
            lock.broadcast()
            if queuedBytes > Self.highWater && !paused {
                paused = true
                return true
            }
            return false
        }
        if pause { client?.setReading(false) }
    }

    /// Writes what arrives until the stream ends; returns whether the end
    /// is the client's finish or abort, to be confirmed with STREAM OK.
    private func runUpload(_ writer: FileStreamWriter) -> Bool {
        while true {
            let (piece, resume) = lock.withLock { () -> (Piece, Bool) in
                while head == queue.count && !stopped { lock.wait() }
                if stopped && head == queue.count { return (.abort, false) }
                let p = queue[head]
                head += 1
                if head == queue.count { queue.removeAll(keepingCapacity: true); head = 0 }
                if case .data(let b) = p { queuedBytes -= b.count }
                let resume = paused && queuedBytes < Self.highWater / 2
                if resume { paused = false }
                return (p, resume)
            }
            if resume { client?.setReading(true) }
            do throws(DiskImageError) {
                switch piece {
                case .data(let b): try writer.write(b)
                case .hole(let n): try writer.hole(n)
                case .finish:
                    try writer.finish()
                    return true
                case .abort:
                    return !lock.withLock { stopped }
                }
            } catch {
                fail("cannot write volume \(writer.path): \(error)")
                return false
            }
        }
    }

    /// The stream is over: confirm the client's finish or abort with STREAM OK.
    private func end(reply: Bool) {
        let wasPaused = lock.withLock { () -> Bool in
            stopped = true
            queue.removeAll()
            head = 0
            defer { paused = false }
            return paused
        }
        if wasPaused { client?.setReading(true) }
        if reply { client?.send(Packet(header: header(.stream, .ok))) }
        client?.transferEnded(serial: serial)
    }

    // MARK: download

    func startDownload(_ reader: FileStreamReader) {
        let t = OSThread(name: "vol-download") { [self] in runDownload(reader) }
        thread = t
        do {
            try t.start()
        } catch {
            fail("cannot start the download: \(error)")
        }
    }

    /// Packets a download keeps queued on the socket (4 MiB): it waits for
    /// the oldest to be written before sending another, so the socket never
    /// runs dry and NIO's buffers never grow past this.
    static let downloadWindow = 16

    private func runDownload(_ reader: FileStreamReader) {
        var inFlight: [EventLoopFuture<Void>] = []
        while !lock.withLock({ stopped }) {
            guard let client else { return }
            let packet: Packet
            var last = false
            do throws(DiskImageError) {
                switch try reader.next(maxChunk: PacketHeader.streamChunk) {
                case .data(let b):
                    packet = Packet(header: header(.stream, .continue), payload: b)
                case .hole(let n):
                    var hole = StreamHole()
                    hole.length = Int64(clamping: n)
                    packet = Packet(header: header(.streamHole, .continue), payload: hole.xdr)
                case .end:
                    // EOF is an empty CONTINUE; the client then finishes the stream.
                    packet = Packet(header: header(.stream, .continue))
                    last = true
                }
            } catch {
                fail("cannot read the volume: \(error)")
                return
            }
            inFlight.append(client.channel.writeAndFlush(packet))
            if inFlight.count > Self.downloadWindow { try? inFlight.removeFirst().wait() }
            if last { return }
        }
    }

    /// The client finished or aborted a download: confirm, stop reading.
    func closeDownload() {
        lock.withLock { stopped = true }
        client?.send(Packet(header: header(.stream, .ok)))
        client?.transferEnded(serial: serial)
    }

    /// The connection closed.
    func disconnect() {
        lock.withLock {
            if !stopped { queue.append(.abort) }
            stopped = true
            lock.broadcast()
        }
    }
}

extension Client {
    /// VOL_UPLOAD: the stream's data follows the call's reply.
    func openUpload(serial: UInt32, procedure: Int32, writer: FileStreamWriter, done: @escaping @Sendable () async -> Void) {
        let t = VolumeTransfer(serial: serial, procedure: procedure, client: self)
        addTransfer(t)
        t.startUpload(writer, done: done)
    }

    /// VOL_DOWNLOAD: registered before the reply, started after it.
    func prepareDownload(serial: UInt32, procedure: Int32) {
        addTransfer(VolumeTransfer(serial: serial, procedure: procedure, client: self))
    }

    func startDownload(serial: UInt32, reader: FileStreamReader) {
        transfer(serial)?.startDownload(reader)
    }

    /// Stops or resumes reading the socket (an upload's backpressure).
    func setReading(_ on: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: on).whenComplete { _ in }
    }
}
