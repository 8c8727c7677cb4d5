import Testing
import SaveState
@testable import Machine

/// Platform devices' state through a saved machine's DEV sections: put in a
/// state only a running guest leaves them in, saved, restored into fresh
/// devices that then answer the guest the same way.
@Suite struct DeviceStateTests {
    func roundTrip<D: SavableDevice>(_ from: D, _ to: D) throws {
        let section = from.stateSection()
        let (name, payload) = try section.deviceParts()
        #expect(name == from.stateName)
        try to.restoreState(payload)
        #expect(to.saveState() == from.saveState())
    }

    @Test func uartRegistersAndUnreadInputComeBack() throws {
        let a = Serial8250(irq: RecordingIRQ(), output: RecordingOutput())
        a.portWrite(offset: 3, size: 1, value: 0x83)   // DLAB
        a.portWrite(offset: 0, size: 1, value: 0x01)   // 115200 baud
        a.portWrite(offset: 3, size: 1, value: 0x03)
        a.portWrite(offset: 1, size: 1, value: 0x01)   // receive interrupts
        a.portWrite(offset: 7, size: 1, value: 0x5a)   // scratch
        a.receive(Array("typed".utf8))
        _ = a.portRead(offset: 0, size: 1)             // 't' read before the save
        let b = Serial8250(irq: RecordingIRQ(), output: RecordingOutput())
        try roundTrip(a, b)
        #expect(b.portRead(offset: 7, size: 1) == 0x5a)
        #expect(b.portRead(offset: 5, size: 1) & 0x01 != 0, "data ready")
        #expect((0..<4).map { _ in UInt8(b.portRead(offset: 0, size: 1)) } == Array("yped".utf8))
        #expect(b.portRead(offset: 2, size: 1) & 0x0f == 0x01, "nothing pending once read")
        var bad = a.saveState()
        bad[0] = 0xf0 // IER bits a 16550A does not have
        #expect(throws: StateFileError.self) { try b.restoreState(bad) }
        #expect(throws: StateFileError.self) { try b.restoreState(Array(a.saveState().dropLast())) }
    }

    @Test func rtcRAMAndIndexComeBack() throws {
        let a = CMOS(now: { 1_795_289_403 })
        a.portWrite(offset: 0, size: 1, value: 0x40)
        a.portWrite(offset: 1, size: 1, value: 0x99)  // CMOS RAM byte 0x40
        a.portWrite(offset: 0, size: 1, value: 0x0b)  // index left at status B
        let b = CMOS(now: { 1_795_289_403 })
        try roundTrip(a, b)
        b.portWrite(offset: 0, size: 1, value: 0x40)
        #expect(b.portRead(offset: 1, size: 1) == 0x99)
        #expect(throws: StateFileError.self) { try b.restoreState([200] + [UInt8](repeating: 0, count: 128)) }
    }

    @Test func acpiEnableBitsComeBack() throws {
        let a = ACPIPowerManagement(sci: RecordingIRQ(), platform: nil)
        a.portWrite(offset: 2, size: 2, value: 0x100)  // PWRBTN_EN
        let b = ACPIPowerManagement(sci: RecordingIRQ(), platform: nil)
        try roundTrip(a, b)
        #expect(b.portRead(offset: 2, size: 2) & 0x100 != 0)
        #expect(throws: StateFileError.self) { try b.restoreState([0, 0, 0, 0, 1, 0, 7]) }
    }

    @Test func keyboardControllerStateComesBackAndItsOutputStaysBounded() throws {
        let a = I8042(irq: RecordingIRQ(), platform: nil)
        a.portWrite(offset: 4, size: 1, value: 0x60)   // write CTR: the next data byte
        let b = I8042(irq: RecordingIRQ(), platform: nil)
        try roundTrip(a, b)
        b.portWrite(offset: 0, size: 1, value: 0x47)   // ...is the CTR, on the restored controller
        b.portWrite(offset: 4, size: 1, value: 0x20)   // read CTR
        #expect(b.portRead(offset: 0, size: 1) == 0x47)
        // A guest that asks and never reads: the output queue stays bounded.
        for _ in 0..<10_000 { b.portWrite(offset: 4, size: 1, value: 0x20) }
        #expect(b.saveState().count < I8042.maxOutput + 16)
        var bad = a.saveState()
        bad[bad.count - 1] = 9 // scancode set 9
        #expect(throws: StateFileError.self) { try b.restoreState(bad) }
    }
}
