import Testing
import Foundation
import TestSupport

/// A real Debian Linux guest under apus-hv. These need a KVM that boots
/// Linux: a hardware-virtualization host, or Deploy/kvm-box on machines
/// without one (Deploy/test arranges that).
@Suite(.enabled(if: kvmBootsLinux && guestImagesAvailable, "needs hardware KVM (or Deploy/kvm-box) and guest images"), .serialized)
struct LinuxGuestTests {
    var hv: String { product("apus-hv") }
    let kernel = guestDirectory + "/vmlinuz"
    let initrd = guestDirectory + "/initramfs.cpio.gz"
    /// Boots can be slow under nested emulation (the box); allow for it.
    let bootTimeout: TimeInterval = 240

    func boot(run command: String? = nil, vcpus: Int = 2, memory: Int = 256, extra: [String] = []) throws -> ChildProcess {
        var cmdline = "console=ttyS0 reboot=acpi panic=-1 pci=off quiet"
        if let command {
            cmdline += " apus.run64=" + Data(command.utf8).base64EncodedString()
        }
        return try ChildProcess(hv, ["--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
                                     "--vcpus", String(vcpus), "--memory", String(memory)] + extra)
    }

    @Test func bootsWithTwoCPUsAndTheRequestedMemoryThenPowersOff() throws {
        let vm = try bootedGuest { try boot(run: "echo guest-nproc=$(nproc); grep MemTotal /proc/meminfo; cat /sys/firmware/acpi/tables/DSDT | wc -c") }
        let status = vm.waitForExit(timeout: bootTimeout)
        let out = vm.output
        #expect(status == 0, "\(out)")
        #expect(out.contains("APUS-INIT: ready cpus=2"), "\(out)")
        #expect(out.contains("guest-nproc=2"))
        // ~256 MiB: MemTotal excludes what the kernel reserves for itself.
        let memLine = vm.lines.first { $0.hasPrefix("MemTotal:") } ?? ""
        let kib = Int(memLine.split(separator: " ").dropFirst().first ?? "") ?? 0
        #expect(kib > 180_000 && kib <= 262_144, "MemTotal \(kib) KiB")
        #expect(out.contains("APUS-INIT: command exited 0"))
    }

    @Test func serialInputReachesTheGuestShell() throws {
        let vm = try bootedGuest { try boot() }
        #expect(vm.waitFor("APUS-INIT: ready", timeout: bootTimeout), "\(vm.output)")
        #expect(vm.waitFor("apus-guest:", timeout: 60), "\(vm.output)")
        vm.send("echo $((6 * 7))-from-shell\n") // the echoed command shows "$((6 * 7))", not "42"
        #expect(vm.waitFor("42-from-shell", timeout: 60), "\(vm.output)")
        vm.send("poweroff\n")
        #expect(vm.waitForExit(timeout: 120) == 0, "\(vm.output)")
        #expect(vm.output.contains("APUS-INIT: shutting down"))
    }

    @Test func guestRebootExitsWithStatusThree() throws {
        let vm = try bootedGuest { try boot(run: "reboot -f") }
        #expect(vm.waitForExit(timeout: bootTimeout) == 3, "\(vm.output)")
    }

    @Test func kernelPanicExitsWithStatusFour() throws {
        let vm = try bootedGuest { try boot(run: "echo c > /proc/sysrq-trigger") }
        #expect(vm.waitForExit(timeout: bootTimeout) == 4, "\(vm.output)")
        #expect(vm.output.contains("guest kernel panic (pvpanic)"), "\(vm.output)")
    }

    @Test(arguments: ["power-button", "ctrl-alt-del"])
    func gracefulShutdownRequestsPowerTheGuestOff(request: String) throws {
        let dir = try TemporaryDirectory()
        let control = dir.path + "/control.sock"
        let vm = try bootedGuest { try boot(vcpus: 1, extra: ["--control", control]) }
        #expect(vm.waitFor("APUS-INIT: ready", timeout: bootTimeout), "\(vm.output)")
        #expect(vm.waitFor("apus-guest:", timeout: 60))
        #expect(try controlCommand(control, request) == "{\"ok\":true}")
        #expect(vm.waitForExit(timeout: 120) == 0, "\(vm.output)")
        #expect(vm.output.contains("APUS-INIT: shutting down"), "\(vm.output)")
    }
}
