// The boot loader (partition tables, ext2/3/4, grub.cfg) under libFuzzer;
// without -DFUZZING, `fuzz-boot-loader FILE...` replays inputs.
import FuzzTargets

@main
struct FuzzBootLoader {
    static func main() {
        fuzzMain { data, size in
            BootLoaderFuzz.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
    }
}
