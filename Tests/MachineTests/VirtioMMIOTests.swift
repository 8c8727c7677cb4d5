import Testing
import Synchronization
import ApusSys
import GuestMemory
import SaveState
@testable import Machine

/// A device model double for the transport.
final class FakeVirtioDevice: VirtioDeviceModel, @unchecked Sendable {
    let deviceID: UInt32 = 2
    let deviceFeatures: UInt64 = (1 << 32) | (1 << 29) | (1 << 9)
    let queueCount = 2
    let maxQueueSize: UInt16 = 128
    let alwaysPendingInterrupts: UInt32 = VirtioInterrupt.usedBuffer
    let activations = Mutex<[(UInt64, [VirtioQueueConfig])]>([])
    let resets = Atomic<Int>(0)
    var activateResult = true
    func configBytes() -> [UInt8] { [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80] }
    func activate(features: UInt64, queues: [VirtioQueueConfig]) -> Bool {
        activations.withLock { $0.append((features, queues)) }
        return activateResult
    }
    func reset() { resets.add(1, ordering: .relaxed) }
    let resumes = Mutex<[VirtioResume]>([])
    func quiesce() throws -> [UInt16] { [7, 0] }
    func resume(features: UInt64, queues: [VirtioQueueConfig], bases: [UInt16]) -> Bool {
        resumes.withLock { $0.append(VirtioResume(features: features, queues: queues, bases: bases)) }
        return activateResult
    }
}

@Suite struct VirtioMMIOTests {
    let device = FakeVirtioDevice()
    let irq = RecordingIRQ()
    let kicks: [EventFD]
    let transport: VirtioMMIOTransport

    init() throws {
        kicks = [try EventFD(), try EventFD()]
        transport = VirtioMMIOTransport(device: device, interrupt: irq, kicks: kicks)
    }

    func r(_ o: UInt64) -> UInt32 { UInt32(transport.mmioRead(offset: o, size: 4)) }
    func w(_ o: UInt64, _ v: UInt32) { transport.mmioWrite(offset: o, size: 4, value: UInt64(v)) }

    /// What Linux's virtio_mmio probe and virtio core do, in order.
    func negotiate(features: UInt64 = (1 << 32) | (1 << 29)) {
        w(VirtioMMIORegister.status, 0)
        w(VirtioMMIORegister.status, VirtioStatus.acknowledge)
        w(VirtioMMIORegister.status, VirtioStatus.acknowledge | VirtioStatus.driver)
        w(VirtioMMIORegister.driverFeaturesSel, 0); w(VirtioMMIORegister.driverFeatures, UInt32(truncatingIfNeeded: features))
        w(VirtioMMIORegister.driverFeaturesSel, 1); w(VirtioMMIORegister.driverFeatures, UInt32(features >> 32))
        w(VirtioMMIORegister.status, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
    }

    func setUpQueue(_ i: UInt32, size: UInt32 = 64) {
        w(VirtioMMIORegister.queueSel, i)
        w(VirtioMMIORegister.queueNum, size)
        w(VirtioMMIORegister.queueDescLow, 0x1000 * (i + 1)); w(VirtioMMIORegister.queueDescHigh, 0)
        w(VirtioMMIORegister.queueDriverLow, 0x1000 * (i + 1) + 0x400); w(VirtioMMIORegister.queueDriverHigh, 0)
        w(VirtioMMIORegister.queueDeviceLow, 0x1000 * (i + 1) + 0x800); w(VirtioMMIORegister.queueDeviceHigh, 1)
        w(VirtioMMIORegister.queueReady, 1)
    }

    @Test func identifiesAsAVersion2Device() {
        #expect(r(VirtioMMIORegister.magicValue) == 0x7472_6976)
        #expect(r(VirtioMMIORegister.version) == 2)
        #expect(r(VirtioMMIORegister.deviceID) == 2)
        w(VirtioMMIORegister.deviceFeaturesSel, 0)
        #expect(r(VirtioMMIORegister.deviceFeatures) == (1 << 29) | (1 << 9))
        w(VirtioMMIORegister.deviceFeaturesSel, 1)
        #expect(r(VirtioMMIORegister.deviceFeatures) == 1)
        w(VirtioMMIORegister.queueSel, 1)
        #expect(r(VirtioMMIORegister.queueNumMax) == 128)
        w(VirtioMMIORegister.queueSel, 2)
        #expect(r(VirtioMMIORegister.queueNumMax) == 0) // no third queue
        #expect(transport.mmioRead(offset: 0x102, size: 2) == 0x4030) // config space, any width
    }

    @Test func driverOKActivatesWithTheNegotiatedState() {
        negotiate()
        #expect(r(VirtioMMIORegister.status) & VirtioStatus.featuresOK != 0)
        setUpQueue(0)
        setUpQueue(1, size: 32)
        w(VirtioMMIORegister.status, 0xF)
        let (features, queues) = device.activations.withLock { $0[0] }
        #expect(features == (1 << 32) | (1 << 29))
        #expect(queues[0] == VirtioQueueConfig(size: 64, ready: true, descriptorTable: 0x1000, availRing: 0x1400, usedRing: 0x1_0000_1800))
        #expect(queues[1].size == 32 && queues[1].ready)
        // Queue registers are frozen while running.
        w(VirtioMMIORegister.queueSel, 0); w(VirtioMMIORegister.queueNum, 16)
        #expect(transport.queueConfigs[0].size == 64)
    }

    @Test func unofferedFeaturesAreNotAccepted() {
        negotiate(features: (1 << 32) | (1 << 3))
        #expect(r(VirtioMMIORegister.status) & VirtioStatus.featuresOK == 0)
        negotiate(features: 1 << 29) // legacy (no VERSION_1)
        #expect(r(VirtioMMIORegister.status) & VirtioStatus.featuresOK == 0)
    }

    @Test func failedActivationReportsNeedsReset() {
        device.activateResult = false
        negotiate()
        setUpQueue(0)
        w(VirtioMMIORegister.status, 0xF)
        #expect(r(VirtioMMIORegister.status) & VirtioStatus.needsReset != 0)
        #expect(irq.count == 1)
        #expect(r(VirtioMMIORegister.interruptStatus) & VirtioInterrupt.configChange != 0)
        #expect(r(VirtioMMIORegister.interruptStatus) & VirtioInterrupt.configChange == 0) // read-to-clear
    }

    @Test func resetClearsEverything() {
        negotiate()
        setUpQueue(0)
        w(VirtioMMIORegister.status, 0xF)
        w(VirtioMMIORegister.status, 0)
        #expect(device.resets.load(ordering: .relaxed) >= 2)
        #expect(r(VirtioMMIORegister.status) == 0)
        #expect(transport.queueConfigs[0] == VirtioQueueConfig())
    }

    @Test func notifyFallbackSignalsTheKick() {
        w(VirtioMMIORegister.queueNotify, 1)
        #expect(kicks[1].drain() == 1)
        w(VirtioMMIORegister.queueNotify, 7) // no such queue
        #expect(kicks[0].drain() == 0)
    }

    @Test func usedBufferInterruptIsAlwaysReportedWhileRunning() {
        #expect(r(VirtioMMIORegister.interruptStatus) == 0)
        negotiate()
        setUpQueue(0)
        w(VirtioMMIORegister.status, 0xF)
        #expect(r(VirtioMMIORegister.interruptStatus) == VirtioInterrupt.usedBuffer)
    }

    @Test func registerPageMirrorsReadableRegisters() throws {
        let page = try RegisterPage()
        transport.attach(page)
        #expect(page.load32(at: 0) == 0x7472_6976)
        #expect(page.load32(at: Int(VirtioMMIORegister.deviceID)) == 2)
        #expect(page.load32(at: Int(VirtioMMIORegister.config)) == 0x4030_2010)
        w(VirtioMMIORegister.deviceFeaturesSel, 1)
        #expect(page.load32(at: Int(VirtioMMIORegister.deviceFeatures)) == 1)
        negotiate()
        setUpQueue(0)
        w(VirtioMMIORegister.status, 0xF)
        #expect(page.load32(at: Int(VirtioMMIORegister.status)) == 0xF)
        #expect(page.load32(at: Int(VirtioMMIORegister.interruptStatus)) == VirtioInterrupt.usedBuffer)
        transport.signalNeedsReset()
        #expect(page.load32(at: Int(VirtioMMIORegister.status)) & VirtioStatus.needsReset != 0)
        #expect(page.load32(at: Int(VirtioMMIORegister.interruptStatus)) == 3)
        transport.interruptsAcknowledged()
        #expect(page.load32(at: Int(VirtioMMIORegister.interruptStatus)) == 1)
        transport.clearNeedsReset()
        #expect(page.load32(at: Int(VirtioMMIORegister.status)) == 0xF)
    }

    @Test func savedRegistersComeBackInANewTransportAndTheDeviceResumesAtItsBases() throws {
        negotiate()
        setUpQueue(0)
        setUpQueue(1, size: 32)
        w(VirtioMMIORegister.status, 0xF)
        transport.signalConfigChange()
        let saved = transport.saveState(bases: try device.quiesce())

        let other = FakeVirtioDevice()
        let restored = VirtioMMIOTransport(device: other, interrupt: RecordingIRQ(), kicks: kicks)
        let resume = try restored.restoreState(saved)
        #expect(resume == VirtioResume(features: (1 << 32) | (1 << 29), queues: transport.queueConfigs, bases: [7, 0]))
        #expect(other.activations.withLock { $0.isEmpty }, "a restored device resumes; it is not activated afresh")
        #expect(restored.status == 0xF && restored.driverFeatures == transport.driverFeatures)
        #expect(restored.mmioRead(offset: VirtioMMIORegister.configGeneration, size: 4) == 1)
        #expect(restored.saveState(bases: [7, 0]) == saved)

        // A device the driver never started resumes nothing.
        let idle = VirtioMMIOTransport(device: FakeVirtioDevice(), interrupt: RecordingIRQ(), kicks: kicks)
        #expect(try VirtioMMIOTransport(device: FakeVirtioDevice(), interrupt: RecordingIRQ(), kicks: kicks)
            .restoreState(idle.saveState(bases: [])) == nil)
    }

    @Test func savedRegistersTheTransportNeverHoldsAreRefused() throws {
        negotiate()
        setUpQueue(0)
        w(VirtioMMIORegister.status, 0xF)
        let saved = transport.saveState(bases: [3, 0])
        func damaged(_ at: Int, _ value: UInt8) -> [UInt8] { var b = saved; b[at] = value; return b }
        let fresh = { VirtioMMIOTransport(device: FakeVirtioDevice(), interrupt: RecordingIRQ(), kicks: self.kicks) }
        #expect(throws: StateFileError.self, "another device type") { try fresh().restoreState(damaged(0, 1)) }
        #expect(throws: StateFileError.self, "other offered features") { try fresh().restoreState(damaged(4, 0xFF)) }
        #expect(throws: StateFileError.self, "a status bit no one sets") { try fresh().restoreState(damaged(32, 0x30)) }
        #expect(throws: StateFileError.self, "a queue count the device lacks") { try fresh().restoreState(damaged(44, 3)) }
        #expect(throws: StateFileError.self, "a queue size that is not a power of two") { try fresh().restoreState(damaged(46, 63)) }
        #expect(throws: StateFileError.self, "truncated") { try fresh().restoreState(Array(saved.dropLast())) }
        #expect(throws: StateFileError.self, "features the device never offered") {
            var b = saved
            b[23] = 0x80 // driver features bit 63
            return try fresh().restoreState(b)
        }
        #expect(try fresh().restoreState(saved) != nil)
    }
}
