import Testing
@testable import Machine

@Suite struct HypervisorOptionsTests {
    @Test func parsesEveryFlagInBothForms() throws {
        let action = try HypervisorOptions.parse(["--kernel", "/k", "--initrd=/i", "--cmdline", "console=ttyS0 quiet",
                                                  "--memory=512", "--vcpus", "2", "--serial", "unix:/tmp/s",
                                                  "--control", "/tmp/c", "--paused"])
        #expect(action == .run(MachineConfig(kernel: "/k", initrd: "/i", commandLine: "console=ttyS0 quiet",
                                             memoryMiB: 512, vcpus: 2, serial: .unix("/tmp/s"),
                                             controlSocket: "/tmp/c", startPaused: true)))
    }

    @Test func defaults() throws {
        guard case .run(let c) = try HypervisorOptions.parse(["--kernel", "k"]) else { Issue.record("not run"); return }
        #expect(c.memoryMiB == 256 && c.vcpus == 1 && c.serial == .stdio && c.commandLine == MachineConfig.defaultCommandLine)
    }

    @Test func helpAndVersion() throws {
        #expect(try HypervisorOptions.parse(["--help"]) == .help)
        #expect(try HypervisorOptions.parse(["--kernel", "k", "-h"]) == .help)
        #expect(try HypervisorOptions.parse(["--version"]) == .version)
    }

    @Test(arguments: [
        (["--kernel"], "missing value for --kernel"),
        (["--kernel", "k", "--vcpus", "two"], "--vcpus expects a number, got \"two\""),
        (["--kernel", "k", "--what"], "unknown option --what"),
        (["--kernel", "k", "extra"], "unexpected argument \"extra\""),
        (["--kernel", "k", "--serial", "file:"], "--serial must be stdio, pty, file:PATH, unix:PATH or none (got \"file:\")"),
        (["--kernel", "k", "--vcpus", "300"], "--vcpus must be between 1 and 254 (got 300)"),
        (["--initrd", "i"], "missing --kernel PATH"),
    ])
    func usageErrors(args: [String], message: String) {
        #expect(throws: HypervisorOptions.UsageError(message: message)) { try HypervisorOptions.parse(args) }
    }

    @Test func serialModes() throws {
        #expect(try SerialMode(parsing: "pty") == .pty)
        #expect(try SerialMode(parsing: "none") == SerialMode.none)
        #expect(try SerialMode(parsing: "file:/x") == .file("/x"))
        #expect(throws: MachineError.self) { try SerialMode(parsing: "tcp:1") }
    }
}
