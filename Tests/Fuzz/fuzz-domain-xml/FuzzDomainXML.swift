// Domain XML (the XML parser, validation, and the format/parse round trip)
// under libFuzzer; without -DFUZZING, `fuzz-domain-xml FILE...` replays inputs.
import FuzzTargets
import ToolstackFuzz

@main
struct FuzzDomainXML {
    static func main() {
        fuzzMain { data, size in
            DomainXMLFuzz.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
    }
}
