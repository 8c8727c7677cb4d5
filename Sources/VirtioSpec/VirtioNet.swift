/// virtio-net constants (virtio 1.2 §5.1), in one place for everything
/// that speaks the device: apus-hv's frontend, apus-netback, the harness.
public enum VirtioNet {
    /// Device ID.
    public static let deviceID: UInt32 = 1
    public static let featureMAC: UInt64 = 1 << 5
    public static let featureMergeableRxBuffers: UInt64 = 1 << 15
    public static let featureStatus: UInt64 = 1 << 16
    public static let statusLinkUp: UInt16 = 1

    /// Queue 0 receives (device to driver), queue 1 transmits.
    public static let receiveQueue = 0
    public static let transmitQueue = 1

    /// With VIRTIO_F_VERSION_1 the header is always 12 bytes (num_buffers included).
    public static let headerSize = 12
    /// Bytes of the configuration space apus-hv reads: mac, status,
    /// max_virtqueue_pairs, mtu (§5.1.4).
    public static let configSize = 12
}
