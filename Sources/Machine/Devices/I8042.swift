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

    /// The most output bytes held for the guest.
    static let maxOutput = 256

    enum Pending { case none, ctr, outputPort, keyboardBuffer, auxBuffer, auxWrite, keyboardArgument(UInt8) }

    struct State {
        var ctr: UInt8 = 0x05 // keyboard interrupt on, system flag; no translation until the guest asks
        /// Bytes for the guest to read at 0x60. Bounded: a guest that
        /// issues commands and never reads loses the newest bytes, as a real
        /// controller's one-byte buffer would, instead of growing this.
        var output: [UInt8] = [] {
            didSet { if output.count > I8042.maxOutput { output.removeLast(output.count - I8042.maxOutput) } }
        }
        var lastWasCommand = false
        var pending: Pending = .none
        var scancodeSet: UInt8 = 2
    }

    let state = Mutex(State())
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

    /// Injects Ctrl-Alt-Del (press and release).
    public func injectCtrlAltDel() {
        let keys: [UInt16] = [0x1D, 0x38, 0xE053]
        pressKeys(keys)
        releaseKeys(keys)
    }

    /// Presses `scancodes` (PC set 1 make codes; extended keys as 0xE0xx),
    /// in order, as the guest's keyboard mode wants them: set 1 when the
    /// controller translates, else set 2. With no firmware to turn
    /// translation on, Linux keeps it off ("AT Raw Set 2 keyboard").
    public func pressKeys(_ scancodes: [UInt16]) { queue(scancodes, release: false) }

    /// Releases `scancodes`, in reverse order.
    public func releaseKeys(_ scancodes: [UInt16]) { queue(scancodes.reversed(), release: true) }

    private func queue(_ scancodes: [UInt16], release: Bool) {
        let raise = state.withLock { s -> Bool in
            let wasEmpty = s.output.isEmpty
            let translated = s.ctr & Self.ctrTranslate != 0
            for code in scancodes where s.output.count < Self.maxQueuedBytes {
                let extended = code >> 8 == 0xE0
                let make = UInt8(truncatingIfNeeded: code) & 0x7F
                if extended { s.output.append(0xE0) }
                if translated {
                    s.output.append(release ? make | 0x80 : make)
                } else {
                    if release { s.output.append(0xF0) }
                    s.output.append(Self.set2Code[Int(make)])
                }
            }
            return wasEmpty && !s.output.isEmpty && s.ctr & Self.ctrKeyboardInterrupt != 0
        }
        if raise { irq.trigger() }
    }

    /// A keyboard buffers a few keystrokes; injected keys beyond this wait no longer.
    static let maxQueuedBytes = 64

    /// The 8042's translation of set-2 codes 0x00-0x7F into set 1 (IBM PC
    /// AT technical reference; the same table every PC emulator carries).
    static let translation: [UInt8] = [
        0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
        0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
        0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
        0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
        0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
        0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
        0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
        0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
    ]

    /// Set-1 make code → set-2 make code: the translation inverted (F7 is
    /// 0x83 and Alt-SysRq 0x84 in set 2, beyond the 7-bit table).
    static let set2Code: [UInt8] = {
        var inverse = [UInt8](repeating: 0, count: 128)
        for (set2, set1) in translation.enumerated() where set1 < 0x80 && inverse[Int(set1)] == 0 {
            inverse[Int(set1)] = UInt8(set2)
        }
        inverse[0x41] = 0x83
        inverse[0x54] = 0x84
        return inverse
    }()
}
