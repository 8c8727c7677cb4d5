import KVM

enum CPUIDEntryFixture {
    static func leaf(_ f: UInt32, index: UInt32 = 0, ebx: UInt32 = 0) -> CPUIDEntry {
        CPUIDEntry(function: f, index: index, flags: 0, eax: 0, ebx: ebx, ecx: 0, edx: 0)
    }
}
