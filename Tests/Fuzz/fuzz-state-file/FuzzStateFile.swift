// Apus saved-state files (header, sections, checksums, RAM runs) under
// libFuzzer; without -DFUZZING, `fuzz-state-file FILE...` replays inputs.
import FuzzTargets

@main
struct FuzzStateFile {
    static func main() {
        fuzzMain { data, size in
            StateFileFuzz.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
    }
}
