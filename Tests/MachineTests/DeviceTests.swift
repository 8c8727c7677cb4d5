import Testing
import Synchronization
@testable import Machine

final class RecordingIRQ: InterruptLine {
    let edges = Atomic<Int>(0)
    let level = Mutex(false)
    func trigger() { edges.add(1, ordering: .relaxed) }
    func setLevel(_ high: Bool) { level.withLock { $0 = high } }
    var count: Int { edges.load(ordering: .relaxed) }
    var isHigh: Bool { level.withLock { $0 } }
}

final class RecordingOutput: SerialOutput {
    let bytes = Mutex<[UInt8]>([])
    func transmit(_ byte: UInt8) { bytes.withLock { $0.append(byte) } }
    var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
}

final class RecordingPlatform: PlatformControl {
    let events = Mutex<[String]>([])
    func guestRequestedPowerOff() { events.withLock { $0.append("poweroff") } }
    func guestRequestedReset() { events.withLock { $0.append("reset") } }
    var log: [String] { events.withLock { $0 } }
}

@Suite struct Serial8250Tests {
    let irq = RecordingIRQ()
    let out = RecordingOutput()
    var uart: Serial8250 { cachedUART }
    let cachedUART: Serial8250

    init() { cachedUART = Serial8250(irq: irq, output: out) }

    @Test func transmitsBytes() {
        for c in "hi\n".utf8 { uart.portWrite(offset: 0, size: 1, value: UInt32(c)) }
        #expect(out.text == "hi\n")
        #expect(uart.portRead(offset: 5, size: 1) & 0x60 == 0x60) // THRE|TEMT: always ready
    }

    @Test func divisorLatchDoesNotTransmit() {
        uart.portWrite(offset: 3, size: 1, value: 0x80)
        uart.portWrite(offset: 0, size: 1, value: 0x01)
        uart.portWrite(offset: 1, size: 1, value: 0x02)
        #expect(uart.portRead(offset: 0, size: 1) == 0x01)
        #expect(uart.portRead(offset: 1, size: 1) == 0x02)
        uart.portWrite(offset: 3, size: 1, value: 0x03)
        #expect(out.text.isEmpty)
        #expect(uart.portRead(offset: 1, size: 1) == 0) // IER back
    }

    @Test func receiveRaisesDataReadyInterrupt() {
        uart.receive(Array("ab".utf8))
        #expect(irq.count == 0)                                // RDA not enabled yet
        #expect(uart.portRead(offset: 5, size: 1) & 1 == 1)    // data ready
        uart.portWrite(offset: 1, size: 1, value: 0x01)        // enable RDA
        #expect(irq.count == 1)                                // enabling with data pending fires
        #expect(uart.portRead(offset: 2, size: 1) & 0x0F == 0x04)
        #expect(uart.portRead(offset: 0, size: 1) == UInt32(UInt8(ascii: "a")))
        #expect(uart.portRead(offset: 0, size: 1) == UInt32(UInt8(ascii: "b")))
        #expect(uart.portRead(offset: 5, size: 1) & 1 == 0)
        #expect(uart.portRead(offset: 2, size: 1) & 0x0F == 0x01) // nothing pending
        uart.receive([0x41])
        #expect(irq.count == 2)
    }

    @Test func thrEmptyInterruptIsAcknowledgedByReadingIIR() {
        uart.portWrite(offset: 1, size: 1, value: 0x02)        // enable THRE
        #expect(irq.count == 1)
        #expect(uart.portRead(offset: 2, size: 1) & 0x0F == 0x02)
        #expect(uart.portRead(offset: 2, size: 1) & 0x0F == 0x01) // acknowledged
        uart.portWrite(offset: 0, size: 1, value: 0x41)
        #expect(irq.count == 2)
    }

    @Test func loopbackEchoesAndMirrorsModemLines() {
        uart.portWrite(offset: 4, size: 1, value: 0x10 | 0x0A)  // loopback, RTS, OUT2
        #expect(uart.portRead(offset: 6, size: 1) & 0xF0 == 0x90) // CTS, DCD
        uart.portWrite(offset: 0, size: 1, value: 0x5A)
        #expect(out.text.isEmpty)
        #expect(uart.portRead(offset: 0, size: 1) == 0x5A)
        #expect(uart.receive([1, 2, 3]) == 0)                  // console input held off in loopback
    }

    @Test func receiveBufferIsBounded() {
        let n = uart.receive([UInt8](repeating: 0x41, count: Serial8250.receiveCapacity + 100))
        #expect(n == Serial8250.receiveCapacity)
        #expect(uart.receiveSpace == 0)
        _ = uart.portRead(offset: 0, size: 1)
        #expect(uart.receiveSpace == 1)
    }

    @Test func fifoControlClearsReceive() {
        uart.receive([1, 2])
        uart.portWrite(offset: 2, size: 1, value: 0x03)
        #expect(uart.portRead(offset: 5, size: 1) & 1 == 0)
        #expect(uart.portRead(offset: 2, size: 1) & 0xC0 == 0xC0)
    }
}

@Suite struct I8042Tests {
    let irq = RecordingIRQ()
    let platform = RecordingPlatform()
    let kbc: I8042
    init() { kbc = I8042(irq: irq, platform: platform) }

    func command(_ c: UInt8) { kbc.portWrite(offset: 4, size: 1, value: UInt32(c)) }
    func data(_ d: UInt8) { kbc.portWrite(offset: 0, size: 1, value: UInt32(d)) }
    func read() -> UInt8 { UInt8(kbc.portRead(offset: 0, size: 1)) }
    func status() -> UInt8 { UInt8(kbc.portRead(offset: 4, size: 1)) }

    @Test func controllerSelfTestAndConfigByte() {
        command(0xAA)
        #expect(status() & 1 == 1)
        #expect(read() == 0x55)
        command(0x60); data(0x47)
        command(0x20)
        #expect(read() == 0x47)
        #expect(status() & 0x10 != 0) // not inhibited
    }

    @Test func keyboardIdentifiesAsMF2() {
        data(0xF2)
        #expect([read(), read(), read()] == [0xFA, 0xAB, 0x83])
        data(0xFF)
        #expect([read(), read()] == [0xFA, 0xAA])
        data(0xED); data(0x07)
        #expect([read(), read()] == [0xFA, 0xFA])
    }

    @Test func resetThroughTheController() {
        command(0xFE)
        #expect(platform.log == ["reset"])
        command(0xD1); data(0x00)
        #expect(platform.log == ["reset", "reset"])
        command(0xD1); data(0x01)
        #expect(platform.log.count == 2)
    }

    @Test func ctrlAltDelInSet2AndTranslated() {
        kbc.injectCtrlAltDel()
        #expect(irq.count == 1)
        var bytes: [UInt8] = []
        while status() & 1 == 1 { bytes.append(read()) }
        #expect(bytes == [0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0, 0x71, 0xF0, 0x11, 0xF0, 0x14])
        #expect(irq.count == 11) // one edge per byte
        command(0x60); data(0x45) // translation on
        kbc.injectCtrlAltDel()
        bytes = []
        while status() & 1 == 1 { bytes.append(read()) }
        #expect(bytes == [0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D])
    }

    @Test func noInterruptWhenDisabledByConfig() {
        command(0x60); data(0x04)
        let before = irq.count
        kbc.injectCtrlAltDel()
        #expect(irq.count == before)
    }
}

@Suite struct CMOSTests {
    // 2026-11-21 19:30:03 UTC, a Saturday.
    let rtc = CMOS(now: { 1_795_289_403 })

    func reg(_ i: UInt8) -> UInt8 {
        rtc.portWrite(offset: 0, size: 1, value: UInt32(i))
        return UInt8(rtc.portRead(offset: 1, size: 1))
    }

    @Test func readsBCDTime() {
        #expect(reg(0x00) == 0x03)
        #expect(reg(0x02) == 0x30)
        #expect(reg(0x04) == 0x19)
        #expect(reg(0x07) == 0x21)
        #expect(reg(0x08) == 0x11)
        #expect(reg(0x09) == 0x26)
        #expect(reg(0x32) == 0x20)
        #expect(reg(0x06) == 0x07) // Saturday = 7
        #expect(reg(0x0D) == 0x80)
        #expect(reg(0x0A) & 0x80 == 0) // no update in progress
    }

    @Test func binaryAnd12HourModes() {
        rtc.portWrite(offset: 0, size: 1, value: 0x0B)
        rtc.portWrite(offset: 1, size: 1, value: 0x04) // binary, 12-hour
        #expect(reg(0x04) == 0x80 | 7)                 // 7 PM
        #expect(reg(0x02) == 30)
    }

    @Test func ramBytesPersistAndNMIBitIgnored() {
        rtc.portWrite(offset: 0, size: 1, value: 0x80 | 0x40)
        rtc.portWrite(offset: 1, size: 1, value: 0x99)
        #expect(reg(0x40) == 0x99)
    }
}

@Suite struct ACPIPMTests {
    let sci = RecordingIRQ()
    let platform = RecordingPlatform()
    let pm: ACPIPowerManagement
    init() { pm = ACPIPowerManagement(sci: sci, platform: platform) }

    @Test func powerButtonRaisesSCIOnlyWhenEnabled() {
        pm.pressPowerButton()
        #expect(!sci.isHigh)
        #expect(pm.portRead(offset: 0, size: 2) & 0x100 != 0) // PWRBTN_STS
        pm.portWrite(offset: 2, size: 2, value: 0x100)         // PWRBTN_EN
        #expect(sci.isHigh)
        pm.portWrite(offset: 0, size: 2, value: 0x100)         // write 1 to clear
        #expect(!sci.isHigh)
        #expect(pm.portRead(offset: 0, size: 2) & 0x100 == 0)
    }

    @Test func sciEnIsAlwaysSet() {
        #expect(pm.portRead(offset: 4, size: 2) & 1 == 1)
        pm.portWrite(offset: 4, size: 2, value: 0)
        #expect(pm.portRead(offset: 4, size: 2) & 1 == 1)
    }

    @Test func s5SleepPowersOff() {
        pm.portWrite(offset: 4, size: 2, value: UInt32(3 << 10 | 1 << 13)) // S3: ignored
        #expect(platform.log.isEmpty)
        pm.portWrite(offset: 4, size: 2, value: UInt32(5 << 10 | 1 << 13))
        #expect(platform.log == ["poweroff"])
        // Byte-wide write of the high byte: SLP_EN | SLP_TYP=5.
        pm.portWrite(offset: 5, size: 1, value: UInt32((5 << 2) | (1 << 5)))
        #expect(platform.log == ["poweroff", "poweroff"])
    }

    @Test func resetRegister() {
        let reset = ResetControl(platform: platform)
        reset.portWrite(offset: 1, size: 1, value: 0x02)
        #expect(platform.log.isEmpty)
        reset.portWrite(offset: 1, size: 1, value: 0x06)
        #expect(platform.log == ["reset"])
        #expect(reset.portRead(offset: 4, size: 4) == 0xFFFF_FFFF) // no PCI
    }
}

@Suite struct BusTests {
    @Test func routesByRangeAndRefusesOverlap() throws {
        var bus = PortIOBus()
        let a = ResetControl(platform: nil)
        try bus.insert(a, base: 0x100, length: 8)
        #expect(bus.lookup(0x104)?.1 == 4)
        #expect(bus.lookup(0x108) == nil)
        #expect(throws: PortIOBus.BusError.overlap(0x107)) { try bus.insert(a, base: 0x107, length: 2) }
    }
}
