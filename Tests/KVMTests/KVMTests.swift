import Testing
import TestSupport
import Synchronization
import ApusSys
import GuestMemory
@testable import KVM
@testable import Machine

/// Records port and MMIO traffic; answers reads with fixed values.
final class TrafficRecorder: VCPUExitHandler {
    let log = Mutex<[String]>([])
    func portRead(_ port: UInt16, size: Int, vcpu: UInt32) -> UInt32 {
        log.withLock { $0.append("in \(String(port, radix: 16))/\(size)") }
        return 0x77
    }
    func portWrite(_ port: UInt16, size: Int, value: UInt32, vcpu: UInt32) {
        log.withLock { $0.append("out \(String(port, radix: 16))/\(size)=\(String(value, radix: 16))") }
    }
    func mmioRead(_ address: UInt64, size: Int, vcpu: UInt32) -> UInt64 {
        log.withLock { $0.append("read \(String(address, radix: 16))/\(size)") }
        return 0x99
    }
    func mmioWrite(_ address: UInt64, size: Int, value: UInt64, vcpu: UInt32) {
        log.withLock { $0.append("write \(String(address, radix: 16))/\(size)=\(String(value, radix: 16))") }
    }
    var entries: [String] { log.withLock { $0 } }
}

/// A VM with 16 MiB of RAM and one vCPU entering `code` at 0x100200 in
/// 64-bit long mode, set up exactly as apus-hv sets up a boot processor
/// (Machine's boot GDT, 4 GiB identity map and CPUSetup). 0x3000000 is
/// mapped by the page tables but is not RAM, so accesses there are MMIO.
func longModeGuest(_ code: [UInt8]) throws -> (VirtualMachine, VCPU, GuestMemory) {
    let kvm = try KVMSystem()
    let vm = try kvm.createVM()
    try vm.setTSSAddress(Layout.tss)
    let memory = try GuestMemory(ranges: [(GuestAddress(0), 16 << 20)])
    try vm.map(memory)
    try memory.write(bytes: PageTables.bytes(BootGDT.entries), at: GuestAddress(Layout.gdt))
    for (address, bytes) in PageTables.identityMap4GiB() { try memory.write(bytes: bytes, at: GuestAddress(address)) }
    try memory.write(bytes: code, at: GuestAddress(entryPoint))
    let vcpu = try vm.createVCPU(id: 0)
    try vcpu.setCPUID(CPUSetup.cpuid(try kvm.supportedCPUID(), vcpu: 0, count: 1))
    try vcpu.setMSRs(CPUSetup.msrs(supported: Set(try kvm.msrIndexList())))
    try vcpu.setDefaultFPU()
    try vcpu.setSpecialRegisters(CPUSetup.bootSpecialRegisters(try vcpu.specialRegisters()))
    try vcpu.setRegisters(CPUSetup.bootRegisters(BootEntry(rip: entryPoint, rsp: Layout.bootStack, bootParams: Layout.zeroPage)))
    return (vm, vcpu, memory)
}

let entryPoint: UInt64 = 0x100200

@Suite(.enabled(if: kvmAvailable, "needs /dev/kvm"), .serialized)
struct KVMTests {
    @Test func systemReportsWhatApusNeeds() throws {
        let kvm = try KVMSystem()
        try kvm.requireCapabilities()
        #expect(kvm.vcpuMmapSize >= 4096)
        let cpuid = try kvm.supportedCPUID()
        #expect(cpuid.contains { $0.function == 0 })
        #expect(cpuid.contains { $0.function == 1 })
        #expect(try kvm.msrIndexList().contains(0x10)) // TSC
    }

    @Test func portIOExitsReachTheHandler() throws {
        // mov al,0x42; out 0x10,al; in al,0x11; out 0x12,al; mov ax,0x1234; out 0x14,ax; hlt
        let (vm, vcpu, memory) = try longModeGuest([0xB0, 0x42, 0xE6, 0x10, 0xE4, 0x11, 0xE6, 0x12,
                                              0x66, 0xB8, 0x34, 0x12, 0x66, 0xE7, 0x14, 0xF4])
        let rec = TrafficRecorder()
        let stop = try vcpu.run(handler: rec)
        #expect(stop == .halt)
        #expect(rec.entries == ["out 10/1=42", "in 11/1", "out 12/1=77", "out 14/2=1234"])
        #expect(vcpu.ioExits.load(ordering: .relaxed) == 4)
        #expect(try vcpu.registers().rip == entryPoint + 0x10)
        withExtendedLifetime((vm, memory)) {}
    }

    @Test func mmioExitsReachTheHandler() throws {
        // mov byte [0x3000000],0x55; mov al,[0x3000000]; out 0x20,al; hlt
        let (vm, vcpu, memory) = try longModeGuest([0xC6, 0x04, 0x25, 0x00, 0x00, 0x00, 0x03, 0x55,
                                              0x8A, 0x04, 0x25, 0x00, 0x00, 0x00, 0x03, 0xE6, 0x20, 0xF4])
        let rec = TrafficRecorder()
        #expect(try vcpu.run(handler: rec) == .halt)
        #expect(rec.entries == ["write 3000000/1=55", "read 3000000/1", "out 20/1=99"])
        #expect(vcpu.mmioExits.load(ordering: .relaxed) == 2)
        withExtendedLifetime((vm, memory)) {}
    }

    @Test func guestWritesLandInSharedMemory() throws {
        // mov word [0x1800],0xBEEF; hlt
        let (vm, vcpu, memory) = try longModeGuest([0x66, 0xC7, 0x04, 0x25, 0x00, 0x18, 0x00, 0x00, 0xEF, 0xBE, 0xF4])
        #expect(try vcpu.run(handler: TrafficRecorder()) == .halt)
        #expect(try memory.read(UInt16.self, at: GuestAddress(0x1800)) == 0xBEEF)
        withExtendedLifetime((vm, memory)) {}
    }

    @Test func immediateExitInterruptsRun() throws {
        // jmp $ (spin forever)
        let (vm, vcpu, memory) = try longModeGuest([0xEB, 0xFE])
        vcpu.requestImmediateExit(true)
        #expect(try vcpu.run(handler: TrafficRecorder()) == .interrupted)
        vcpu.requestImmediateExit(false)
        withExtendedLifetime((vm, memory)) {}
    }

    @Test func kickSignalStopsARunningGuest() throws {
        try Signals.installKickHandler()
        // out 0x80,al; jmp back: a guest that keeps running (and exiting).
        let (vm, vcpu, memory) = try longModeGuest([0xE6, 0x80, 0xEB, 0xFC])
        let result = Mutex<VCPUStop?>(nil)
        let thread = OSThread(name: "kick-test") {
            let stop = try? vcpu.run(handler: TrafficRecorder())
            result.withLock { $0 = stop }
        }
        try thread.start()
        Clock.sleep(nanoseconds: 50_000_000)
        vcpu.requestImmediateExit(true)
        thread.send(signal: Signals.vcpuKick)
        thread.join()
        #expect(result.withLock { $0 } == .interrupted)
        withExtendedLifetime((vm, memory)) {}
    }

    @Test func tripleFaultIsReportedAsShutdown() throws {
        // ud2 with the boot IDT (one empty gate): #UD -> #DF -> triple fault
        let (vm, vcpu, memory) = try longModeGuest([0x0F, 0x0B])
        let stop = try vcpu.run(handler: TrafficRecorder())
        let rip = try vcpu.registers().rip
        #expect(stop == .shutdown, "stopped with \(stop) at rip 0x\(String(rip, radix: 16))")
        withExtendedLifetime((vm, memory)) {}
    }

    @Test func irqchipAndIoeventfd() throws {
        let kvm = try KVMSystem()
        let vm = try kvm.createVM()
        try vm.createIRQChip()
        try vm.createPIT()
        let e = try EventFD()
        try vm.registerIRQFD(e, gsi: 5)
        try vm.registerIoeventfd(e, address: 0xD000_0050, length: 4, dataMatch: 0)
        vm.unregisterIoeventfd(e, address: 0xD000_0050, length: 4, dataMatch: 0)
        vm.unregisterIRQFD(e, gsi: 5)
        try vm.setIRQLine(9, level: true)
        try vm.setIRQLine(9, level: false)
    }

    @Test func cpuidAndMSRsRoundTrip() throws {
        let kvm = try KVMSystem()
        let vm = try kvm.createVM()
        try vm.createIRQChip()
        let vcpu = try vm.createVCPU(id: 0)
        try vcpu.setCPUID(try kvm.supportedCPUID())
    try vcpu.setDefaultFPU()
        try vcpu.setMSRs([MSREntry(0xC000_0102, 0x1234_5678)])
        #expect(try vcpu.msrs([0xC000_0102]) == [MSREntry(0xC000_0102, 0x1234_5678)])
        var lapic = try vcpu.lapic()
        lapic.setRegister(0x350, 0x700)
        try vcpu.setLAPIC(lapic)
        #expect(try vcpu.lapic().register(0x350) & 0x700 == 0x700)
    }
}

@Suite struct HostKVMTests {
    @Test func vendorModuleDetection() {
        // Whatever this host is, the answer is consistent with /sys/module.
        let m = HostKVM.vendorModule()
        if HostKVM.isHardwareAssisted { #expect(m == "kvm_intel" || m == "kvm_amd") }
    }
}
