import Synchronization

/// ACPI fixed hardware: the PM1a event block (status + enable) and control
/// block. It powers the machine off on an S5 sleep request, and presses the
/// fixed power button (PWRBTN_STS) raising the SCI, level-triggered.
public final class ACPIPowerManagement: PortIODevice {
    static let powerButtonStatus: UInt16 = 1 << 8
    static let wakeStatus: UInt16 = 1 << 15
    static let sciEnable: UInt16 = 1 << 0
    static let sleepEnable: UInt16 = 1 << 13

    struct State {
        var status: UInt16 = 0
        var enable: UInt16 = 0
        var control: UInt16 = 1 // SCI_EN: always in ACPI mode (SMI_CMD is 0)
        var sciLevel = false
    }
    let state = Mutex(State())
    private let sci: any InterruptLine
    private weak let platform: (any PlatformControl)?

    /// Spans 6 ports: PM1a_EVT (4) then PM1a_CNT (2), matching ``ACPIPlatform``.
    public static let portCount: UInt16 = 6

    public init(sci: any InterruptLine, platform: (any PlatformControl)?) {
        self.sci = sci
        self.platform = platform
    }

    /// Presses the power button: the guest's OSPM sees PWRBTN_STS on the SCI.
    public func pressPowerButton() {
        update { $0.status |= Self.powerButtonStatus }
    }

    private func update(_ body: (inout State) -> Void) {
        let change = state.withLock { s -> Bool? in
            body(&s)
            let level = s.status & s.enable != 0 && s.control & Self.sciEnable != 0
            guard level != s.sciLevel else { return nil }
            s.sciLevel = level
            return level
        }
        if let change { sci.setLevel(change) }
    }

    public func portRead(offset: UInt16, size: Int) -> UInt32 {
        let s = state.withLock { $0 }
        // Registers are little-endian 16-bit; byte accesses read the right half.
        let word: UInt32 = UInt32(s.status) | UInt32(s.enable) << 16
        let control = UInt32(s.control)
        let value: UInt32
        switch offset {
        case 0...3: value = word >> (8 * UInt32(offset))
        case 4...5: value = control >> (8 * UInt32(offset - 4))
        default: value = 0
        }
        switch size {
        case 1: return value & 0xFF
        case 2: return value & 0xFFFF
        default: return value
        }
    }

    public func portWrite(offset: UInt16, size: Int, value: UInt32) {
        var powerOff = false
        update { s in
            switch (offset, size) {
            case (0, 4):
                s.status &= ~UInt16(truncatingIfNeeded: value) // write 1 to clear
                s.enable = UInt16(truncatingIfNeeded: value >> 16)
            case (0, _): s.status &= ~UInt16(truncatingIfNeeded: size == 1 ? value & 0xFF : value)
            case (1, _): s.status &= ~(UInt16(truncatingIfNeeded: value & 0xFF) << 8)
            case (2, _): s.enable = size == 1 ? (s.enable & 0xFF00) | UInt16(value & 0xFF) : UInt16(truncatingIfNeeded: value)
            case (3, _): s.enable = (s.enable & 0x00FF) | UInt16(truncatingIfNeeded: value & 0xFF) << 8
            case (4, _):
                let v = size == 1 ? (s.control & 0xFF00) | UInt16(value & 0xFF) : UInt16(truncatingIfNeeded: value)
                powerOff = Self.isSoftOff(v)
                s.control = (v & ~Self.sleepEnable) | Self.sciEnable
            case (5, _):
                let v = (s.control & 0x00FF) | UInt16(truncatingIfNeeded: value & 0xFF) << 8
                powerOff = Self.isSoftOff(v)
                s.control = (v & ~Self.sleepEnable) | Self.sciEnable
            default: break
            }
        }
        if powerOff { platform?.guestRequestedPowerOff() }
    }

    /// SLP_EN with SLP_TYP = the DSDT's \_S5 value.
    static func isSoftOff(_ control: UInt16) -> Bool {
        control & sleepEnable != 0 && (control >> 10) & 0x7 == ACPIPlatform.s5SleepType
    }
}

/// Ports 0xCF8-0xCFF: the reset control register at 0xCF9 (the FADT's reset
/// register, and Linux's `reboot=pci`) and an empty PCI configuration space
/// (all ones: no PCI host bridge).
public final class ResetControl: PortIODevice {
    private weak let platform: (any PlatformControl)?
    public init(platform: (any PlatformControl)?) { self.platform = platform }

    public func portRead(offset: UInt16, size: Int) -> UInt32 {
        if offset == 1 && size == 1 { return 0 }
        return size == 4 ? 0xFFFF_FFFF : (size == 2 ? 0xFFFF : 0xFF)
    }

    public func portWrite(offset: UInt16, size: Int, value: UInt32) {
        // RST_CPU (bit 2) in a byte write to 0xCF9 resets the machine.
        if offset == 1 && size == 1 && value & 0x04 != 0 {
            platform?.guestRequestedReset()
        }
    }
}
