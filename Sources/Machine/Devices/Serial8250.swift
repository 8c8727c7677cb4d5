import Synchronization

/// Where a UART's transmitted bytes go (a console backend). Must not block.
public protocol SerialOutput: AnyObject, Sendable {
    /// One byte the guest transmitted.
    func transmit(_ byte: UInt8)
}

/// A 16550A UART (8250 family) as Linux's 8250 driver and the stub kernel
/// use it: divisor latch, IER/IIR/FCR/LCR/MCR/LSR/MSR/SCR, a receive FIFO,
/// THR-empty and data-ready interrupts, and loopback mode (which Linux's
/// autoconfig probes).
public final class Serial8250: PortIODevice {
    // Register offsets.
    static let rbrTHR: UInt16 = 0, ier: UInt16 = 1, iirFCR: UInt16 = 2, lcr: UInt16 = 3
    static let mcr: UInt16 = 4, lsr: UInt16 = 5, msr: UInt16 = 6, scr: UInt16 = 7
    // IER bits.
    static let ierRDA: UInt8 = 0x01, ierTHRE: UInt8 = 0x02, ierMask: UInt8 = 0x0F
    // IIR values.
    static let iirNone: UInt8 = 0x01, iirTHRE: UInt8 = 0x02, iirRDA: UInt8 = 0x04, iirFIFOEnabled: UInt8 = 0xC0
    // LSR bits.
    static let lsrDataReady: UInt8 = 0x01, lsrTHRE: UInt8 = 0x20, lsrTEMT: UInt8 = 0x40
    // MCR/LCR bits.
    static let mcrLoopback: UInt8 = 0x10, lcrDLAB: UInt8 = 0x80
    // MSR in normal operation: DCD, DSR, CTS asserted (a null-modem cable).
    static let msrDefault: UInt8 = 0xB0

    /// How many received bytes the UART buffers before input is held back.
    public static let receiveCapacity = 4096

    struct State {
        var ier: UInt8 = 0
        var lcr: UInt8 = 0x03
        var mcr: UInt8 = 0x08
        var scr: UInt8 = 0
        var dll: UInt8 = 0x0C // 9600 baud
        var dlm: UInt8 = 0
        var fifoEnabled = false
        var thrInterruptPending = false
        var receive: [UInt8] = []
        var receiveHead = 0

        var available: Int { receive.count - receiveHead }

        mutating func popReceive() -> UInt8? {
            guard receiveHead < receive.count else { return nil }
            let b = receive[receiveHead]
            receiveHead += 1
            if receiveHead == receive.count {
                receive.removeAll(keepingCapacity: true)
                receiveHead = 0
            }
            return b
        }

        /// The highest-priority pending interrupt identification.
        var interruptID: UInt8 {
            if ier & Serial8250.ierRDA != 0 && available > 0 { return Serial8250.iirRDA }
            if ier & Serial8250.ierTHRE != 0 && thrInterruptPending { return Serial8250.iirTHRE }
            return Serial8250.iirNone
        }
    }

    let state = Mutex(State())
    private let irq: any InterruptLine
    private let output: any SerialOutput
    /// Bytes transmitted by the guest (for stats).
    public let transmitted = Atomic<UInt64>(0)

    /// A UART raising `irq` and transmitting into `output`.
    public init(irq: any InterruptLine, output: any SerialOutput) {
        self.irq = irq
        self.output = output
    }

    /// Free space in the receive buffer.
    public var receiveSpace: Int { state.withLock { Self.receiveCapacity - $0.available } }

    /// Queues bytes typed at the console; returns how many were accepted.
    @discardableResult
    public func receive(_ bytes: some Collection<UInt8>) -> Int {
        let (accepted, raise) = state.withLock { s -> (Int, Bool) in
            let n = min(bytes.count, Self.receiveCapacity - s.available)
            guard n > 0, s.mcr & Self.mcrLoopback == 0 else { return (0, false) }
            s.receive.append(contentsOf: bytes.prefix(n))
            return (n, s.interruptID != Self.iirNone)
        }
        if raise { irq.trigger() }
        return accepted
    }

    public func portRead(offset: UInt16, size: Int) -> UInt32 {
        let (value, raise) = state.withLock { s -> (UInt8, Bool) in
            switch offset {
            case Self.rbrTHR:
                if s.lcr & Self.lcrDLAB != 0 { return (s.dll, false) }
                let b = s.popReceive() ?? 0
                return (b, false)
            case Self.ier:
                return (s.lcr & Self.lcrDLAB != 0 ? s.dlm : s.ier, false)
            case Self.iirFCR:
                let id = s.interruptID
                // Reading IIR acknowledges a THR-empty interrupt.
                if id == Self.iirTHRE { s.thrInterruptPending = false }
                return (id | (s.fifoEnabled ? Self.iirFIFOEnabled : 0), false)
            case Self.lcr: return (s.lcr, false)
            case Self.mcr: return (s.mcr, false)
            case Self.lsr:
                return (Self.lsrTHRE | Self.lsrTEMT | (s.available > 0 ? Self.lsrDataReady : 0), false)
            case Self.msr:
                if s.mcr & Self.mcrLoopback != 0 {
                    // Loopback wiring: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
                    let m = s.mcr
                    var v: UInt8 = 0
                    if m & 0x02 != 0 { v |= 0x10 }
                    if m & 0x01 != 0 { v |= 0x20 }
                    if m & 0x04 != 0 { v |= 0x40 }
                    if m & 0x08 != 0 { v |= 0x80 }
                    return (v, false)
                }
                return (Self.msrDefault, false)
            case Self.scr: return (s.scr, false)
            default: return (0xFF, false)
            }
        }
        if raise { irq.trigger() }
        return UInt32(value)
    }

    public func portWrite(offset: UInt16, size: Int, value: UInt32) {
        let v = UInt8(truncatingIfNeeded: value)
        var transmit: UInt8? = nil
        let raise = state.withLock { s -> Bool in
            switch offset {
            case Self.rbrTHR:
                if s.lcr & Self.lcrDLAB != 0 { s.dll = v; return false }
                if s.mcr & Self.mcrLoopback != 0 {
                    if s.available < Self.receiveCapacity { s.receive.append(v) }
                } else {
                    transmit = v
                }
                s.thrInterruptPending = true
                return s.interruptID != Self.iirNone
            case Self.ier:
                if s.lcr & Self.lcrDLAB != 0 { s.dlm = v; return false }
                let enablingTHRE = (v & Self.ierTHRE != 0) && (s.ier & Self.ierTHRE == 0)
                s.ier = v & Self.ierMask
                // The transmitter is always empty: enabling its interrupt fires it.
                if enablingTHRE { s.thrInterruptPending = true }
                return s.interruptID != Self.iirNone
            case Self.iirFCR:
                s.fifoEnabled = v & 0x01 != 0
                if v & 0x02 != 0 { s.receive.removeAll(); s.receiveHead = 0 }
                return false
            case Self.lcr: s.lcr = v; return false
            case Self.mcr: s.mcr = v & 0x1F; return false
            case Self.scr: s.scr = v; return false
            default: return false
            }
        }
        if let transmit {
            transmitted.add(1, ordering: .relaxed)
            output.transmit(transmit)
        }
        if raise { irq.trigger() }
    }
}
