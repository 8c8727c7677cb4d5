/// The Apus release, reported by every executable's `--version` and by
/// apusd as the hypervisor version.
public enum ApusVersion {
    public static let major = 0, minor = 1, release = 0
    public static var string: String { "\(major).\(minor).\(release)" }
}
