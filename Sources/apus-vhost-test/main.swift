// apus-vhost-test: the backend test harness. A vhost-user frontend that
// plays the guest with real shared memory and drives any vhost-user-blk
// backend (apus-blkback, qemu-storage-daemon --export type=vhost-user-blk),
// two ports of any vhost-user-net switch (`net`: apus-netback), or any
// vhost-user-fs backend (`fs`: virtiofsd).
import ApusSys
import ArgumentParser
import VhostTest

struct VhostTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus-vhost-test",
        abstract: "Test and benchmark any vhost-user-blk backend, vhost-user-net switch ports (net), or vhost-user-fs backend (fs).",
        subcommands: [ConformanceCommand.self, IntegrityCommand.self, HostileCommand.self, BenchCommand.self, AllCommand.self, RestartCommand.self,
                      NetCommand.self, FsCommand.self])
}

struct Target: ExpressibleByArgument {
    let name: String
    let path: String
    init?(argument: String) {
        if let eq = argument.firstIndex(of: "="), argument.first != "/" {
            name = String(argument[..<eq])
            path = String(argument[argument.index(after: eq)...])
        } else {
            name = argument
            path = argument
        }
        guard !path.isEmpty else { return nil }
    }
}

/// Machine-readable reports, which every mode can write besides its table.
struct ReportFiles: ParsableArguments {
    @Option(help: "Write each measurement (a table row, a kill) and each check as a JSON object per line to this file.")
    var json: String?
    @Option(help: "Write the checks as JUnit XML to this file (a testsuite per mode, a testcase per check).")
    var junit: String?

    /// Writes the files asked for, then fails the command if a check failed.
    func finish(_ report: Report) throws {
        do {
            if let json { try report.writeJSONLines(to: json) }
            if let junit { try report.writeJUnit(to: junit) }
        } catch {
            report.emit("cannot write the report: \(error)")
            throw ExitCode(2)
        }
        if !report.failures.isEmpty { throw ExitCode(1) }
    }
}

struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "conformance", abstract: "Feature/protocol negotiation, config space, queue setup and teardown.")
    @Option(help: "Backend socket.") var socket: String
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "conformance")
        Conformance.run(socket: socket, report: report)
        try reports.finish(report)
    }
}

struct IntegrityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "integrity", abstract: "Random writes and reads with checksums, flush, session restart, read-back.")
    @Option(help: "Backend socket.") var socket: String
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Random operations at queue depth 1.") var operations: Int = 400
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "integrity")
        Integrity.run(socket: socket, report: report, seed: seed, operations: operations)
        try reports.finish(report)
    }
}

struct HostileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hostile", abstract: "Malformed descriptor chains; the backend must stay alive and safe.")
    @Option(help: "Backend socket.") var socket: String
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "hostile")
        Hostile.run(socket: socket, report: report)
        try reports.finish(report)
    }
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "IOPS, MiB/s and latency at QD1 and QD32 against one or more backends.")
    @Option(name: .customLong("socket"), help: "Backend socket, as PATH or NAME=PATH; repeat to compare backends.")
    var sockets: [Target]
    @Option(help: "Seconds per workload and backend.") var seconds: Double = 3
    @Option(help: "Split each workload's seconds into this many rounds, the backends taking turns, and report each figure's median.")
    var rounds: Int = 1
    @Option(help: "Random seed.") var seed: UInt64 = 7
    @OptionGroup var reports: ReportFiles
    func validate() throws {
        guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be 1 to 100") }
    }
    func run() throws {
        let report = Report(suite: "bench")
        Bench.run(targets: sockets.map { ($0.name, $0.path) }, seconds: seconds, rounds: rounds, seed: seed, report: report)
        try reports.finish(report)
    }
}

struct AllCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "all", abstract: "conformance, integrity and hostile in one run.")
    @Option(help: "Backend socket.") var socket: String
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "conformance")
        Conformance.run(socket: socket, report: report)
        report.suite = "integrity"
        Integrity.run(socket: socket, report: report, seed: 1, operations: 200)
        report.suite = "hostile"
        Hostile.run(socket: socket, report: report)
        try reports.finish(report)
    }
}

struct RestartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "Kill a backend (SIGKILL) at random moments under QD32 I/O, restart it, and count what was lost.",
        discussion: """
        The harness starts each backend itself (/bin/sh -c 'exec COMMAND'), drives random 4 KiB writes \
        and reads with checksums at queue depth 32, kills it, starts it again at once and resumes as \
        QEMU does after a backend crash: the inflight region (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) \
        handed back when the backend keeps one, the rings resumed at the used index. Per kill: requests \
        in flight, recorded for resubmission, completed, lost, duplicated, and the time from the kill \
        to the next completion; every block written is read back at the end. A backend with inflight \
        tracking fails the run on any loss; one without is reported.
        """)
    @Option(name: .customLong("socket"), help: "The backend's socket (repeat with --exec for each backend).")
    var sockets: [String]
    @Option(name: .customLong("exec"), help: "The command that starts the backend on that socket.")
    var commands: [String]
    @Option(name: .customLong("name"), help: "A name per backend for the table (default: the command's first word).")
    var names: [String] = []
    @Option(help: "Kills per backend.") var kills: Int = 100
    @Option(help: "Requests kept in flight.") var depth: Int = 32
    @Option(help: "Random seed.") var seed: UInt64 = 11
    func validate() throws {
        guard !sockets.isEmpty, sockets.count == commands.count else { throw ValidationError("give one --exec per --socket") }
        guard names.isEmpty || names.count == sockets.count else { throw ValidationError("give one --name per --socket, or none") }
        guard (1...10_000).contains(kills), (1...128).contains(depth) else { throw ValidationError("--kills 1-10000, --depth 1-128") }
    }
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "restart")
        let targets = sockets.indices.map { i in
            Restart.Target(name: names.isEmpty ? String(commands[i].split(separator: " ").first ?? "backend").split(separator: "/").last.map(String.init) ?? "backend" : names[i],
                           socket: sockets[i], command: commands[i])
        }
        _ = Restart.run(targets: targets, kills: kills, seed: seed, depth: depth, report: report)
        try reports.finish(report)
    }
}

struct FsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fs",
        abstract: "A vhost-user-fs backend (virtiofsd) driven as a guest's virtiofs driver: conformance, a file tree, hostile FUSE requests.",
        discussion: """
        FUSE over the backend's request queue, as Linux's virtiofs driver sends it: FUSE_INIT, then a \
        tree of files written, fsynced and read back, checked byte for byte in the host directory the \
        backend serves (--source) and the other way round, renamed and removed; then malformed and \
        hostile requests (unknown opcodes, names with no NUL or with a slash, '..', a symlink to /, \
        node IDs and handles never handed out, lengths that lie), each followed by a check that the \
        backend still answers. The requests a backend may not survive go last.
        """)
    @Option(help: "Backend socket.") var socket: String
    @Option(help: "The host directory the backend serves (to check what the guest side wrote).") var source: String
    @Option(help: "Files in the tree.") var files: Int = 48
    @Option(help: "Random seed.") var seed: UInt64 = 5
    @OptionGroup var reports: ReportFiles
    func validate() throws {
        guard (1...10_000).contains(files) else { throw ValidationError("--files 1-10000") }
    }
    func run() throws {
        let report = Report(suite: "fs")
        FsModes.run(socket: socket, source: source, seed: seed, files: files, report: report)
        report.summary("fs")
        try reports.finish(report)
    }
}

struct NetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net", abstract: "Two vhost-user-net ports of one switch, driven as two guests.",
        subcommands: [NetIntegrityCommand.self, NetHostileCommand.self, NetBenchCommand.self])
}

struct NetPorts: ParsableArguments {
    @Option(help: "Socket of the first port.") var a: String
    @Option(help: "Socket of the second port (on the same switch).") var b: String
}

struct NetIntegrityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "integrity", abstract: "Flooding, no echo, unicast frames of 60-1514 bytes intact and in order both ways.")
    @OptionGroup var ports: NetPorts
    @Option(help: "Frames each way.") var frames: Int = 2000
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "net integrity")
        NetModes.integrity(a: ports.a, b: ports.b, frames: max(1, frames), report: report)
        try reports.finish(report)
    }
}

struct NetHostileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hostile", abstract: "Malformed transmit chains: each completed, none forwarded, the switch carries on.")
    @OptionGroup var ports: NetPorts
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "net hostile")
        NetModes.hostile(a: ports.a, b: ports.b, report: report)
        try reports.finish(report)
    }
}

struct NetPair: ExpressibleByArgument {
    let name: String, a: String, b: String
    init?(argument: String) {
        // NAME=SOCKET_A,SOCKET_B
        guard let eq = argument.firstIndex(of: "=") else { return nil }
        let socks = argument[argument.index(after: eq)...].split(separator: ",", omittingEmptySubsequences: false)
        guard eq != argument.startIndex, socks.count == 2, !socks[0].isEmpty, !socks[1].isEmpty else { return nil }
        name = String(argument[..<eq])
        a = String(socks[0])
        b = String(socks[1])
    }
}

struct NetBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Packets/s and Gbit/s from port a to port b at 64, 512 and 1500-byte frames.")
    @Option(name: .customLong("pair"), help: "NAME=SOCKET_A,SOCKET_B: two ports of one switch; repeat to compare switches.")
    var pairs: [NetPair]
    @Option(help: "Seconds per frame size and switch.") var seconds: Double = 3
    @Option(parsing: .upToNextOption, help: "Frame sizes in bytes (60-1514).") var sizes: [Int] = [64, 512, 1500]
    func validate() throws {
        guard sizes.allSatisfy({ (60...1514).contains($0) }) else { throw ValidationError("frame sizes must be 60-1514 bytes") }
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
    }
    @OptionGroup var reports: ReportFiles
    func run() throws {
        let report = Report(suite: "net bench")
        _ = NetModes.bench(targets: pairs.map { ($0.name, $0.a, $0.b) }, sizes: sizes, seconds: seconds, report: report)
        try reports.finish(report)
    }
}

VhostTestCommand.main()
