import ApusSys

/// Facts about Dom0's host for nodeinfo, capabilities and Domain-0.
public enum HostInfo {
    public static var cpuCount: Int { FileSystem.onlineCPUs }

    /// Total memory in KiB (/proc/meminfo).
    public static var memoryKiB: UInt64 {
        let text = ProcessControl.readText("/proc/meminfo") ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            return UInt64(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    /// /proc/meminfo's fields in KiB (MemTotal, MemFree, Buffers, Cached, ...).
    public static func meminfo() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in (ProcessControl.readText("/proc/meminfo") ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, parts[0].hasSuffix(":"), let v = UInt64(parts[1]) else { continue }
            out[String(parts[0].dropLast())] = v
        }
        return out
    }

    /// Free memory in bytes (MemFree; the one NUMA cell Apus reports).
    public static var freeMemoryBytes: UInt64 { (meminfo()["MemFree"] ?? 0) * 1024 }

    /// Host CPU time by kind, in nanoseconds, as libvirt's Linux driver
    /// reads /proc/stat: kernel (system + irq + softirq), user (user + nice),
    /// idle, iowait. `cpu` nil is all CPUs together; nil if there is no such CPU.
    public static func cpuTimes(cpu: Int?) -> (kernel: UInt64, user: UInt64, idle: UInt64, iowait: UInt64)? {
        let header = cpu.map { "cpu\($0)" } ?? "cpu"
        let tick = UInt64(1_000_000_000) / UInt64(max(1, ProcessControl.clockTicksPerSecond()))
        for line in (ProcessControl.readText("/proc/stat") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.first.map(String.init) == header, f.count >= 5 else { continue }
            let v = f.dropFirst().map { UInt64($0) ?? 0 }
            func at(_ i: Int) -> UInt64 { i < v.count ? v[i] : 0 }
            return (kernel: (at(2) + at(5) + at(6)) * tick, user: (at(0) + at(1)) * tick, idle: at(3) * tick, iowait: at(4) * tick)
        }
        return nil
    }

    /// The host's complete IPv4 neighbour entries (/proc/net/arp): address and MAC.
    public static func neighbours() -> [(address: String, mac: String)] {
        var out: [(String, String)] = []
        for line in (ProcessControl.readText("/proc/net/arp") ?? "").split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // IP address, HW type, Flags (0x2: complete), HW address, Mask, Device.
            guard f.count >= 4, f[2] != "0x0" else { continue }
            out.append((String(f[0]), f[3].lowercased()))
        }
        return out
    }

    /// CPU frequency in MHz (/proc/cpuinfo), 0 if unknown.
    public static var mhz: Int32 {
        let text = ProcessControl.readText("/proc/cpuinfo") ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("cpu MHz") {
            if let v = line.split(separator: ":").last.flatMap({ Double(String($0).trimmingWhitespace) }) { return Int32(v) }
        }
        return 0
    }

    /// The host's id of a thread that process `pid` knows as `tid`. A
    /// confined apus-hv runs in a PID namespace of its own and reports its
    /// vCPU threads by the ids it sees there; each task's NSpid line in
    /// /proc lists its ids from the host's namespace down to its own.
    /// nil when the process has no such thread.
    public static func hostThreadID(pid: Int32, tid: Int32) -> Int32? {
        for t in ProcessControl.directoryEntries("/proc/\(pid)/task") {
            guard let text = ProcessControl.readText("/proc/\(pid)/task/\(t)/status") else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("NSpid:") {
                let ids = line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int32($0) }
                if ids.last == tid { return ids.first }
            }
        }
        return nil
    }

    /// apus-hv's vCPU threads (named vcpuN), by vCPU number: their host thread ids.
    public static func vcpuThreads(pid: Int32) -> [Int: Int32] {
        var out: [Int: Int32] = [:]
        for t in ProcessControl.directoryEntries("/proc/\(pid)/task") {
            guard let tid = Int32(t), let comm = ProcessControl.readSmallFile("/proc/\(pid)/task/\(t)/comm"), comm.starts(with: Array("vcpu".utf8)),
                  let n = Int(String(decoding: comm.dropFirst(4).prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)) else { continue }
            out[n] = tid
        }
        return out
    }

    /// The CPU each thread last ran on (/proc/PID/task/TID/stat field 39).
    public static func lastCPU(pid: Int32, tid: Int32) -> Int32 {
        guard let text = ProcessControl.readText("/proc/\(pid)/task/\(tid)/stat"),
              let close = text.lastIndex(of: ")") else { return -1 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // Fields after the command: state is field 3, processor is field 39.
        return fields.count > 36 ? Int32(fields[36]) ?? -1 : -1
    }

    /// One look at a domain's apus-hv: its threads' CPU time, the vCPU
    /// threads (named vcpuN), user/system time and resident memory, from
    /// /proc alone (no call to the process).
    public struct ProcessSample: Sendable {
        /// CPU time of all threads, ns.
        public var cpuNanoseconds: UInt64 = 0
        public var userNanoseconds: UInt64 = 0, systemNanoseconds: UInt64 = 0
        public var residentKiB: UInt64 = 0
        /// Per vCPU (by index): CPU time and run-queue wait, ns.
        public var vcpus: [UInt32: (cpu: UInt64, wait: UInt64)] = [:]
    }

    public static func sample(pid: Int32) -> ProcessSample? {
        var s = ProcessSample()
        let base = "/proc/\(pid)"
        let tasks = ProcessControl.directoryEntries(base + "/task")
        guard !tasks.isEmpty else { return nil }
        for t in tasks {
            guard let bytes = ProcessControl.readSmallFile(base + "/task/" + t + "/schedstat") else { continue }
            let f = bytes.split(separator: UInt8(ascii: " "))
            let cpu = f.first.flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 0
            s.cpuNanoseconds += cpu
            if let comm = ProcessControl.readSmallFile(base + "/task/" + t + "/comm"),
               comm.starts(with: Array("vcpu".utf8)),
               let n = UInt32(String(decoding: comm.dropFirst(4).prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)) {
                let wait = f.count > 1 ? UInt64(String(decoding: f[1], as: UTF8.self)) ?? 0 : 0
                s.vcpus[n] = (cpu, wait)
            }
        }
        let split = processCPUSplit(pid: pid)
        s.userNanoseconds = split.user
        s.systemNanoseconds = split.system
        // statm: sizes in pages; the second is resident.
        if let statm = ProcessControl.readSmallFile(base + "/statm") {
            let f = statm.split(separator: UInt8(ascii: " "))
            if f.count > 1, let pages = UInt64(String(decoding: f[1], as: UTF8.self)) { s.residentKiB = pages * UInt64(ProcessControl.pageSize) / 1024 }
        }
        return s
    }

    /// CPU time of every thread of a process, in ns (the sum of
    /// /proc/PID/task/*/schedstat, which counts nanoseconds on the CPU).
    public static func processCPUNanoseconds(pid: Int32) -> UInt64 {
        let tasks = ProcessControl.directoryEntries("/proc/\(pid)/task")
        var total: UInt64 = 0
        for t in tasks {
            guard let text = ProcessControl.readText("/proc/\(pid)/task/\(t)/schedstat"),
                  let first = text.split(separator: " ").first, let ns = UInt64(first) else { continue }
            total += ns
        }
        return total
    }

    /// User and system CPU time of a process in ns (/proc/PID/stat utime, stime).
    public static func processCPUSplit(pid: Int32) -> (user: UInt64, system: UInt64) {
        guard let bytes = ProcessControl.readSmallFile("/proc/\(pid)/stat") else { return (0, 0) }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return (0, 0) }
        let f = text[text.index(after: close)...].split(separator: " ")
        // After the command: field 3 is state, utime and stime are fields 14 and 15.
        guard f.count > 12, let u = UInt64(f[11]), let s = UInt64(f[12]) else { return (0, 0) }
        let tick = UInt64(1_000_000_000) / UInt64(max(1, ProcessControl.clockTicksPerSecond()))
        return (u * tick, s * tick)
    }

    /// How long a thread was runnable but waited for a CPU, in ns
    /// (/proc/PID/task/TID/schedstat, second field).
    public static func threadWaitNanoseconds(pid: Int32, tid: Int32) -> UInt64 {
        guard let text = ProcessControl.readText("/proc/\(pid)/task/\(tid)/schedstat") else { return 0 }
        let f = text.split(separator: " ")
        return f.count > 1 ? UInt64(f[1]) ?? 0 : 0
    }

    /// Resident memory of a process in KiB.
    public static func residentKiB(pid: Int32) -> UInt64 {
        let text = ProcessControl.readText("/proc/\(pid)/status") ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return UInt64(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    /// libvirt capabilities XML for this host.
    public static func capabilitiesXML(hypervisor: String) -> String {
        """
        <capabilities>
          <host>
            <uuid>\(hostUUID)</uuid>
            <cpu>
              <arch>x86_64</arch>
              <topology sockets='1' dies='1' cores='\(cpuCount)' threads='1'/>
            </cpu>
            <power_management/>
            <iommu support='no'/>
            <topology>
              <cells num='1'>
                <cell id='0'>
                  <memory unit='KiB'>\(memoryKiB)</memory>
                  <cpus num='\(cpuCount)'>
        \((0..<cpuCount).map { "              <cpu id='\($0)' socket_id='0' die_id='0' core_id='\($0)' siblings='\($0)'/>" }.joined(separator: "\n"))
                  </cpus>
                </cell>
              </cells>
            </topology>
          </host>
          <guest>
            <os_type>hvm</os_type>
            <arch name='x86_64'>
              <wordsize>64</wordsize>
              <emulator>\(hypervisor)</emulator>
              <machine>apus</machine>
              <domain type='kvm'/>
            </arch>
            <features>
              <acpi default='on' toggle='no'/>
            </features>
          </guest>
        </capabilities>

        """
    }

    /// SMBIOS facts of the host (`virsh sysinfo`), from /sys/class/dmi/id.
    public static var sysinfoXML: String {
        func dmi(_ f: String) -> String {
            let v = (ProcessControl.readText("/sys/class/dmi/id/" + f) ?? "").trimmingWhitespace
            return XMLWriter.escape(v)
        }
        return """
        <sysinfo type='smbios'>
          <bios>
            <entry name='vendor'>\(dmi("bios_vendor"))</entry>
            <entry name='version'>\(dmi("bios_version"))</entry>
            <entry name='date'>\(dmi("bios_date"))</entry>
          </bios>
          <system>
            <entry name='manufacturer'>\(dmi("sys_vendor"))</entry>
            <entry name='product'>\(dmi("product_name"))</entry>
            <entry name='version'>\(dmi("product_version"))</entry>
          </system>
        </sysinfo>

        """
    }

    /// What a domain may use on this host (`virsh domcapabilities`).
    public static func domainCapabilitiesXML(hypervisor: String) -> String {
        """
        <domainCapabilities>
          <path>\(XMLWriter.escape(hypervisor))</path>
          <domain>kvm</domain>
          <machine>apus</machine>
          <arch>x86_64</arch>
          <vcpu max='\(DomainDefinition.maxVCPUs)'/>
          <os supported='yes'>
            <loader supported='no'/>
          </os>
          <devices>
            <disk supported='yes'>
              <enum name='diskDevice'><value>disk</value></enum>
              <enum name='bus'><value>virtio</value></enum>
              <enum name='model'><value>virtio</value></enum>
            </disk>
            <graphics supported='no'/>
            <video supported='no'/>
            <hostdev supported='no'/>
          </devices>
          <features>
            <acpi supported='yes'/>
          </features>
        </domainCapabilities>

        """
    }

    /// A stable host UUID (/etc/machine-id), as libvirt derives one.
    public static var hostUUID: String {
        let id = (ProcessControl.readText("/etc/machine-id") ?? "").trimmingWhitespace
        return DomainUUID(id)?.description ?? DomainUUID.zero.description
    }
}
