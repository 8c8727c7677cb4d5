import Testing
import ApusControl
import Foundation
import TestSupport

/// apus-hv end to end with the stub kernel, which boots under any KVM
/// (including this host's software-assisted one) in milliseconds.
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable, "needs /dev/kvm and Deploy/guest-image output"), .serialized)
struct HypervisorStubTests {
    let stub = guestDirectory + "/stub.bzImage"
    var hv: String { product("apus-hv") }

    func boot(_ extra: [String] = [], env: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(hv, ["--kernel", stub, "--memory", "64"] + extra, environment: env)
    }

    @Test func bootsAndPowersOffWithStatusZero() throws {
        let vm = try boot(["--vcpus", "2"])
        #expect(vm.waitFor("stub> ", timeout: 20), "\(vm.output)")
        #expect(vm.output.contains("Apus stub kernel: hello from the guest"))
        #expect(vm.output.contains("stub: RAM 63 MiB"))
        vm.send("poweroff\r")
        #expect(vm.waitForExit() == 0, "\(vm.output)")
    }

    @Test(arguments: [("reboot", 3), ("crash", 4)])
    func guestExitPathsHaveDistinctStatuses(command: String, status: Int32) throws {
        let vm = try boot()
        #expect(vm.waitFor("stub> ", timeout: 20))
        vm.send(command + "\r")
        #expect(vm.waitForExit() == status, "\(vm.output)")
    }

    @Test func serialInputIsEchoedByTheGuest() throws {
        let vm = try boot()
        #expect(vm.waitFor("stub> ", timeout: 20))
        vm.send("help\r")
        #expect(vm.waitFor("stub: commands: poweroff reboot crash help"), "\(vm.output)")
        vm.send("bogus\r")
        #expect(vm.waitFor("stub: unknown command: bogus"))
        vm.signal(SIGTERM)
        #expect(vm.waitForExit() == 5)
    }

    @Test func sigtermStopsWithStatusFive() throws {
        let vm = try boot()
        #expect(vm.waitFor("stub> ", timeout: 20))
        vm.signal(SIGTERM)
        #expect(vm.waitForExit() == 5)
    }

    @Test func controlSocketPausesResumesAndReportsStats() throws {
        let dir = try TemporaryDirectory()
        let control = dir.path + "/control.sock"
        let vm = try boot(["--vcpus", "2", "--control", control])
        #expect(vm.waitFor("stub> ", timeout: 20))
        let status = try TestSupport.control(control, HypervisorControl.status)
        #expect(status.state == .running && status.vcpus == 2 && status.uptimeNanoseconds > 0, "\(status)")
        _ = try TestSupport.control(control, HypervisorControl.command(.pause))
        #expect(try TestSupport.control(control, HypervisorControl.status).state == .paused)
        // While paused the guest does not run: typed input is not echoed.
        vm.send("help\r")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(!vm.output.contains("stub: commands"))
        _ = try TestSupport.control(control, HypervisorControl.command(.resume))
        #expect(vm.waitFor("stub: commands"), "\(vm.output)")
        let stats = try TestSupport.control(control, HypervisorControl.stats)
        #expect(stats.vcpus.map(\.id) == [0, 1] && stats.vcpus.allSatisfy { $0.threadID > 0 }, "\(stats)")
        #expect(stats.serialTransmittedBytes > 0)
        // The wire itself: a raw line in, one JSON line out.
        #expect(try controlCommand(control, "status").hasPrefix("{\"ok\":true,\"state\":\"running\""))
        #expect(try controlCommand(control, "frobnicate").contains("unknown command: frobnicate"))
        #expect(try controlCommand(control, "quit") == "{\"ok\":true}")
        #expect(vm.waitForExit() == 5)
    }

    @Test(arguments: [("power-button", "power button", Int32(0)), ("ctrl-alt-del", "ctrl-alt-del", 0), ("reset", "", 3)])
    func controlSocketRequestsReachTheGuest(command: String, marker: String, status: Int32) throws {
        let dir = try TemporaryDirectory()
        let control = dir.path + "/control.sock"
        let vm = try boot(["--control", control])
        #expect(vm.waitFor("stub> ", timeout: 20))
        #expect(try controlCommand(control, command) == "{\"ok\":true}")
        #expect(vm.waitForExit() == status, "\(vm.output)")
        if !marker.isEmpty { #expect(vm.output.contains("stub: powering off (\(marker))"), "\(vm.output)") }
    }

    @Test func startsPausedUntilResumed() throws {
        let dir = try TemporaryDirectory()
        let control = dir.path + "/control.sock"
        let vm = try boot(["--paused", "--control", control])
        #expect(waitForPath(control))
        Thread.sleep(forTimeInterval: 0.3)
        #expect(!vm.output.contains("Apus stub kernel"))
        #expect(try controlCommand(control, "status").contains("paused"))
        _ = try controlCommand(control, "resume")
        #expect(vm.waitFor("stub> ", timeout: 20))
        vm.send("poweroff\r")
        #expect(vm.waitForExit() == 0)
    }

    @Test func serialToFile() throws {
        let dir = try TemporaryDirectory()
        let log = dir.path + "/console.log"
        let control = dir.path + "/control.sock"
        let vm = try boot(["--serial", "file:" + log, "--control", control])
        #expect(waitForPath(control))
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("stub> ") {
            Thread.sleep(forTimeInterval: 0.02)
        }
        _ = try controlCommand(control, "power-button")
        #expect(vm.waitForExit() == 0)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("Apus stub kernel") && text.contains("powering off (power button)"))
    }

    @Test func serialOverUnixSocketBuffersUntilAClientConnects() throws {
        let dir = try TemporaryDirectory()
        let console = dir.path + "/console.sock"
        let vm = try boot(["--serial", "unix:" + console])
        #expect(waitForPath(console))
        Thread.sleep(forTimeInterval: 0.5) // the banner is printed with nobody connected
        let client = try SocketClient(path: console)
        #expect(client.waitFor("stub> ", timeout: 10), "\(client.text)")
        #expect(client.text.contains("Apus stub kernel"))
        client.send("poweroff\r")
        #expect(vm.waitForExit() == 0)
    }

    @Test func serialOnAPseudoTerminal() throws {
        let vm = try boot(["--serial", "pty"])
        #expect(vm.waitFor("serial console on /dev/pts/", timeout: 10))
        let line = vm.output.split(separator: "\n").first { $0.contains("serial console on") } ?? ""
        let path = String(line.split(separator: " ").last ?? "")
        let fd = open(path, O_RDWR | O_NOCTTY)
        #expect(fd >= 0, "open \(path)")
        defer { close(fd) }
        _ = "poweroff\r".withCString { write(fd, $0, 9) }
        #expect(vm.waitForExit() == 0, "\(vm.output)")
    }
}

/// apus-hv's error handling: one line, a distinct status, no backtrace.
@Suite struct HypervisorErrorTests {
    var hv: String { product("apus-hv") }

    func run(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String) {
        let vm = try ChildProcess(hv, args, environment: env, stdinFromPipe: false)
        let status = vm.waitForExit(timeout: 30) ?? -1
        return (status, vm.output)
    }

    @Test func missingKernelFileIsAVMMError() throws {
        let (status, out) = try run(["--kernel", "/nonexistent/vmlinuz"])
        #expect(status == 1)
        #expect(out == "apus-hv: cannot open kernel /nonexistent/vmlinuz: No such file or directory\n")
    }

    @Test func notABzImage() throws {
        let (status, out) = try run(["--kernel", "/etc/hostname"])
        #expect(status == 1)
        #expect(out.hasPrefix("apus-hv: not a bzImage kernel:"))
        #expect(out.split(separator: "\n").count == 1)
    }

    @Test(arguments: [
        (["--kernel", "k", "--bogus"], "unknown option --bogus (see apus-hv --help)"),
        (["--kernel", "k", "--memory", "4"], "--memory must be at least 16 MiB"),
        (["--kernel", "k", "--vcpus", "0"], "--vcpus must be between"),
        (["--kernel", "k", "--serial", "tcp:1"], "--serial must be"),
        (["--kernel", "k", "--memory", "lots"], "--memory expects a number, got \"lots\""),
        ([], "missing --kernel PATH"),
    ])
    func badUsageIsStatusTwo(args: [String], message: String) throws {
        let (status, out) = try run(args)
        #expect(status == 2, "\(out)")
        #expect(out.contains(message), "\(out)")
        #expect(out.split(separator: "\n").count == 1, "\(out)")
    }

    @Test func missingKVMDeviceIsOneClearLine() throws {
        let stub = guestDirectory + "/stub.bzImage"
        let (status, out) = try run(["--kernel", stub], env: ["APUS_KVM_DEVICE": "/nonexistent/kvm"])
        #expect(status == 1)
        #expect(out == "apus-hv: KVM is not available: open /nonexistent/kvm: No such file or directory\n")
    }

    @Test func helpDocumentsExitStatuses() throws {
        let (status, out) = try run(["--help"])
        #expect(status == 0)
        #expect(out.contains("3  the guest rebooted"), "\(out)")
    }

    @Test func missingBackendIsAClearStartupError() throws {
        let vm = try ChildProcess(product("apus-hv"), ["--kernel", guestDirectory + "/vmlinuz", "--disk", "vhost-user:/nonexistent/blk.sock"],
                                  stdinFromPipe: false)
        #expect(vm.waitForExit(timeout: 60) == 1)
        #expect(vm.output.contains("cannot connect to vhost-user backend at /nonexistent/blk.sock"), "\(vm.output)")
    }
}
