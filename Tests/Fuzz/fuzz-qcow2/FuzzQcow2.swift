// qcow2 images (header, extensions, L1/L2/refcount tables, compressed
// clusters) under libFuzzer; without -DFUZZING, `fuzz-qcow2 FILE...` replays inputs.
import FuzzTargets

@main
struct FuzzQcow2 {
    static func main() {
        fuzzMain { data, size in
            Qcow2Fuzz.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
    }
}
