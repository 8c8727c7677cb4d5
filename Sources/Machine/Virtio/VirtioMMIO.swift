import ApusSys
import GuestMemory
import SaveState
import Synchronization

/// virtio-mmio version 2 registers (virtio 1.2 §4.2.2).
public enum VirtioMMIORegister {
    public static let magicValue: UInt64 = 0x000
    public static let version: UInt64 = 0x004
    public static let deviceID: UInt64 = 0x008
    public static let vendorID: UInt64 = 0x00C
    public static let deviceFeatures: UInt64 = 0x010
    public static let deviceFeaturesSel: UInt64 = 0x014
    public static let driverFeatures: UInt64 = 0x020
    public static let driverFeaturesSel: UInt64 = 0x024
    public static let queueSel: UInt64 = 0x030
    public static let queueNumMax: UInt64 = 0x034
    public static let queueNum: UInt64 = 0x038
    public static let queueReady: UInt64 = 0x044
    public static let queueNotify: UInt64 = 0x050
    public static let interruptStatus: UInt64 = 0x060
    public static let interruptAck: UInt64 = 0x064
    public static let status: UInt64 = 0x070
    public static let queueDescLow: UInt64 = 0x080
    public static let queueDescHigh: UInt64 = 0x084
    public static let queueDriverLow: UInt64 = 0x090
    public static let queueDriverHigh: UInt64 = 0x094
    public static let queueDeviceLow: UInt64 = 0x0A0
    public static let queueDeviceHigh: UInt64 = 0x0A4
    public static let shmLenLow: UInt64 = 0x0B0
    public static let shmLenHigh: UInt64 = 0x0B4
    public static let configGeneration: UInt64 = 0x0FC
    public static let config: UInt64 = 0x100

    public static let magic: UInt32 = 0x7472_6976 // "virt"
    /// Vendor ID reported by Apus devices ("APUS").
    public static let vendor: UInt32 = 0x5355_5041
}

/// Device status bits (virtio 1.2 §2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt32 = 1
    public static let driver: UInt32 = 2
    public static let driverOK: UInt32 = 4
    public static let featuresOK: UInt32 = 8
    public static let needsReset: UInt32 = 64
    public static let failed: UInt32 = 128
}

/// Interrupt status bits.
public enum VirtioInterrupt {
    public static let usedBuffer: UInt32 = 1
    public static let configChange: UInt32 = 2
}

/// A queue as the driver configured it through the transport.
public struct VirtioQueueConfig: Equatable, Sendable {
    public var size: UInt16 = 0
    public var ready = false
    public var descriptorTable: UInt64 = 0
    public var availRing: UInt64 = 0
    public var usedRing: UInt64 = 0
}

/// What sits behind a virtio-mmio window: the vhost-user frontend device
/// (whose backend runs in Dom0). Called with the transport's lock held.
public protocol VirtioDeviceModel: AnyObject, Sendable {
    var deviceID: UInt32 { get }
    /// Features offered to the driver.
    var deviceFeatures: UInt64 { get }
    /// Number of virtqueues.
    var queueCount: Int { get }
    /// Largest size of each queue.
    var maxQueueSize: UInt16 { get }
    /// Device config space (cached).
    func configBytes() -> [UInt8]
    /// The driver wrote DRIVER_OK: start the device. Returns false if it cannot (NEEDS_RESET).
    func activate(features: UInt64, queues: [VirtioQueueConfig]) -> Bool
    /// The driver reset the device (status 0).
    func reset()
    /// Interrupt status bits that are always reported (vhost-user backends
    /// raise used-buffer interrupts directly through the irqfd, so the
    /// transport cannot know when; the driver's vring_interrupt() checks the rings).
    var alwaysPendingInterrupts: UInt32 { get }
    /// Stops every started ring for a save, once the backend has completed
    /// what it took; returns the avail index each stopped at (0 for a queue
    /// not started; empty if the device is not running).
    func quiesce() throws -> [UInt16]
    /// Starts the device with the driver's features and queues, each ring
    /// at `bases` (after a save, or in a restored machine). False if it cannot.
    func resume(features: UInt64, queues: [VirtioQueueConfig], bases: [UInt16]) -> Bool
}

/// The virtio-mmio transport: registers, feature and queue negotiation,
/// status, config space. Queue notifications reach the device's kick
/// eventfds through KVM ioeventfds (no exit); the fallback write path here
/// covers the window before they are registered.
public final class VirtioMMIOTransport: MMIODevice, @unchecked Sendable {
    // SAFETY (Sendable): mutable state is in `state` (a Mutex).
    struct State {
        var deviceFeaturesSel: UInt32 = 0
        var driverFeaturesSel: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var queueSel: UInt32 = 0
        var queues: [VirtioQueueConfig]
        var status: UInt32 = 0
        var interruptStatus: UInt32 = 0
        var configGeneration: UInt32 = 0
    }
    private let state: Mutex<State>
    public let device: any VirtioDeviceModel
    /// The device's interrupt: shared with the backend as its call eventfd.
    public let interrupt: any InterruptLine
    /// One kick eventfd per queue (also registered as KVM ioeventfds).
    public let kicks: [EventFD]

    /// The ioeventfd that swallows InterruptACK writes (kept alive here).
    let absorbedAck: EventFD?
    /// Where guest register reads are served from without an exit, if
    /// KVM maps it (read-only memory slot); nil means reads exit.
    private(set) var registerPage: RegisterPage?

    public init(device: any VirtioDeviceModel, interrupt: any InterruptLine, kicks: [EventFD], absorbedAck: EventFD? = nil) {
        self.device = device
        self.interrupt = interrupt
        self.kicks = kicks
        self.absorbedAck = absorbedAck
        state = Mutex(State(queues: Array(repeating: VirtioQueueConfig(), count: device.queueCount)))
    }

    /// Called (outside the lock, from any thread) when a configuration-change
    /// interrupt becomes pending, so the VMM watches for its acknowledgement.
    public var onConfigInterruptPending: (@Sendable () -> Void)?

    /// Serves register reads from `page` from now on (kept current under the lock).
    public func attach(_ page: RegisterPage) {
        state.withLock { s in
            registerPage = page
            refresh(s)
        }
    }

    /// Mirrors every readable register into the register page.
    private func refresh(_ s: State) {
        guard let page = registerPage else { return }
        for offset in stride(from: 0, to: Int(VirtioMMIORegister.config), by: 4) {
            page.store32(register(UInt64(offset), s), at: offset)
        }
        page.store(device.configBytes(), at: Int(VirtioMMIORegister.config))
    }

    /// The driver acknowledged interrupts (the absorbed InterruptACK write):
    /// a pending configuration change is delivered.
    public func interruptsAcknowledged() {
        state.withLock { s in
            guard s.interruptStatus != 0 else { return }
            s.interruptStatus = 0
            refresh(s)
        }
    }

    /// The current device status.
    public var status: UInt32 { state.withLock { $0.status } }

    /// Sets DEVICE_NEEDS_RESET and raises a configuration-change interrupt
    /// (the backend went away mid-flight).
    public func signalNeedsReset() {
        state.withLock { s in
            s.status |= VirtioStatus.needsReset
            s.interruptStatus |= VirtioInterrupt.configChange
            s.configGeneration &+= 1
            refresh(s)
        }
        onConfigInterruptPending?()
        interrupt.trigger()
    }

    /// The device's configuration changed (a disk's capacity): a new
    /// generation and a configuration-change interrupt, as the virtio spec
    /// has devices announce it (2.5.1, 4.2.2).
    public func signalConfigChange() {
        state.withLock { s in
            s.interruptStatus |= VirtioInterrupt.configChange
            s.configGeneration &+= 1
            refresh(s)
        }
        onConfigInterruptPending?()
        interrupt.trigger()
    }

    /// Clears DEVICE_NEEDS_RESET (the backend came back and the device resumed).
    public func clearNeedsReset() {
        state.withLock { s in
            s.status &= ~VirtioStatus.needsReset
            refresh(s)
        }
    }

    /// The queue configuration the driver set (for resuming after a backend restart).
    public var queueConfigs: [VirtioQueueConfig] { state.withLock { $0.queues } }
    /// The features the driver accepted.
    public var driverFeatures: UInt64 { state.withLock { $0.driverFeatures } }

    public func mmioRead(offset: UInt64, size: Int) -> UInt64 {
        if offset >= VirtioMMIORegister.config {
            let config = device.configBytes()
            let o = Int(offset - VirtioMMIORegister.config)
            var v: UInt64 = 0
            for i in 0..<size where o + i < config.count { v |= UInt64(config[o + i]) << (8 * UInt64(i)) }
            return v
        }
        guard size == 4 else { return 0 }
        return UInt64(state.withLock { s -> UInt32 in
            let value = register(offset, s)
            // Read-to-clear on the exit path: the driver acknowledges exactly
            // what it read, and its acknowledgement write is absorbed in the
            // kernel (an ioeventfd) instead of exiting to apus-hv.
            if offset == VirtioMMIORegister.interruptStatus { s.interruptStatus = 0 }
            return value
        })
    }

    /// The value of a readable register.
    private func register(_ offset: UInt64, _ s: State) -> UInt32 {
        switch offset {
        case VirtioMMIORegister.magicValue: return VirtioMMIORegister.magic
        case VirtioMMIORegister.version: return 2
        case VirtioMMIORegister.deviceID: return device.deviceID
        case VirtioMMIORegister.vendorID: return VirtioMMIORegister.vendor
        case VirtioMMIORegister.deviceFeatures:
            return s.deviceFeaturesSel < 2 ? UInt32(truncatingIfNeeded: device.deviceFeatures >> (32 * UInt64(s.deviceFeaturesSel))) : 0
        case VirtioMMIORegister.queueNumMax:
            return Int(s.queueSel) < s.queues.count ? UInt32(device.maxQueueSize) : 0
        case VirtioMMIORegister.queueReady:
            return Int(s.queueSel) < s.queues.count && s.queues[Int(s.queueSel)].ready ? 1 : 0
        case VirtioMMIORegister.interruptStatus:
            let always = s.status & VirtioStatus.driverOK != 0 ? device.alwaysPendingInterrupts : 0
            return s.interruptStatus | always
        case VirtioMMIORegister.status: return s.status
        case VirtioMMIORegister.shmLenLow, VirtioMMIORegister.shmLenHigh: return 0xFFFF_FFFF // no shared memory regions
        case VirtioMMIORegister.configGeneration: return s.configGeneration
        default: return 0
        }
    }

    public func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
        guard offset < VirtioMMIORegister.config, size == 4 else { return } // config space is read-only here
        let v = UInt32(truncatingIfNeeded: value)
        var kick: Int? = nil
        var needInterrupt = false
        state.withLock { s in
            let q = Int(s.queueSel)
            let queueWritable = q < s.queues.count && !s.queues[q].ready && s.status & VirtioStatus.driverOK == 0
            switch offset {
            case VirtioMMIORegister.deviceFeaturesSel: s.deviceFeaturesSel = v
            case VirtioMMIORegister.driverFeaturesSel: s.driverFeaturesSel = v
            case VirtioMMIORegister.driverFeatures:
                guard s.driverFeaturesSel < 2, s.status & VirtioStatus.featuresOK == 0 else { return }
                let shift = 32 * UInt64(s.driverFeaturesSel)
                s.driverFeatures = (s.driverFeatures & ~(0xFFFF_FFFF << shift)) | (UInt64(v) << shift)
            case VirtioMMIORegister.queueSel: s.queueSel = v
            case VirtioMMIORegister.queueNum:
                if queueWritable, v > 0, v <= UInt32(device.maxQueueSize), v & (v - 1) == 0 { s.queues[q].size = UInt16(v) }
            case VirtioMMIORegister.queueReady:
                if q < s.queues.count, s.status & VirtioStatus.driverOK == 0 { s.queues[q].ready = v == 1 }
            case VirtioMMIORegister.queueNotify:
                if Int(v) < kicks.count { kick = Int(v) }
            case VirtioMMIORegister.interruptAck:
                s.interruptStatus &= ~v
            case VirtioMMIORegister.status:
                needInterrupt = writeStatus(v, &s)
            case VirtioMMIORegister.queueDescLow: if queueWritable { s.queues[q].descriptorTable = low(s.queues[q].descriptorTable, v) }
            case VirtioMMIORegister.queueDescHigh: if queueWritable { s.queues[q].descriptorTable = high(s.queues[q].descriptorTable, v) }
            case VirtioMMIORegister.queueDriverLow: if queueWritable { s.queues[q].availRing = low(s.queues[q].availRing, v) }
            case VirtioMMIORegister.queueDriverHigh: if queueWritable { s.queues[q].availRing = high(s.queues[q].availRing, v) }
            case VirtioMMIORegister.queueDeviceLow: if queueWritable { s.queues[q].usedRing = low(s.queues[q].usedRing, v) }
            case VirtioMMIORegister.queueDeviceHigh: if queueWritable { s.queues[q].usedRing = high(s.queues[q].usedRing, v) }
            default: break
            }
            refresh(s)
        }
        if let kick { kicks[kick].signal() }
        if needInterrupt {
            onConfigInterruptPending?()
            interrupt.trigger()
        }
    }

    private func low(_ old: UInt64, _ v: UInt32) -> UInt64 { (old & 0xFFFF_FFFF_0000_0000) | UInt64(v) }
    private func high(_ old: UInt64, _ v: UInt32) -> UInt64 { (old & 0xFFFF_FFFF) | (UInt64(v) << 32) }

    /// Applies a status write; returns true if an interrupt should follow.
    private func writeStatus(_ v: UInt32, _ s: inout State) -> Bool {
        if v == 0 {
            device.reset()
            let count = s.queues.count
            s = State(queues: Array(repeating: VirtioQueueConfig(), count: count))
            return false
        }
        // Bits only accumulate (except through reset); NEEDS_RESET is the device's.
        let added = v & ~s.status & ~VirtioStatus.needsReset
        if added & VirtioStatus.featuresOK != 0 {
            // Accept only a subset of what was offered, and the modern interface.
            let offered = device.deviceFeatures
            guard s.driverFeatures & ~offered == 0, s.driverFeatures & (1 << 32) != 0 else {
                s.status |= v & ~VirtioStatus.featuresOK & ~VirtioStatus.needsReset
                return false
            }
        }
        s.status |= added
        if added & VirtioStatus.driverOK != 0 {
            guard s.status & VirtioStatus.featuresOK != 0,
                  device.activate(features: s.driverFeatures, queues: s.queues) else {
                s.status |= VirtioStatus.needsReset
                s.interruptStatus |= VirtioInterrupt.configChange
                return true
            }
        }
        return false
    }
}

// MARK: saved state

/// What a restored transport hands its device: the driver had started it
/// with these features and queues, and each ring stopped at its base.
public struct VirtioResume: Equatable, Sendable {
    public var features: UInt64
    public var queues: [VirtioQueueConfig]
    public var bases: [UInt16]
}

extension VirtioMMIOTransport {
    /// Status bits a driver or device can set (virtio 1.2 §2.1).
    static let knownStatus: UInt32 = VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.driverOK
        | VirtioStatus.featuresOK | VirtioStatus.needsReset | VirtioStatus.failed

    /// The transport's registers as the driver left them, the device's
    /// identity, and where each ring stopped (`bases`, from ``VirtioDeviceModel/quiesce()``).
    public func saveState(bases: [UInt16]) -> [UInt8] {
        state.withLock { s in
            var f = FieldWriter()
            f.u32(device.deviceID)
            f.u64(device.deviceFeatures)
            f.u32(s.deviceFeaturesSel)
            f.u32(s.driverFeaturesSel)
            f.u64(s.driverFeatures)
            f.u32(s.queueSel)
            f.u32(s.status)
            f.u32(s.interruptStatus)
            f.u32(s.configGeneration)
            f.u16(UInt16(truncatingIfNeeded: s.queues.count))
            for (i, q) in s.queues.enumerated() {
                f.u16(q.size)
                f.u8(q.ready ? 1 : 0)
                f.u64(q.descriptorTable)
                f.u64(q.availRing)
                f.u64(q.usedRing)
                f.u16(i < bases.count ? bases[i] : 0)
            }
            return f.output
        }
    }

    /// Puts saved registers back, after checking them against this device
    /// (the same type, offering the same features, with as many queues)
    /// and against what a driver could have set. Returns what the device
    /// must resume if the driver had started it.
    public func restoreState(_ payload: [UInt8]) throws(StateFileError) -> VirtioResume? {
        var r = FieldReader(payload)
        let id = try r.u32(), offered = try r.u64()
        var s = State(queues: [])
        s.deviceFeaturesSel = try r.u32()
        s.driverFeaturesSel = try r.u32()
        s.driverFeatures = try r.u64()
        s.queueSel = try r.u32()
        s.status = try r.u32()
        s.interruptStatus = try r.u32()
        s.configGeneration = try r.u32()
        let count = Int(try r.u16())
        guard id == device.deviceID else { throw .malformed("a virtio device of type \(id) saved where this machine has type \(device.deviceID)") }
        guard offered == device.deviceFeatures else {
            throw .malformed("the saved virtio device was offered features 0x\(String(offered, radix: 16)); its backend now offers 0x\(String(device.deviceFeatures, radix: 16))")
        }
        guard count == device.queueCount else { throw .malformed("\(count) saved queues for a device with \(device.queueCount)") }
        var bases: [UInt16] = []
        for i in 0..<count {
            var q = VirtioQueueConfig()
            q.size = try r.u16()
            let ready = try r.u8()
            q.descriptorTable = try r.u64()
            q.availRing = try r.u64()
            q.usedRing = try r.u64()
            bases.append(try r.u16())
            guard ready <= 1, q.size <= device.maxQueueSize, q.size & (q.size &- 1) == 0, ready == 0 || q.size > 0 else {
                throw .malformed("queue \(i) of size \(q.size) (ready \(ready)), which the transport never accepts")
            }
            q.ready = ready == 1
            s.queues.append(q)
        }
        try r.finish("a virtio-mmio transport")
        guard s.status & ~Self.knownStatus == 0, s.interruptStatus & ~(VirtioInterrupt.usedBuffer | VirtioInterrupt.configChange) == 0 else {
            throw .malformed("virtio status 0x\(String(s.status, radix: 16)) / interrupt 0x\(String(s.interruptStatus, radix: 16))")
        }
        let started = s.status & VirtioStatus.driverOK != 0 && s.status & VirtioStatus.needsReset == 0
        if s.status & VirtioStatus.featuresOK != 0 {
            guard s.driverFeatures & ~offered == 0 else { throw .malformed("the driver's features 0x\(String(s.driverFeatures, radix: 16)) were never offered") }
        } else if started {
            throw .malformed("a virtio device started without FEATURES_OK")
        }
        state.withLock { current in
            current = s
            refresh(current)
        }
        return started ? VirtioResume(features: s.driverFeatures, queues: s.queues, bases: bases) : nil
    }
}
