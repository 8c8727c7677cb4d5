// apus-blkback: Dom0's vhost-user-blk backend. Serves one disk image (raw
// file, block device, or qcow2 with its backing chain) to a frontend (apus-hv, QEMU, apus-vhost-test) over a Unix socket.
import ArgumentParser
import ApusControl
import ApusSys
import Sandbox
import BlockBackend
import DiskImage
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

struct BlockBackendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus-blkback",
        abstract: "Serve a disk image to a VM over vhost-user-blk.",
        discussion: """
        The backend listens on --socket; a frontend (apus-hv --disk vhost-user:SOCKET, \
        QEMU's vhost-user-blk-pci, apus-vhost-test) connects to it. When the frontend \
        disconnects the backend waits for the next one. With --control, `stats`, \
        `info` and `resize BYTES` on that socket return the device's counters, \
        its image and capacity, and grow the disk; `snapshot-create NAME SECONDS` \
        and `snapshot-delete NAME` take and delete a qcow2 image's internal \
        snapshots once the frontend stopped the rings.
        """)

    @Option(help: "vhost-user socket to listen on.")
    var socket: String

    @Option(help: "Disk image or block device.")
    var image: String

    @Option(help: "The image's format: raw or qcow2. Declared, never guessed from the file's contents.")
    var format: String = "raw"

    @Option(name: .customLong("allow-dir"), help: "A directory backing files may come from (repeatable; none given: anywhere). apusd passes its allowed_paths.")
    var allowedDirectories: [String] = []

    @Flag(help: "Refuse writes (VIRTIO_BLK_F_RO; writes complete with IOERR).")
    var readonly = false

    @Flag(help: "Open the image with O_DIRECT (bypass the host page cache).")
    var direct = false

    @Option(help: "Number of virtqueues, each served by its own thread.")
    var queues: Int = 1

    @Option(help: "Serial number reported by GET_ID (default: the image's file name).")
    var serial: String?

    @Option(help: "Control socket: `stats`, `info`, `resize BYTES`, `snapshot-create NAME SECONDS` and `snapshot-delete NAME` commands.")
    var control: String?

    @Flag(help: "Use synchronous I/O instead of io_uring.")
    var syncIO = false

    @Flag(help: "Run without the seccomp filter (debugging only; apusd never passes it).")
    var noSeccomp = false

    @Option(help: "Once the image is open, drop root for UID:GID (no capabilities) in an empty root that shows only each --jail-dir.")
    var jailUser: String?

    @Option(help: "A directory the jail keeps visible, at its own path (repeatable; the sockets' directory).")
    var jailDir: [String] = []

    @Option(help: "Microseconds each queue worker polls for new requests before sleeping (0: never poll).")
    var pollUs: UInt64 = 20

    static let ringsRunning = "the disk's rings are running: the frontend stops them first (apus-hv: save PATH held)"

    func validate() throws {
        guard (1...64).contains(queues) else { throw ValidationError("--queues must be between 1 and 64") }
        guard allowedDirectories.allSatisfy({ $0.hasPrefix("/") }) else { throw ValidationError("--allow-dir needs an absolute directory") }
        _ = try jail()
    }

    func jail() throws -> Jail? {
        guard let jailUser else {
            guard jailDir.isEmpty else { throw ValidationError("--jail-dir needs --jail-user") }
            return nil
        }
        do {
            return try Jail(owner: jailUser, visible: jailDir)
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        BackendLog.program = "apus-blkback"
        Signals.ignoreBrokenPipe()
        let jail = try jail()
        if jail != nil { try Jail.detachMounts() }
        let disk: BlockImage
        do {
            let declared = try DiskFormat(name: format)
            disk = try BlockImage(path: image, format: declared, readOnly: readonly, direct: direct, serial: serial,
                              allowed: allowedDirectories.isEmpty ? nil : AllowedPaths(allowedDirectories)) { warning in
                try? FileDescriptor.standardError.writeAll("apus-blkback: \(warning)\n")
            }
        } catch {
            throw ValidationError("\(error)")
        }
        // The image and its backing files are open: from here on the process
        // runs unprivileged and sees only its sockets' directory.
        try jail?.enter()
        let device = BlockDevice(image: disk, queues: queues, useURing: !syncIO)
        device.pollNanoseconds = pollUs * 1000
        let server: VhostUserBackendServer
        do {
            server = try VhostUserBackendServer(path: socket, device: device)
        } catch {
            throw ValidationError("\(error)")
        }
        server.onSessionEnd = { reason in
            if reason != .peerClosed { try? FileDescriptor.standardError.writeAll("apus-blkback: session ended: \(reason)\n") }
        }
        // Signals and the control socket on their own thread; the vhost-user
        // session runs on this one.
        let signals = try SignalFD(signals: [SIGTERM, SIGINT, SIGHUP])
        let controlPath = control
        let queueCount = queues
        // Both sockets are bound here, before the filter goes on.
        let loop = try EventLoop()
        var controlServer: ControlServer<BlockBackendControl.Command>? = nil
        if let controlPath {
                controlServer = try ControlServer(path: controlPath, loop: loop) { (c) throws(ControlError) -> any ControlReply in
                    func info() -> BlockBackendControl.Info {
                        .init(image: disk.path, capacity: disk.size, readOnly: disk.readOnly, queues: queueCount, direct: disk.direct,
                              inMemory: disk.inMemory)
                    }
                    switch c {
                    case .stats: return device.stats.snapshot()
                    case .info: return info()
                    case .resize(let bytes):
                        do {
                            try disk.resize(to: bytes)
                        } catch {
                            throw .refused("\(error)")
                        }
                        return info()
                    case .snapshotCreate(let name, let seconds):
                        guard device.runningQueues == 0 else { throw .refused(BlockBackendCommand.ringsRunning) }
                        do {
                            let s = try disk.createSnapshot(name: name, dateSeconds: seconds)
                            return BlockBackendControl.SnapshotTaken(id: s.id, name: s.name)
                        } catch {
                            throw .refused("\(error)")
                        }
                    case .snapshotDelete(let name):
                        guard device.runningQueues == 0 else { throw .refused(BlockBackendCommand.ringsRunning) }
                        do {
                            try disk.deleteSnapshot(name)
                        } catch {
                            throw .refused("\(error)")
                        }
                        return Acknowledged()
                    }
                }
        }
        _ = try loop.register(signals.fd) { _ in
            _ = signals.next()
            server.stop()
            loop.stop()
        }
        let handoff = ControlLoop(loop: loop, server: controlServer)
        let controlThread = OSThread(name: "blk-control") {
            try? handoff.loop.run()
            handoff.server?.close()
        }
        if !noSeccomp {
            SandboxTestHook.install()
            try BlockBackendPolicy.process.install(allThreads: true)
        }
        try controlThread.start()
        server.run()
        controlThread.join()
        // The session is over (SIGTERM): nothing is in flight.
        disk.close()
    }
}

/// The control loop and server, made on the main thread (so their sockets
/// exist before the seccomp filter) and handed to the control thread.
final class ControlLoop: @unchecked Sendable {
    // SAFETY (Sendable): the main thread builds both and never touches them
    // after starting the control thread, which is then their only user.
    let loop: EventLoop
    let server: ControlServer<BlockBackendControl.Command>?
    init(loop: EventLoop, server: ControlServer<BlockBackendControl.Command>?) {
        self.loop = loop
        self.server = server
    }
}

BlockBackendCommand.main()
