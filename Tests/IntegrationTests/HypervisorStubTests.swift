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
        #expect(vm.waitFor("stub: commands: poweroff reboot crash fill help"), "\(vm.output)")
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

    /// A machine saved with the control command goes on in a new apus-hv
    /// (`--restore`) where it stopped: the half-typed console line in guest
    /// RAM, the UART's and the PIC's state (its input interrupt still
    /// works) and the ACPI power button's enable bit all come back.
    @Test func savedToAFileAndRestoredInANewProcessItGoesOnWhereItStopped() throws {
        let dir = try TemporaryDirectory()
        let control = dir.path + "/control.sock", state = dir.path + "/vm.state"
        let vm = try boot(["--vcpus", "2", "--control", control])
        #expect(vm.waitFor("stub> ", timeout: 20))
        vm.send("hel")
        #expect(vm.waitFor("stub> hel"), "\(vm.output)")
        let saved = try TestSupport.control(control, HypervisorControl.save(state, then: .quit), timeout: 60)
        #expect(vm.waitForExit() == 5, "\(vm.output)")
        #expect(saved.bytes == (try FileManager.default.attributesOfItem(atPath: state)[.size] as? UInt64) && saved.pagesWritten > 0 && saved.pagesWritten < 512,
                "64 MiB of RAM, little of it used by the stub: \(saved)")
        #expect(saved.zeroPagesSkipped + saved.pagesWritten >= 63 * 256)

        let control2 = dir.path + "/control2.sock"
        let restored = try ChildProcess(hv, ["--restore", state, "--memory", "64", "--vcpus", "2", "--control", control2])
        #expect(waitForPath(control2))
        restored.send("p\r")
        #expect(restored.waitFor("stub: commands: poweroff reboot crash fill help", timeout: 20), "\(restored.output)")
        #expect(!restored.output.contains("Apus stub kernel"), "the restored guest does not boot again")
        _ = try controlCommand(control2, "power-button")
        #expect(restored.waitForExit() == 0, "\(restored.output)")
        #expect(restored.output.contains("stub: powering off (power button)"), "\(restored.output)")

        // A second restore of the same file is the same machine again.
        let again = try ChildProcess(hv, ["--restore", state, "--memory", "64", "--vcpus", "2", "--paused", "--control", control2])
        #expect(waitForPath(control2))
        #expect(try TestSupport.control(control2, HypervisorControl.status).state == .paused)
        _ = try controlCommand(control2, "resume")
        again.send("lo\r")
        #expect(again.waitFor("stub: unknown command: hello", timeout: 20), "\(again.output)")
        again.send("poweroff\r")
        #expect(again.waitForExit() == 0)
    }

    @Test func savedWithoutQuittingItStaysPausedThenGoesOn() throws {
        let dir = try TemporaryDirectory()
        let control = dir.path + "/control.sock", state = dir.path + "/vm.state"
        let vm = try boot(["--control", control])
        #expect(vm.waitFor("stub> ", timeout: 20))
        _ = try TestSupport.control(control, HypervisorControl.save(state, then: .paused), timeout: 60)
        #expect(try TestSupport.control(control, HypervisorControl.status).state == .paused)
        #expect(try controlCommand(control, "save relative/path").contains("PATH must be absolute"))
        #expect(try controlCommand(control, "save /nonexistent/dir/x.state").contains("cannot save to /nonexistent/dir/x.state"))
        #expect(try TestSupport.control(control, HypervisorControl.status).state == .paused, "a failed save keeps the run state")
        _ = try controlCommand(control, "resume")
        vm.send("help\r")
        #expect(vm.waitFor("stub: commands"), "\(vm.output)")
        vm.send("poweroff\r")
        #expect(vm.waitForExit() == 0)
    }

    /// A state file for another machine, or a damaged one, is refused with
    /// one clear line before anything runs.
    @Test func restoringAMismatchedOrDamagedFileIsAClearError() throws {
        let dir = try TemporaryDirectory()
        let control = dir.path + "/control.sock", state = dir.path + "/vm.state"
        let vm = try boot(["--control", control])
        #expect(vm.waitFor("stub> ", timeout: 20))
        _ = try TestSupport.control(control, HypervisorControl.save(state, then: .quit), timeout: 60)
        #expect(vm.waitForExit() == 5)
        func restore(_ file: String, _ extra: [String]) throws -> (Int32?, String) {
            let p = try ChildProcess(hv, ["--restore", file] + extra, stdinFromPipe: false)
            return (p.waitForExit(timeout: 30), p.output)
        }
        let (s1, o1) = try restore(state, ["--memory", "128"])
        #expect(s1 == 1 && o1.contains("the saved machine had 64 MiB of RAM; this one has 128 MiB"), "\(o1)")
        let (s2, o2) = try restore(state, ["--memory", "64", "--vcpus", "2"])
        #expect(s2 == 1 && o2.contains("had 1 vCPUs; this one has 2"), "\(o2)")
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: state)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: dir.path + "/bad.state"))
        let (s3, o3) = try restore(dir.path + "/bad.state", ["--memory", "64"])
        #expect(s3 == 1 && o3.contains("fails its checksum"), "\(o3)")
        let (s4, o4) = try restore("/etc/hostname", ["--memory", "64"])
        #expect(s4 == 1 && o4.contains("not an Apus saved-state file"), "\(o4)")
        let (s5, o5) = try restore(state, ["--memory", "64", "--kernel", stub])
        #expect(s5 == 2 && o5.contains("--restore takes the kernel from the state file"), "\(o5)")
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
