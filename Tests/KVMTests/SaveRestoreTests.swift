import Testing
import TestSupport
import Synchronization
import GuestMemory
import SaveState
@testable import KVM
import Machine

/// Counts a guest's port writes and stops its vCPU after a number of them.
final class CountingHandler: VCPUExitHandler {
    let vcpu: VCPU
    let stopAfter: Int
    let values = Mutex<[UInt32]>([])
    init(vcpu: VCPU, stopAfter: Int) {
        self.vcpu = vcpu
        self.stopAfter = stopAfter
    }
    func portRead(_ port: UInt16, size: Int, vcpu: UInt32) -> UInt32 { 0 }
    func portWrite(_ port: UInt16, size: Int, value: UInt32, vcpu: UInt32) {
        let n = values.withLock { $0.append(value); return $0.count }
        // KVM completes the pending OUT, then returns before entering the guest.
        if n == stopAfter { self.vcpu.requestImmediateExit(true) }
    }
    func mmioRead(_ address: UInt64, size: Int, vcpu: UInt32) -> UInt64 { 0 }
    func mmioWrite(_ address: UInt64, size: Int, value: UInt64, vcpu: UInt32) {}
}

@Suite(.enabled(if: kvmAvailable, "needs /dev/kvm"), .serialized)
struct SaveRestoreTests {
    /// loop: inc rbx; mov [0x200000],rbx; add r12,rbx; mov eax,ebx; out 0x80,eax; jmp loop
    static let counter: [UInt8] = [0x48, 0xFF, 0xC3, 0x48, 0x89, 0x1C, 0x25, 0x00, 0x00, 0x20, 0x00,
                                   0x49, 0x01, 0xDC, 0x89, 0xD8, 0xE7, 0x80, 0xEB, 0xEC]

    @Test func aCountingGuestSavedToAFileGoesOnFromTheSameValueInANewVM() throws {
        let kvm = try KVMSystem()
        let (vmA, a, memoryA) = try longModeGuest(Self.counter)
        let first = CountingHandler(vcpu: a, stopAfter: 1000)
        #expect(try a.run(handler: first) == .interrupted)
        a.requestImmediateExit(false)
        #expect(first.values.withLock { $0.last } == 1000)
        #expect(try a.registers().rbx == 1000 && memoryA.read(UInt64.self, at: GuestAddress(0x200000)) == 1000)
        let saved = try a.saveState(msrIndices: try kvm.msrIndexList(), irqchip: false)
        #expect(saved.msrs.contains { $0.index == 0x10 }, "the TSC is among the MSRs saved")

        let file = StateBytes()
        let writer = try StateWriter(file)
        try writer.write(StateSection(tag: .vcpu, payload: saved.encoded(vcpu: 0)))
        let counts = try GuestRAMState.save(memoryA, to: writer)
        try writer.finish()
        #expect(counts.pagesWritten < 64, "16 MiB of RAM, a few pages of it used: \(counts)")

        // A new VM whose code at the entry point is only HLT: the counter,
        // its registers and its page tables come from the file.
        let (vmB, b, memoryB) = try longModeGuest([0xF4])
        let reader = try StateReader(StateBytes(file.bytes), known: [.vcpu, .ram])
        while let section = try reader.next() {
            if section.tag == .vcpu {
                let (id, state) = try VCPUState.decode(section.payload)
                #expect(id == 0 && state == saved)
                try b.restoreState(state)
            } else {
                try GuestRAMState.load(section, into: memoryB)
            }
        }
        let restored = try b.saveState(msrIndices: try kvm.msrIndexList(), irqchip: false)
        #expect(restored.registers == saved.registers && restored.specialRegisters == saved.specialRegisters && restored.xsave == saved.xsave)

        let second = CountingHandler(vcpu: b, stopAfter: 10)
        #expect(try b.run(handler: second) == .interrupted)
        #expect(second.values.withLock { $0 } == Array(1001...1010))
        let r = try b.registers()
        #expect(r.rbx == 1010 && r.r12 == (1...1010).reduce(0, +))
        #expect(try memoryB.read(UInt64.self, at: GuestAddress(0x200000)) == 1010)
        withExtendedLifetime((vmA, vmB, memoryA)) {}
    }

    func machineWithIRQChip() throws -> VirtualMachine {
        let vm = try KVMSystem().createVM()
        try vm.setTSSAddress(Layout.tss)
        try vm.createIRQChip()
        try vm.createPIT()
        return vm
    }

    @Test func theInterruptControllersPITAndClockComeBackInANewVM() throws {
        let a = try machineWithIRQChip()
        try a.setIRQLine(4, level: true) // the serial line raised: the PIC's and IOAPIC's state change
        let saved = try a.saveState(irqchip: true, pit: true)
        #expect(saved.irqchips.count == 3 && !saved.pit.isEmpty)
        let decoded = try VMState.decode(saved.encoded())
        #expect(decoded == saved)

        let b = try machineWithIRQChip()
        #expect(try b.saveState(irqchip: true, pit: true).irqchips != saved.irqchips, "a fresh machine's controllers differ")
        try b.restoreState(decoded)
        let back = try b.saveState(irqchip: true, pit: true)
        #expect(back.irqchips == saved.irqchips)
        #expect(back.clockNanoseconds >= saved.clockNanoseconds && back.clockNanoseconds - saved.clockNanoseconds < 1_000_000_000,
                "the clock resumes at the saved value, not at the new machine's")
        // Damaged sections are refused by name, not applied.
        var wrongChip = saved
        wrongChip.irqchips.swapAt(0, 2)
        #expect(throws: StateFileError.self) { _ = try VMState.decode(wrongChip.encoded()) }
        #expect(throws: StateFileError.self) { _ = try VMState.decode([3, 0, 0, 0]) }
    }

    @Test func aVCPUSectionOfTheWrongShapeIsRefused() throws {
        var s = VCPUState()
        s.registers = [1, 2, 3]
        #expect(throws: StateFileError.self) { _ = try VCPUState.decode(s.encoded(vcpu: 0)) }
        #expect(throws: StateFileError.self) { _ = try VCPUState.decode([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]) }
    }
}
