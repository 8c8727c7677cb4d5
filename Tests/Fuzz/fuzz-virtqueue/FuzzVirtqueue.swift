// The descriptor-chain walker and blk request parser under libFuzzer
// (Deploy/fuzz builds it with -DFUZZING -sanitize=fuzzer,address);
// without -DFUZZING, `fuzz-virtqueue FILE...` replays inputs.
import FuzzTargets

@main
struct FuzzVirtqueue {
    static func main() {
        fuzzMain { data, size in
            VirtqueueFuzz.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
    }
}
