// libvirt's remote protocol (framing, packets, XDR, the dispatcher and the
// toolstack behind it) under libFuzzer (Deploy/fuzz builds it with
// -DFUZZING -sanitize=fuzzer,address); without -DFUZZING,
// `fuzz-libvirt-rpc FILE...` replays inputs.
import FuzzTargets
import ToolstackFuzz

@main
struct FuzzLibvirtRPC {
    static func main() {
        fuzzMain { data, size in
            LibvirtRPCFuzz.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
    }
}
