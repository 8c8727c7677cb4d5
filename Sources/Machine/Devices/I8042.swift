import Synchronization

/// An i8042 keyboard controller with a keyboard behind it: enough for
/// Linux's i8042 + atkbd drivers to bind, for the guest to reset the machine
/// through the controller (command 0xFE), and for the host to inject
/// Ctrl-Alt-Del (the graceful-shutdown request Xen and Firecracker use).
///
/// Ports: 0x60 data, 0x64 status (read) / command (write). No AUX (mouse)
/// port: the DSDT declares only PNP0303, so Linux does not probe one.
public final class I8042: PortIODevice {
    // Status register bits.
    static let statusOutputFull: UInt8 = 0x01, statusSystem: UInt8 = 0x04, statusCommand: UInt8 = 0x08
    static let statusNotInhibited: UInt8 = 0x10
    // Controller configuration byte bits.
    static let ctrKeyboardInterrupt: UInt8 = 0x01, ctrSystem: UInt8 = 0x04, ctrTranslate: UInt8 = 0x40
    // Controller commands.
    static let cmdReadCTR: UInt8 = 0x20, cmdWriteCTR: UInt8 = 0x60, cmdDisableAux: UInt8 = 0xA7
    static let cmdEnableAux: UInt8 = 0xA8, cmdTestAux: UInt8 = 0xA9, cmdSelfTest: UInt8 = 0xAA
    static let cmdTestKeyboard: UInt8 = 0xAB, cmdDisableKeyboard: UInt8 = 0xAD, cmdEnableKeyboard: UInt8 = 0xAE
    static let cmdReadOutputPort: UInt8 = 0xD0, cmdWriteOutputPort: UInt8 = 0xD1
    static let cmdWriteKeyboardBuffer: UInt8 = 0xD2, cmdWriteAuxBuffer: UInt8 = 0xD3, cmdWriteAux: UInt8 = 0xD4
    static let cmdPulseReset: UInt8 = 0xFE
    // Keyboard replies.
    static let ack: UInt8 = 0xFA, selfTestPassed: UInt8 = 0xAA

    enum Pending { case none, ctr, outputPort, keyboardBuffer, auxBuffer, auxWrite, keyboardArgument(UInt8) }

    struct State {
        var ctr: UInt8 = 0x05 // keyboard interrupt on, system flag; no translation until the guest asks
        var output: [UInt8] = []
        var lastWasCommand = false
        var pending: Pending = .none
        var scancodeSet: UInt8 = 2
    }

    private let state = Mutex(State())
    private let irq: any InterruptLine
    private weak let platform: (any PlatformControl)?

    /// A controller raising `irq` (ISA IRQ 1) and resetting through `platform`.
    public init(irq: any InterruptLine, platform: (any PlatformControl)?) {
        self.irq = irq
        self.platform = platform
    }

    public func portRead(offset: UInt16, size: Int) -> UInt32 {
        let (value, raise) = state.withLock { s -> (UInt8, Bool) in
            switch offset {
            case 0: // 0x60 data
                guard !s.output.isEmpty else { return (0, false) }
                let b = s.output.removeFirst()
                // More bytes queued: raise again for the next one.
                return (b, !s.output.isEmpty && s.ctr & Self.ctrKeyboardInterrupt != 0)
            case 4: // 0x64 status
                var st = Self.statusSystem | Self.statusNotInhibited
                if !s.output.isEmpty { st |= Self.statusOutputFull }
                if s.lastWasCommand { st |= Self.statusCommand }
                return (st, false)
            default:
                return (0xFF, false)
            }
        }
        if raise { irq.trigger() }
        return UInt32(value)
    }

    public func portWrite(offset: UInt16, size: Int, value: UInt32) {
        let v = UInt8(truncatingIfNeeded: value)
        var reset = false
        let raise = state.withLock { s -> Bool in
            let wasEmpty = s.output.isEmpty
            if offset == 4 {
                s.lastWasCommand = true
                reset = Self.controllerCommand(v, &s)
            } else if offset == 0 {
                s.lastWasCommand = false
                reset = Self.dataWrite(v, &s)
            }
            return wasEmpty && !s.output.isEmpty && s.ctr & Self.ctrKeyboardInterrupt != 0
        }
        if reset { platform?.guestRequestedReset() }
        if raise { irq.trigger() }
    }

    /// Handles a command byte; returns true if it resets the machine.
    static func controllerCommand(_ c: UInt8, _ s: inout State) -> Bool {
        s.pending = .none
        switch c {
        case cmdReadCTR: s.output.append(s.ctr)
        case cmdWriteCTR: s.pending = .ctr
        case cmdSelfTest: s.output.append(0x55)
        case cmdTestKeyboard: s.output.append(0x00)
        case cmdTestAux: s.output.append(0xFF) // no AUX port
        case cmdReadOutputPort: s.output.append(0x03) // A20 on, not in reset
        case cmdWriteOutputPort: s.pending = .outputPort
        case cmdWriteKeyboardBuffer: s.pending = .keyboardBuffer
        case cmdWriteAuxBuffer: s.pending = .auxBuffer
        case cmdWriteAux: s.pending = .auxWrite
        case cmdDisableKeyboard: s.ctr |= 0x10
        case cmdEnableKeyboard: s.ctr &= ~0x10
        case cmdDisableAux, cmdEnableAux: break
        case cmdPulseReset: return true
        default:
            // 0xF0-0xFF pulse output lines; bit 0 low means reset.
            if c & 0xF0 == 0xF0 && c & 0x01 == 0 { return true }
        }
        return false
    }

    /// Handles a data-port byte; returns true if it resets the machine.
    static func dataWrite(_ v: UInt8, _ s: inout State) -> Bool {
        let pending = s.pending
        s.pending = .none
        switch pending {
        case .ctr: s.ctr = v; return false
        case .outputPort: return v & 0x01 == 0 // bit 0 is the reset line, active low
        case .keyboardBuffer: s.output.append(v); return false
        case .auxBuffer, .auxWrite: return false // no AUX device
        case .keyboardArgument(let command):
            s.output.append(ack)
            if command == 0xF0 {
                if v == 0 { s.output.append(s.scancodeSet) } else if v <= 3 { s.scancodeSet = v }
            }
            return false
        case .none:
            keyboardCommand(v, &s)
            return false
        }
    }

    /// A byte sent to the keyboard itself.
    static func keyboardCommand(_ v: UInt8, _ s: inout State) {
        switch v {
        case 0xFF: s.output += [ack, selfTestPassed]       // reset + BAT
        case 0xF2: s.output += [ack, 0xAB, 0x83]           // identify: MF2 keyboard
        case 0xEE: s.output.append(0xEE)                   // echo
        case 0xED, 0xF3, 0xF0: s.output.append(ack); s.pending = .keyboardArgument(v) // LEDs, typematic, scancode set
        default: s.output.append(ack)                      // enable, disable, defaults, ...
        }
    }

    /// Injects Ctrl-Alt-Del (press and release), in scancode set 2 or, if the
    /// guest enabled translation, set 1.
    public func injectCtrlAltDel() {
        let raise = state.withLock { s -> Bool in
            let wasEmpty = s.output.isEmpty
            if s.ctr & Self.ctrTranslate != 0 {
                s.output += [0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D]
            } else {
                s.output += [0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0, 0x71, 0xF0, 0x11, 0xF0, 0x14]
            }
            return wasEmpty && s.ctr & Self.ctrKeyboardInterrupt != 0
        }
        if raise { irq.trigger() }
    }
}
