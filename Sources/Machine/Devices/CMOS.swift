import ApusSys
import Synchronization

/// The MC146818 CMOS RTC at ports 0x70 (index) and 0x71 (data): the wall
/// clock from the host's UTC time, in BCD or binary and 12/24-hour format as
/// status register B asks, plus 128 bytes of CMOS RAM.
public final class CMOS: PortIODevice {
    static let seconds = 0x00, minutes = 0x02, hours = 0x04, weekday = 0x06
    static let day = 0x07, month = 0x08, year = 0x09, statusA = 0x0A, statusB = 0x0B
    static let statusC = 0x0C, statusD = 0x0D, century = 0x32

    struct State {
        var index: Int = 0
        var ram = [UInt8](repeating: 0, count: 128)
    }
    let state: Mutex<State>
    private let now: @Sendable () -> Int64

    /// An RTC reading time from `now` (seconds since the epoch; host UTC by default).
    public init(now: @escaping @Sendable () -> Int64 = { Clock.realtime().seconds }) {
        var s = State()
        s.ram[Self.statusA] = 0x26 // 32.768 kHz divider, 1024 Hz rate, no update in progress
        s.ram[Self.statusB] = 0x02 // 24-hour, BCD
        s.ram[Self.statusD] = 0x80 // valid RAM and time
        state = Mutex(s)
        self.now = now
    }

    public func portRead(offset: UInt16, size: Int) -> UInt32 {
        guard offset == 1 else { return 0xFF }
        let time = now()
        return UInt32(state.withLock { s -> UInt8 in
            let format = s.ram[Self.statusB]
            let binary = format & 0x04 != 0, hour24 = format & 0x02 != 0
            func enc(_ v: Int) -> UInt8 { binary ? UInt8(v) : UInt8((v / 10) << 4 | (v % 10)) }
            let t = Clock.utc(time)
            switch s.index {
            case Self.seconds: return enc(t.second)
            case Self.minutes: return enc(t.minute)
            case Self.hours:
                if hour24 { return enc(t.hour) }
                let h12 = t.hour % 12 == 0 ? 12 : t.hour % 12
                return enc(h12) | (t.hour >= 12 ? 0x80 : 0)
            case Self.weekday: return enc(t.weekday + 1)
            case Self.day: return enc(t.day)
            case Self.month: return enc(t.month)
            case Self.year: return enc(t.year % 100)
            case Self.century: return enc(t.year / 100)
            case Self.statusC:
                let v = s.ram[Self.statusC]
                s.ram[Self.statusC] = 0 // reading C clears the flags
                return v
            default: return s.ram[s.index]
            }
        })
    }

    public func portWrite(offset: UInt16, size: Int, value: UInt32) {
        let v = UInt8(truncatingIfNeeded: value)
        state.withLock { s in
            if offset == 0 {
                s.index = Int(v & 0x7F) // bit 7 is the NMI mask
                return
            }
            switch s.index {
            case Self.statusA: s.ram[Self.statusA] = (s.ram[Self.statusA] & 0x80) | (v & 0x7F) // UIP is read-only
            case Self.statusC, Self.statusD: break // read-only
            case Self.seconds, Self.minutes, Self.hours, Self.weekday, Self.day, Self.month, Self.year, Self.century:
                break // the clock follows the host; guest writes to it are ignored
            default: s.ram[s.index] = v
            }
        }
    }
}
