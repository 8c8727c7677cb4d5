#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// Time sources.
public enum Clock {
    /// Monotonic nanoseconds (CLOCK_MONOTONIC).
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Wall-clock seconds since the Unix epoch, and the nanosecond part.
    public static func realtime() -> (seconds: Int64, nanoseconds: Int64) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (Int64(ts.tv_sec), Int64(ts.tv_nsec))
    }

    /// The broken-down UTC time for `seconds` since the epoch.
    public static func utc(_ seconds: Int64) -> (year: Int, month: Int, day: Int, weekday: Int, hour: Int, minute: Int, second: Int) {
        var t = time_t(seconds)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return (Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday), Int(tmv.tm_wday),
                Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
    }

    /// CPU time of thread `tid` of this process, in nanoseconds, or 0 when
    /// there is no such thread. Read through the thread's CPU clock (the
    /// clock id the kernel derives from a tid: CPUCLOCK_PERTHREAD |
    /// CPUCLOCK_SCHED, as glibc's pthread_getcpuclockid makes it), so it
    /// needs no /proc: a jailed process has none.
    public static func threadCPUNanoseconds(_ tid: Int32) -> UInt64 {
        guard tid > 0 else { return 0 }
        let clock = clockid_t((~tid) << 3) | 6
        var ts = timespec()
        guard clock_gettime(clock, &ts) == 0 else { return 0 }
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The calling thread's kernel id.
    public static func threadID() -> Int32 { apus_gettid() }

    /// Sleeps the calling thread.
    public static func sleep(nanoseconds: UInt64) {
        var ts = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&ts, &remaining) != 0 && errno == EINTR { ts = remaining }
    }
}
