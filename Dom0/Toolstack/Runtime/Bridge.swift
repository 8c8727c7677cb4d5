import ApusSys

/// Re-exports of the syscall layer the toolstack uses (so the rest of the
/// module reads in domain terms).
enum ProcessControlBridge {
    static func makeDirectories(_ path: String) throws { try ProcessControl.makeDirectories(path) }
}
