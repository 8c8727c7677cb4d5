import ApusSys

/// Runs work that blocks (copying a volume, zeroing a file) on a thread of
/// its own, so the toolstack's executor keeps serving other calls.
public enum Blocking {
    public static func run<T: Sendable, E: Error>(_ name: String = "apus-io", _ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { (k: CheckedContinuation<Result<T, E>, Never>) in
            let thread = OSThread(name: name) {
                do throws(E) {
                    k.resume(returning: .success(try body()))
                } catch {
                    k.resume(returning: .failure(error))
                }
            }
            do {
                try thread.start()
                thread.detach()
            } catch {
                // No thread to be had: do it here rather than fail the call.
                do throws(E) {
                    k.resume(returning: .success(try body()))
                } catch {
                    k.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
