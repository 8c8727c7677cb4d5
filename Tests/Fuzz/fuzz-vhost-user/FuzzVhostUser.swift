// vhost-user message parsing and the backend session under libFuzzer
// (Deploy/fuzz builds it with -DFUZZING -sanitize=fuzzer,address);
// without -DFUZZING, `fuzz-vhost-user FILE...` replays inputs.
import FuzzTargets

@main
struct FuzzVhostUser {
    static func main() {
        fuzzMain { data, size in
            VhostUserFuzz.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
    }
}
