#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32
#endif

/// Runs a fuzz target: under -DFUZZING, libFuzzer drives `callback`;
/// otherwise each argument is a corpus file replayed once.
public func fuzzMain(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Never {
    #if FUZZING
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
    #else
    for path in CommandLine.arguments.dropFirst() {
        let bytes = readInput(path)
        _ = bytes.withUnsafeBufferPointer { callback($0.baseAddress, $0.count) }
    }
    exit(0)
    #endif
}
