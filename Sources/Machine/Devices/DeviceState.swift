import SaveState

/// A platform device whose registers a saved machine carries, each in a
/// ``SectionTag/device`` section: the device's name, then its fields
/// (section version 1). Restoring checks every field against what the
/// device could have held, so a damaged file cannot put it in a state
/// its code never reaches. Interrupt line levels live in the saved
/// irqchip, not here.
public protocol SavableDevice: AnyObject {
    /// The device's name in the state file (one per device in a machine).
    var stateName: String { get }
    func saveState() -> [UInt8]
    func restoreState(_ payload: [UInt8]) throws(StateFileError)
}

extension SavableDevice {
    /// The device's section: its name, then its state.
    public func stateSection() -> StateSection { StateSection(device: stateName, payload: saveState()) }
}

extension StateSection {
    /// A device's section (``SectionTag/device``): its name, then its state.
    public init(device name: String, payload: [UInt8]) {
        var f = FieldWriter()
        f.blob(Array(name.utf8))
        f.bytes(payload)
        self.init(tag: .device, payload: f.output)
    }

    /// A device section's name and state.
    public func deviceParts() throws(StateFileError) -> (name: String, payload: [UInt8]) {
        guard tag == .device else { throw .malformed("section \(tag) is not a device's") }
        var r = FieldReader(payload)
        let name = try r.blob()
        guard name.count <= 64 else { throw .malformed("a device name of \(name.count) bytes") }
        return (String(decoding: name, as: UTF8.self), try r.bytes(r.remaining))
    }
}

extension Serial8250: SavableDevice {
    public var stateName: String { "serial0" }

    public func saveState() -> [UInt8] {
        state.withLock { s in
            var f = FieldWriter()
            for b in [s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm, s.fifoEnabled ? 1 : 0, s.thrInterruptPending ? 1 : 0] { f.u8(b) }
            f.blob(Array(s.receive[s.receiveHead...]))
            return f.output
        }
    }

    public func restoreState(_ payload: [UInt8]) throws(StateFileError) {
        var r = FieldReader(payload)
        var s = State()
        s.ier = try r.u8()
        s.lcr = try r.u8()
        s.mcr = try r.u8()
        s.scr = try r.u8()
        s.dll = try r.u8()
        s.dlm = try r.u8()
        let fifo = try r.u8(), thr = try r.u8()
        s.receive = try r.blob()
        try r.finish("the UART")
        guard s.ier & ~Self.ierMask == 0, s.mcr & ~0x1F == 0, fifo <= 1, thr <= 1, s.receive.count <= Self.receiveCapacity else {
            throw .malformed("UART registers a 16550A cannot hold")
        }
        s.fifoEnabled = fifo == 1
        s.thrInterruptPending = thr == 1
        state.withLock { $0 = s }
    }
}

extension CMOS: SavableDevice {
    public var stateName: String { "rtc" }

    public func saveState() -> [UInt8] {
        state.withLock { s in
            var f = FieldWriter()
            f.u8(UInt8(s.index))
            f.bytes(s.ram)
            return f.output
        }
    }

    public func restoreState(_ payload: [UInt8]) throws(StateFileError) {
        var r = FieldReader(payload)
        let index = try r.u8()
        let ram = try r.bytes(128)
        try r.finish("the RTC")
        guard index < 128 else { throw .malformed("RTC index \(index)") }
        state.withLock { s in
            s.index = Int(index)
            s.ram = ram
        }
    }
}

extension ACPIPowerManagement: SavableDevice {
    public var stateName: String { "acpi-pm" }

    public func saveState() -> [UInt8] {
        state.withLock { s in
            var f = FieldWriter()
            f.u16(s.status)
            f.u16(s.enable)
            f.u16(s.control)
            f.u8(s.sciLevel ? 1 : 0)
            return f.output
        }
    }

    public func restoreState(_ payload: [UInt8]) throws(StateFileError) {
        var r = FieldReader(payload)
        var s = State()
        s.status = try r.u16()
        s.enable = try r.u16()
        s.control = try r.u16()
        let level = try r.u8()
        try r.finish("the ACPI PM block")
        guard level <= 1 else { throw .malformed("ACPI SCI level \(level)") }
        s.sciLevel = level == 1
        state.withLock { $0 = s }
    }
}

extension I8042: SavableDevice {
    public var stateName: String { "i8042" }

    public func saveState() -> [UInt8] {
        state.withLock { s in
            var f = FieldWriter()
            f.u8(s.ctr)
            f.blob(s.output)
            f.u8(s.lastWasCommand ? 1 : 0)
            switch s.pending {
            case .none: f.u8(0); f.u8(0)
            case .ctr: f.u8(1); f.u8(0)
            case .outputPort: f.u8(2); f.u8(0)
            case .keyboardBuffer: f.u8(3); f.u8(0)
            case .auxBuffer: f.u8(4); f.u8(0)
            case .auxWrite: f.u8(5); f.u8(0)
            case .keyboardArgument(let c): f.u8(6); f.u8(c)
            }
            f.u8(s.scancodeSet)
            return f.output
        }
    }

    public func restoreState(_ payload: [UInt8]) throws(StateFileError) {
        var r = FieldReader(payload)
        var s = State()
        s.ctr = try r.u8()
        s.output = try r.blob()
        let command = try r.u8()
        let kind = try r.u8(), argument = try r.u8()
        s.scancodeSet = try r.u8()
        try r.finish("the i8042")
        guard s.output.count <= Self.maxOutput, command <= 1, (1...3).contains(s.scancodeSet) else {
            throw .malformed("i8042 state its code never reaches")
        }
        s.lastWasCommand = command == 1
        switch kind {
        case 0: s.pending = .none
        case 1: s.pending = .ctr
        case 2: s.pending = .outputPort
        case 3: s.pending = .keyboardBuffer
        case 4: s.pending = .auxBuffer
        case 5: s.pending = .auxWrite
        case 6: s.pending = .keyboardArgument(argument)
        default: throw .malformed("i8042 pending command \(kind)")
        }
        state.withLock { $0 = s }
    }
}
