import Testing
import DiskImage
@testable import Toolstack

/// Storage pool and volume XML: what virsh, virt-install and Ansible send,
/// and what `pool-dumpxml` / `vol-dumpxml` give back.
@Suite struct StorageXMLTests {
    // What the clients send, kept as they wrote it.
    /// virt-install 4.1 (`--disk size=1,format=qcow2`, from its --debug log).
    static let virtInstallVolume = """
        <volume>
          <name>vi3.qcow2</name>
          <capacity>1073741824</capacity>
          <allocation>0</allocation>
          <target>
            <format type="qcow2"/>
          </target>
        </volume>
        """
    /// virt-install's pool for `--disk size=` when there is none (virtinst.StoragePool.build_default_pool).
    static let virtInstallPool = """
        <pool type="dir">
          <name>default</name>
          <uuid>4fd1c3fa-6b7c-4f3c-98c1-3a6d1e7c2b10</uuid>
          <target>
            <path>/var/lib/libvirt/images</path>
          </target>
        </pool>
        """
    /// virsh pool-define-as NAME dir --target PATH.
    static let virshPool = """
        <pool type='dir'>
          <name>p1</name>
          <target>
            <path>/srv/pool/</path>
          </target>
        </pool>
        """
    /// Ansible community.libvirt.virt_pool's documented example, with permissions.
    static let ansiblePool = """
        <pool type='dir'>
          <name>vms</name>
          <target>
            <path>/var/lib/libvirt/vms</path>
            <permissions><mode>0755</mode><owner>107</owner><group>107</group></permissions>
          </target>
        </pool>
        """
    /// virsh vol-create-as POOL NAME 1G --format qcow2 --backing-vol base.qcow2 --backing-vol-format qcow2.
    static let virshOverlay = """
        <volume>
          <name>ov.qcow2</name>
          <capacity>1073741824</capacity>
          <target>
            <format type='qcow2'/>
          </target>
          <backingStore>
            <path>/srv/pool/base.qcow2</path>
            <format type='qcow2'/>
          </backingStore>
        </volume>
        """

    @Test func poolsFromTheClients() throws {
        let v = try StorageXML.parsePool(Self.virtInstallPool)
        #expect(v.name == "default" && v.path == "/var/lib/libvirt/images" && v.kind == .dir)
        #expect(v.uuid.description == "4fd1c3fa-6b7c-4f3c-98c1-3a6d1e7c2b10")
        let p = try StorageXML.parsePool(Self.virshPool)
        #expect(p.path == "/srv/pool", "a trailing slash is dropped")
        let a = try StorageXML.parsePool(Self.ansiblePool)
        #expect(a.permissions == StoragePermissions(mode: 0o755, owner: 107, group: 107))
        // Formatting and parsing again keeps the definition.
        let again = try StorageXML.parsePool(StorageXML.format(a, capacity: 10, allocation: 4, available: 6))
        #expect(again == a)
    }

    @Test func poolXMLIsLibvirtsShape() throws {
        let def = try StorageXML.parsePool(Self.virtInstallPool)
        let xml = StorageXML.format(def, capacity: 100, allocation: 40, available: 60)
        #expect(xml.hasPrefix("<pool type='dir'>\n  <name>default</name>\n  <uuid>4fd1c3fa-6b7c-4f3c-98c1-3a6d1e7c2b10</uuid>\n"))
        #expect(xml.contains("  <capacity unit='bytes'>100</capacity>\n  <allocation unit='bytes'>40</allocation>\n  <available unit='bytes'>60</available>\n"))
        #expect(xml.contains("  <source>\n  </source>\n"))
        #expect(xml.contains("<target>\n    <path>/var/lib/libvirt/images</path>\n  </target>"), "no permissions asked for, none written")
        let ansible = StorageXML.format(try StorageXML.parsePool(Self.ansiblePool))
        #expect(ansible.contains("<permissions>\n      <mode>0755</mode>\n      <owner>107</owner>\n      <group>107</group>\n    </permissions>"))
    }

    @Test func otherPoolTypesAreRefusedByName() {
        for t in ["fs", "netfs", "logical", "iscsi", "rbd", "zfs"] {
            #expect(throws: ToolstackError.unsupported("storage pool type '\(t)' is not supported by Apus (only 'dir')")) {
                _ = try StorageXML.parsePool("<pool type='\(t)'><name>x</name><target><path>/x</path></target></pool>")
            }
        }
        #expect(throws: ToolstackError.xml("unknown storage pool type bogus")) {
            _ = try StorageXML.parsePool("<pool type='bogus'><name>x</name><target><path>/x</path></target></pool>")
        }
    }

    @Test func brokenPoolsGetClearErrors() {
        let cases: [(String, String)] = [
            ("<pool type='dir'><name>x</name></pool>", "missing storage pool target path"),
            ("<pool type='dir'><name>x</name><target><path>rel/dir</path></target></pool>", "must be absolute"),
            ("<pool type='dir'><name>x</name><target><path>/a/../b</path></target></pool>", "'.' or '..'"),
            ("<pool type='dir'><name>a/b</name><target><path>/x</path></target></pool>", "cannot contain '/'"),
            ("<pool type='dir'><name>x</name><uuid>nope</uuid><target><path>/x</path></target></pool>", "malformed uuid"),
            ("<pool><name>x</name></pool>", "missing type"),
            ("<pool type='dir'><name>x</name><target><path>/x</path><permissions><mode>999</mode></permissions></target></pool>", "octal"),
            ("<volume/>", "expecting <pool>"),
            ("<pool type='dir'", "storage_pool_definition"),
        ]
        for (xml, fragment) in cases {
            do {
                _ = try StorageXML.parsePool(xml)
                Issue.record("accepted \(xml)")
            } catch {
                #expect(error.message.contains(fragment), "\(xml): \(error.message)")
            }
        }
    }

    @Test func volumesFromTheClients() throws {
        let v = try StorageXML.parseVolume(Self.virtInstallVolume)
        #expect(v == StorageVolumeDefinition(name: "vi3.qcow2", capacity: 1 << 30, allocation: 0, format: .qcow2))
        let o = try StorageXML.parseVolume(Self.virshOverlay)
        #expect(o.backing?.path == "/srv/pool/base.qcow2" && o.backing?.format == .qcow2 && o.allocation == nil)
        // virsh vol-create-as sizes: its own suffixes, scaled by libvirt's rules.
        for (unit, bytes) in [("bytes", 1), ("KiB", 1024), ("K", 1024), ("KB", 1000), ("MiB", 1 << 20), ("M", 1 << 20), ("G", 1 << 30),
                              ("GB", 1_000_000_000), ("TiB", 1 << 40), ("b", 1), ("k", 1024)] as [(String, UInt64)] {
            let x = try StorageXML.parseVolume("<volume><name>v</name><capacity unit='\(unit)'>3</capacity></volume>")
            #expect(x.capacity == 3 * bytes, "\(unit)")
        }
    }

    @Test func brokenVolumesGetClearErrors() {
        let cases: [(String, String)] = [
            ("<volume><name>v</name></volume>", "missing capacity"),
            ("<volume><name>v</name><capacity unit='parsecs'>1</capacity></volume>", "unknown suffix 'parsecs'"),
            ("<volume><name>v</name><capacity>-1</capacity></volume>", "malformed capacity"),
            ("<volume><name>v</name><capacity unit='EiB'>99</capacity></volume>", "too large"),
            ("<volume><name>../escape</name><capacity>1</capacity></volume>", "cannot contain '/'"),
            ("<volume><name>..</name><capacity>1</capacity></volume>", "cannot contain '/'"),
            ("<volume><name>v</name><capacity>1</capacity><target><format type='vmdk'/></target></volume>", "volume format 'vmdk' is not supported"),
            ("<volume><name>v</name><capacity>1</capacity><target><format type='xyz'/></target></volume>", "unknown volume format type xyz"),
            ("<volume><name>v</name><capacity>1</capacity><backingStore><path>/b</path></backingStore></volume>", "needs a qcow2 volume"),
            ("<volume type='block'><name>v</name><capacity>1</capacity></volume>", "file only"),
            ("<volume><name>v</name><capacity>1</capacity><target><format type='qcow2'/><clusterSize unit='B'>3000</clusterSize></target></volume>", "power of two"),
        ]
        for (xml, fragment) in cases {
            do {
                _ = try StorageXML.parseVolume(xml)
                Issue.record("accepted \(xml)")
            } catch {
                #expect(error.message.contains(fragment), "\(xml): \(error.message)")
            }
        }
    }

    @Test func volumeXMLIsLibvirtsShape() {
        var v = StorageVolumeInfo(pool: "default", name: "ov.qcow2", key: "/p/ov.qcow2", path: "/p/ov.qcow2", format: .qcow2,
                                  capacity: 1 << 30, allocation: 200704, physical: 196608, permissions: StoragePermissions(mode: 0o600, owner: 0, group: 0))
        v.backing = ("/p/base.qcow2", .qcow2)
        v.clusterSize = 65536
        v.qcow2Version = 3
        v.times = [(1, 5), (2, 123456789), (3, 0)]
        let xml = StorageXML.format(v)
        #expect(xml.hasPrefix("<volume type='file'>\n  <name>ov.qcow2</name>\n  <key>/p/ov.qcow2</key>\n  <capacity unit='bytes'>1073741824</capacity>\n"))
        #expect(xml.contains("<physical unit='bytes'>196608</physical>"))
        #expect(xml.contains("    <format type='qcow2'/>\n") && xml.contains("<mode>0600</mode>"))
        #expect(xml.contains("<atime>1.000000005</atime>") && xml.contains("<mtime>2.123456789</mtime>"))
        #expect(xml.contains("<compat>1.1</compat>") && xml.contains("<clusterSize unit='B'>65536</clusterSize>"))
        #expect(xml.contains("<backingStore>\n    <path>/p/base.qcow2</path>\n    <format type='qcow2'/>\n  </backingStore>"))
    }
}
