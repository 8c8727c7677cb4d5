/// apus-hv's control socket (`--control PATH`): how apusd drives a running
/// domain, and what apus-hv leaves in its status file when it exits.
public enum HypervisorControl {
    /// The commands apus-hv takes.
    public enum Command: ControlCommand {
        /// State, size and uptime (``Status``).
        case status
        /// Parks every vCPU; acknowledged once all are parked.
        case pause
        case resume
        /// The ACPI power button: a graceful shutdown request.
        case powerButton
        /// Ctrl-Alt-Del on the i8042.
        case ctrlAltDel
        /// A hard reset: apus-hv exits with the reboot status.
        case reset
        /// Stop now: apus-hv exits with the "stopped" status.
        case quit
        /// Per-vCPU and per-device counters (``Stats``).
        case stats
        /// Presses `scancodes` (PC set 1; extended keys as 0xE0xx) together,
        /// holds them `holdMilliseconds`, then releases them in reverse order.
        case sendKey(holdMilliseconds: UInt32, scancodes: [UInt16])
        /// A non-maskable interrupt on every vCPU.
        case injectNMI
        /// Virtio device `index` (its disk, after a resize) has a new
        /// configuration: apus-hv re-reads it from the backend and raises
        /// the configuration-change interrupt.
        case configChanged(device: Int)
        /// Virtio device `index`'s backend will not come back (apusd gave up
        /// restarting it): the device reports DEVICE_NEEDS_RESET.
        case backendFailed(device: Int)
        /// The whole machine into a state file at `path` (a path apus-hv
        /// can write, inside its jail): vCPUs paused, every vhost-user ring
        /// stopped once its backend completed what it took, then the file.
        /// Afterwards the machine stays paused, or exits (``SaveThen``).
        case save(path: String, then: SaveThen)
        /// Pauses the vCPUs and stops every ring once its backend completed
        /// what it took (a held save without the file): the backends' files
        /// are still until `release` or `resume`.
        case hold
        /// Starts again the rings a `save PATH held` or `hold` left stopped; the vCPUs
        /// stay as they are (`resume` also does this first).
        case release

        public static let usage = "status, pause, resume, power-button, ctrl-alt-del, reset, quit, stats, send-key HOLD_MS SCANCODE..., inject-nmi, config-changed DEVICE, backend-failed DEVICE, save PATH [paused|held|quit], hold, release"

        /// How many keys a send-key may press at once (libvirt's limit).
        public static let maxKeys = 16

        public init(words: [String]) throws(ControlError) {
            switch (words.first ?? "", words.count) {
            case ("status", 1): self = .status
            case ("pause", 1): self = .pause
            case ("resume", 1): self = .resume
            case ("release", 1): self = .release
            case ("hold", 1): self = .hold
            case ("power-button", 1), ("shutdown", 1): self = .powerButton
            case ("ctrl-alt-del", 1): self = .ctrlAltDel
            case ("reset", 1): self = .reset
            case ("quit", 1): self = .quit
            case ("stats", 1): self = .stats
            case ("inject-nmi", 1): self = .injectNMI
            case ("config-changed", 2): self = .configChanged(device: try words.controlNumber(1, "DEVICE"))
            case ("backend-failed", 2): self = .backendFailed(device: try words.controlNumber(1, "DEVICE"))
            case ("save", 2...3):
                guard words[1].hasPrefix("/"), !words[1].utf8.contains(0) else { throw .badRequest("save: PATH must be absolute") }
                guard let then = SaveThen(rawValue: words.count == 3 ? words[2] : "paused") else {
                    throw .badRequest("save: after the save the machine stays 'paused', is 'held' or 'quit's (got '\(words[2])')")
                }
                self = .save(path: words[1], then: then)
            case ("send-key", 3...):
                guard words.count - 2 <= Self.maxKeys else { throw .badRequest("send-key: at most \(Self.maxKeys) keys") }
                let hold: UInt32 = try words.controlNumber(1, "HOLD_MS")
                guard hold <= 10_000 else { throw .badRequest("send-key: HOLD_MS must be at most 10000") }
                var codes: [UInt16] = []
                for w in words.dropFirst(2) {
                    guard let c = UInt16(w.hasPrefix("0x") ? String(w.dropFirst(2)) : w, radix: w.hasPrefix("0x") ? 16 : 10),
                          c & 0xFF != 0, c >> 8 == 0 || c >> 8 == 0xE0 else {
                        throw .badRequest("send-key: '\(w)' is not a set-1 scancode")
                    }
                    codes.append(c)
                }
                self = .sendKey(holdMilliseconds: hold, scancodes: codes)
            default:
                throw ControlLine.unknown(words, usage: Self.usage)
            }
        }

        public var words: [String] {
            switch self {
            case .status: return ["status"]
            case .pause: return ["pause"]
            case .resume: return ["resume"]
            case .release: return ["release"]
            case .hold: return ["hold"]
            case .powerButton: return ["power-button"]
            case .ctrlAltDel: return ["ctrl-alt-del"]
            case .reset: return ["reset"]
            case .quit: return ["quit"]
            case .stats: return ["stats"]
            case .injectNMI: return ["inject-nmi"]
            case .configChanged(let d): return ["config-changed", String(d)]
            case .backendFailed(let d): return ["backend-failed", String(d)]
            case .save(let path, let then): return ["save", path, then.rawValue]
            case .sendKey(let hold, let codes):
                return ["send-key", String(hold)] + codes.map { "0x" + String($0, radix: 16) }
            }
        }
    }

    /// What a machine does once saved: stays paused (resume goes on), is
    /// held (paused with every ring stopped, so the backends' files are
    /// still: a snapshot takes the disks then, and `release` or `resume`
    /// starts the rings again), or exits with the "stopped" status (`virsh save`).
    public enum SaveThen: String, Sendable { case paused, held, quit }

    /// The reply to `save`: the file written and how long it took.
    public struct Saved: ControlReply, Equatable {
        public var bytes: UInt64
        public var pagesWritten: UInt64
        public var zeroPagesSkipped: UInt64
        public var nanoseconds: UInt64

        public init(bytes: UInt64, pagesWritten: UInt64, zeroPagesSkipped: UInt64, nanoseconds: UInt64) {
            self.bytes = bytes; self.pagesWritten = pagesWritten; self.zeroPagesSkipped = zeroPagesSkipped; self.nanoseconds = nanoseconds
        }

        public init(fields f: JSONFields) throws(ControlError) {
            bytes = try f.count("bytes")
            pagesWritten = try f.count("pages_written")
            zeroPagesSkipped = try f.count("zero_pages_skipped")
            nanoseconds = try f.count("ns")
        }

        public var fields: [(String, JSONValue)] {
            [("bytes", .integer(Int64(clamping: bytes))), ("pages_written", .integer(Int64(clamping: pagesWritten))),
             ("zero_pages_skipped", .integer(Int64(clamping: zeroPagesSkipped))), ("ns", .integer(Int64(clamping: nanoseconds)))]
        }
    }

    /// Run state of the vCPUs.
    public enum RunState: String, Sendable { case running, paused }

    /// The reply to `status`.
    public struct Status: ControlReply, Equatable {
        public var state: RunState
        public var vcpus: Int
        public var memoryMiB: Int
        public var uptimeNanoseconds: UInt64

        public init(state: RunState, vcpus: Int, memoryMiB: Int, uptimeNanoseconds: UInt64) {
            self.state = state; self.vcpus = vcpus; self.memoryMiB = memoryMiB; self.uptimeNanoseconds = uptimeNanoseconds
        }

        public init(fields f: JSONFields) throws(ControlError) {
            guard let s = RunState(rawValue: try f.string("state")) else { throw .malformedReply("unknown state") }
            state = s
            vcpus = Int(try f.int("vcpus"))
            memoryMiB = Int(try f.int("memory_mib"))
            uptimeNanoseconds = try f.count("uptime_ns")
        }

        public var fields: [(String, JSONValue)] {
            [("state", .string(state.rawValue)), ("vcpus", .integer(Int64(vcpus))), ("memory_mib", .integer(Int64(memoryMiB))),
             ("uptime_ns", .integer(Int64(clamping: uptimeNanoseconds)))]
        }
    }

    /// One vCPU's counters.
    public struct VCPUStat: Equatable, Sendable {
        public var id: UInt32
        /// Its thread's kernel id (for /proc placement and CPU time).
        public var threadID: Int32
        public var cpuNanoseconds: UInt64
        /// Userspace exits for port and MMIO accesses.
        public var ioExits: UInt64
        public var mmioExits: UInt64

        public init(id: UInt32, threadID: Int32, cpuNanoseconds: UInt64, ioExits: UInt64, mmioExits: UInt64) {
            self.id = id; self.threadID = threadID; self.cpuNanoseconds = cpuNanoseconds; self.ioExits = ioExits; self.mmioExits = mmioExits
        }
    }

    /// One virtio device's transport, as the guest sees it.
    public struct DeviceStat: Equatable, Sendable {
        public enum Kind: String, Sendable { case block, network }
        public var index: Int
        public var kind: Kind
        /// The vhost-user socket of its backend.
        public var socket: String
        /// Whether the backend is connected now.
        public var connected: Bool
        /// The virtio device status byte (DRIVER_OK 4, DEVICE_NEEDS_RESET 64...).
        public var status: UInt8

        public init(index: Int, kind: Kind, socket: String, connected: Bool, status: UInt8) {
            self.index = index; self.kind = kind; self.socket = socket; self.connected = connected; self.status = status
        }
    }

    /// The reply to `stats`.
    public struct Stats: ControlReply, Equatable {
        public var vcpus: [VCPUStat]
        public var serialTransmittedBytes: UInt64
        public var devices: [DeviceStat]

        public init(vcpus: [VCPUStat], serialTransmittedBytes: UInt64, devices: [DeviceStat]) {
            self.vcpus = vcpus; self.serialTransmittedBytes = serialTransmittedBytes; self.devices = devices
        }

        public init(fields f: JSONFields) throws(ControlError) {
            vcpus = []
            for v in try f.array("vcpus") {
                let g = JSONFields(v)
                vcpus.append(VCPUStat(id: UInt32(clamping: try g.int("id")), threadID: Int32(clamping: try g.int("tid")),
                                      cpuNanoseconds: try g.count("cpu_ns"), ioExits: try g.count("io_exits"),
                                      mmioExits: try g.count("mmio_exits")))
            }
            serialTransmittedBytes = try f.count("serial_tx_bytes")
            devices = []
            for d in try f.array("devices") {
                let g = JSONFields(d)
                guard let kind = DeviceStat.Kind(rawValue: try g.string("kind")) else { throw .malformedReply("unknown device kind") }
                devices.append(DeviceStat(index: Int(try g.int("index")), kind: kind, socket: try g.string("socket"),
                                          connected: try g.bool("connected"), status: UInt8(clamping: try g.int("status"))))
            }
        }

        public var fields: [(String, JSONValue)] {
            [("vcpus", .array(vcpus.map { v in
                .object([("id", .integer(Int64(v.id))), ("tid", .integer(Int64(v.threadID))),
                         ("cpu_ns", .integer(Int64(clamping: v.cpuNanoseconds))), ("io_exits", .integer(Int64(clamping: v.ioExits))),
                         ("mmio_exits", .integer(Int64(clamping: v.mmioExits)))])
            })),
             ("serial_tx_bytes", .integer(Int64(clamping: serialTransmittedBytes))),
             ("devices", .array(devices.map { d in
                .object([("index", .integer(Int64(d.index))), ("kind", .string(d.kind.rawValue)), ("socket", .string(d.socket)),
                         ("connected", .bool(d.connected)), ("status", .integer(Int64(d.status)))])
             }))]
        }
    }

    public static let status = ControlCall<Status>(Command.status)
    public static let stats = ControlCall<Stats>(Command.stats)
    public static func save(_ path: String, then: SaveThen) -> ControlCall<Saved> { ControlCall(Command.save(path: path, then: then)) }
    /// A command acknowledged with a plain `{"ok":true}`.
    public static func command(_ c: Command) -> ControlCall<Acknowledged> { ControlCall(c) }
}

// MARK: how apus-hv ended

/// Why apus-hv exited: its exit status and the name apusd acts on
/// (`on_poweroff`, `on_reboot`, `on_crash`). apus-hv writes it to its
/// `--status-file` just before exiting.
public struct HypervisorExit: Equatable, Sendable {
    public enum Reason: String, Sendable {
        /// The guest powered off (ACPI S5).
        case poweroff
        /// The guest rebooted, or was reset.
        case reboot
        /// Triple fault, pvpanic, emulation failure.
        case crash
        /// Apus itself failed.
        case error
        /// The host stopped it (signal, `quit`).
        case stopped
        /// Bad command line.
        case usage
    }

    /// apus-hv's exit statuses (documented in README.md and `apus-hv --help`).
    public enum Status {
        public static let powerOff: Int32 = 0
        public static let vmmError: Int32 = 1
        public static let usage: Int32 = 2
        public static let reboot: Int32 = 3
        public static let crash: Int32 = 4
        public static let stopped: Int32 = 5
    }

    public var status: Int32
    public var reason: Reason
    public var detail: String

    public init(status: Int32, reason: Reason, detail: String) {
        self.status = status; self.reason = reason; self.detail = detail
    }

    /// The status file's text (one JSON line).
    public var text: String {
        JSONValue.object([("status", .integer(Int64(status))), ("reason", .string(reason.rawValue)), ("detail", .string(detail))]).text + "\n"
    }

    /// Reads a status file's text.
    public init(text: String) throws(ControlError) {
        let f = JSONFields(try JSONValue.parse(text))
        guard let r = Reason(rawValue: try f.string("reason")) else { throw .malformedReply("unknown exit reason") }
        status = Int32(clamping: try f.int("status"))
        reason = r
        detail = f.optionalString("detail") ?? ""
    }
}
