import Toolstack

/// libvirt's keycode sets (virKeycodeSet) as far as Apus's keyboard, an
/// i8042, needs them: every key becomes a PC set-1 scancode (an extended
/// key as 0xE0xx), which apus-hv turns into what the guest asked the
/// controller for.
enum KeyCodes {
    /// virKeycodeSet values.
    static let linux: UInt32 = 0, xt: UInt32 = 1, atset1: UInt32 = 2, atset2: UInt32 = 3, atset3: UInt32 = 4
    static let osx: UInt32 = 5, xtKbd: UInt32 = 6, usb: UInt32 = 7, win32: UInt32 = 8, qnum: UInt32 = 9
    static let names = ["linux", "xt", "atset1", "atset2", "atset3", "os_x", "xt_kbd", "usb", "win32", "qnum"]

    /// Linux input keycodes (linux/input-event-codes.h) of keys set 1 sends
    /// with the E0 prefix, or at codes other than the Linux one.
    static let linuxSpecial: [UInt32: UInt16] = [
        89: 0x73,     // KEY_RO
        92: 0x79,     // KEY_HENKAN
        94: 0x7B,     // KEY_MUHENKAN
        96: 0xE01C,   // KEY_KPENTER
        97: 0xE01D,   // KEY_RIGHTCTRL
        98: 0xE035,   // KEY_KPSLASH
        99: 0xE037,   // KEY_SYSRQ
        100: 0xE038,  // KEY_RIGHTALT
        102: 0xE047,  // KEY_HOME
        103: 0xE048,  // KEY_UP
        104: 0xE049,  // KEY_PAGEUP
        105: 0xE04B,  // KEY_LEFT
        106: 0xE04D,  // KEY_RIGHT
        107: 0xE04F,  // KEY_END
        108: 0xE050,  // KEY_DOWN
        109: 0xE051,  // KEY_PAGEDOWN
        110: 0xE052,  // KEY_INSERT
        111: 0xE053,  // KEY_DELETE
        113: 0xE020,  // KEY_MUTE
        114: 0xE02E,  // KEY_VOLUMEDOWN
        115: 0xE030,  // KEY_VOLUMEUP
        116: 0xE05E,  // KEY_POWER
        117: 0x59,    // KEY_KPEQUAL
        124: 0x7D,    // KEY_YEN
        125: 0xE05B,  // KEY_LEFTMETA
        126: 0xE05C,  // KEY_RIGHTMETA
        127: 0xE05D,  // KEY_COMPOSE
        142: 0xE05F,  // KEY_SLEEP
        143: 0xE063,  // KEY_WAKEUP
    ]

    /// The set-1 scancode for `code` in `codeset`.
    static func scancode(_ code: UInt32, codeset: UInt32) throws(ToolstackError) -> UInt16 {
        func bad() -> ToolstackError { .invalidArgument("cannot translate keycode \(code) of codeset \(name(codeset)) to a PC scancode") }
        switch codeset {
        case linux:
            // Keys 1-88 have the same numbers in both (ESC 1 ... F12 88).
            if (1...88).contains(code), code != 84 { return UInt16(code) }
            guard let s = linuxSpecial[code] else { throw bad() }
            return s
        case xt:
            guard (1...0x7F).contains(code) else { throw bad() }
            return UInt16(code)
        case atset1:
            // libvirt writes extended keys as 0xE0xx.
            guard (1...0x7F).contains(code & 0xFF), code >> 8 == 0 || code >> 8 == 0xE0 else { throw bad() }
            return UInt16(code)
        case qnum:
            // QEMU numbers: an extended key is its set-1 code with bit 7 set.
            guard (1...0xFF).contains(code) else { throw bad() }
            return code & 0x80 != 0 ? 0xE000 | UInt16(code & 0x7F) : UInt16(code)
        default:
            throw ToolstackError(.argumentUnsupported, "argument unsupported: keycode set \(name(codeset)) is not supported (linux, xt, atset1, qnum)")
        }
    }

    static func name(_ codeset: UInt32) -> String { Int(codeset) < names.count ? names[Int(codeset)] : "\(codeset)" }
}
