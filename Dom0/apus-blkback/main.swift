// apus-blkback: Dom0's vhost-user-blk backend. Serves one raw image or block
// device to a frontend (apus-hv, QEMU, apus-vhost-test) over a Unix socket.
import ArgumentParser
import ApusSys
import BlockBackend
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
        disconnects the backend waits for the next one. With --control, `stats` on \
        that socket returns the device's counters as JSON.
        """)

    @Option(help: "vhost-user socket to listen on.")
    var socket: String

    @Option(help: "Raw disk image or block device.")
    var image: String

    @Flag(help: "Refuse writes (VIRTIO_BLK_F_RO; writes complete with IOERR).")
    var readonly = false

    @Flag(help: "Open the image with O_DIRECT (bypass the host page cache).")
    var direct = false

    @Option(help: "Number of virtqueues, each served by its own thread.")
    var queues: Int = 1

    @Option(help: "Serial number reported by GET_ID (default: the image's file name).")
    var serial: String?

    @Option(help: "Control socket: `stats` and `info` commands.")
    var control: String?

    @Flag(help: "Use synchronous I/O instead of io_uring.")
    var syncIO = false

    @Option(help: "Microseconds each queue worker polls for new requests before sleeping (0: never poll).")
    var pollUs: UInt64 = 20

    func validate() throws {
        guard (1...64).contains(queues) else { throw ValidationError("--queues must be between 1 and 64") }
    }

    func run() throws {
        BackendLog.program = "apus-blkback"
        Signals.ignoreBrokenPipe()
        let disk: BlockImage
        do {
            disk = try BlockImage(path: image, readOnly: readonly, direct: direct, serial: serial)
        } catch {
            throw ValidationError("\(error)")
        }
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
        let info = "{\"ok\":true,\"image\":\"\(jsonEscape(disk.path))\",\"size\":\(disk.size),\"readonly\":\(disk.readOnly),\"queues\":\(queues),\"direct\":\(disk.direct)}"
        let controlThread = OSThread(name: "blk-control") {
            guard let loop = try? EventLoop() else { return }
            var lineServer: LineServer? = nil
            if let controlPath {
                lineServer = try? LineServer(path: controlPath, loop: loop) { line in
                    switch line {
                    case "stats": return device.stats.json()
                    case "info": return info
                    default: return "{\"ok\":false,\"error\":\"unknown command: \(jsonEscape(String(line.prefix(64))))\"}"
                    }
                }
            }
            _ = try? loop.register(signals.fd) { _ in
                _ = signals.next()
                server.stop()
                loop.stop()
            }
            try? loop.run()
            lineServer?.close()
        }
        try controlThread.start()
        server.run()
        controlThread.join()
    }
}

BlockBackendCommand.main()
