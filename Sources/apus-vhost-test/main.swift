// apus-vhost-test: the backend test harness. A vhost-user frontend that
// plays the guest with real shared memory and drives any vhost-user-blk
// backend (apus-blkback, qemu-storage-daemon --export type=vhost-user-blk).
import ArgumentParser
import VhostTest

struct VhostTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus-vhost-test",
        abstract: "Test and benchmark any vhost-user-blk backend.",
        subcommands: [ConformanceCommand.self, IntegrityCommand.self, HostileCommand.self, BenchCommand.self, AllCommand.self])
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

func finish(_ report: Report) throws {
    if !report.failures.isEmpty { throw ExitCode(1) }
}

struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "conformance", abstract: "Feature/protocol negotiation, config space, queue setup and teardown.")
    @Option(help: "Backend socket.") var socket: String
    func run() throws {
        let report = Report()
        Conformance.run(socket: socket, report: report)
        try finish(report)
    }
}

struct IntegrityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "integrity", abstract: "Random writes and reads with checksums, flush, session restart, read-back.")
    @Option(help: "Backend socket.") var socket: String
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Random operations at queue depth 1.") var operations: Int = 400
    func run() throws {
        let report = Report()
        Integrity.run(socket: socket, report: report, seed: seed, operations: operations)
        try finish(report)
    }
}

struct HostileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hostile", abstract: "Malformed descriptor chains; the backend must stay alive and safe.")
    @Option(help: "Backend socket.") var socket: String
    func run() throws {
        let report = Report()
        Hostile.run(socket: socket, report: report)
        try finish(report)
    }
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "IOPS, MiB/s and latency at QD1 and QD32 against one or more backends.")
    @Option(name: .customLong("socket"), help: "Backend socket, as PATH or NAME=PATH; repeat to compare backends.")
    var sockets: [Target]
    @Option(help: "Seconds per workload and backend.") var seconds: Double = 3
    @Option(help: "Random seed.") var seed: UInt64 = 7
    func run() throws {
        let report = Report()
        Bench.run(targets: sockets.map { ($0.name, $0.path) }, seconds: seconds, seed: seed, report: report)
        try finish(report)
    }
}

struct AllCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "all", abstract: "conformance, integrity and hostile in one run.")
    @Option(help: "Backend socket.") var socket: String
    func run() throws {
        let report = Report()
        Conformance.run(socket: socket, report: report)
        Integrity.run(socket: socket, report: report, seed: 1, operations: 200)
        Hostile.run(socket: socket, report: report)
        try finish(report)
    }
}

VhostTestCommand.main()
