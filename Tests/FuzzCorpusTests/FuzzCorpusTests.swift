import Testing
import Foundation
import TestSupport
import FuzzTargets
import ToolstackFuzz

/// Replays the checked-in fuzz corpus (and any crash inputs saved under
/// Tests/Fuzz/corpus) through the fuzz targets' code paths: every one of
/// them must run without trapping.
@Suite struct FuzzCorpusTests {
    func inputs(_ target: String) throws -> [[UInt8]] {
        let dir = packageRoot + "/Tests/Fuzz/corpus/" + target
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        return try names.sorted().map { try readFile(dir + "/" + $0) }
    }

    @Test func virtqueueCorpus() throws {
        let corpus = try inputs("fuzz-virtqueue")
        #expect(!corpus.isEmpty)
        for input in corpus { VirtqueueFuzz.run(input) }
    }

    @Test func vhostUserCorpus() throws {
        let corpus = try inputs("fuzz-vhost-user")
        #expect(!corpus.isEmpty)
        for input in corpus { VhostUserFuzz.run(input) }
    }

    @Test func libvirtRPCCorpus() throws {
        let corpus = try inputs("fuzz-libvirt-rpc")
        #expect(!corpus.isEmpty)
        // Each seed is a real virsh session: the server answers the
        // sentinel call after it, so it handled the whole stream.
        for input in corpus { #expect(LibvirtRPCFuzz.run(input)) }
    }

    @Test func domainXMLCorpus() throws {
        let corpus = try inputs("fuzz-domain-xml")
        #expect(!corpus.isEmpty)
        for input in corpus { DomainXMLFuzz.run(input) }
    }

    @Test func stateFileCorpus() throws {
        let corpus = try inputs("fuzz-state-file")
        #expect(!corpus.isEmpty)
        // The seeds are real files: read through to the end, RAM applied.
        #expect(corpus.map { StateFileFuzz.run($0) }.sorted() == [1, 3]) // (the unknown optional section skipped)
    }

    @Test func randomInputsDoNotTrap() {
        var state: UInt64 = 0x1234_5678
        for _ in 0..<300 {
            var bytes: [UInt8] = []
            for _ in 0..<512 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: state >> 33))
            }
            VirtqueueFuzz.run(bytes)
            VhostUserFuzz.run(bytes)
            DomainXMLFuzz.run(bytes)
            StateFileFuzz.run(Array("APUSSTAT".utf8) + [1, 0, 0, 0, 0, 0, 0, 0] + bytes)
        }
    }
}
