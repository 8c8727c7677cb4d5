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
        (["--initrd", "i"], "missing --kernel PATH (or --restore FILE)"),
        (["--restore", "/s", "--kernel", "k"], "--restore takes the kernel from the state file: drop --kernel and --initrd"),
        (["--kernel", "k", "--fs", "vhost-user:/s"], "--fs needs tag=TAG (the name the guest mounts)"),
        (["--kernel", "k", "--fs", "/s,tag=t"], "--fs must be vhost-user:SOCKET,tag=TAG (got \"/s,tag=t\")"),
        (["--kernel", "k", "--fs", "vhost-user:/s,tag=t,cache=always"], "--fs option \"cache=always\" (expected tag=TAG)"),
        (["--kernel", "k", "--fs", "vhost-user:/s,tag=" + String(repeating: "x", count: 37)],
         "a virtio-fs tag must be 1-36 bytes with no NUL (got \"" + String(repeating: "x", count: 37) + "\")"),
        (["--kernel", "k", "--fs", "vhost-user:/a,tag=t", "--fs", "vhost-user:/b,tag=t"], "--fs tag \"t\" is used twice"),
    ])
    func usageErrors(args: [String], message: String) {
        #expect(throws: HypervisorOptions.UsageError(message: message)) { try HypervisorOptions.parse(args) }
    }

    @Test func sharedDirectories() throws {
        guard case .run(let c) = try HypervisorOptions.parse(["--kernel", "k", "--fs", "vhost-user:/run/fs.sock,tag=shared",
                                                               "--fs=vhost-user:/run/b.sock,tag=" + String(repeating: "é", count: 18)]) else {
            Issue.record("not run")
            return
        }
        #expect(c.filesystems == [FsConfig(socket: "/run/fs.sock", tag: "shared"), FsConfig(socket: "/run/b.sock", tag: String(repeating: "é", count: 18))])
        // Guest RAM must be shared with virtiofsd.
        #expect(c.needsSharedMemory)
    }

    @Test func serialModes() throws {
        #expect(try SerialMode(parsing: "pty") == .pty)
        #expect(try SerialMode(parsing: "none") == SerialMode.none)
        #expect(try SerialMode(parsing: "file:/x") == .file("/x"))
        #expect(throws: MachineError.self) { try SerialMode(parsing: "tcp:1") }
    }
}
