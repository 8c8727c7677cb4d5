#!/usr/bin/python3
"""Records the XDR that real libvirt peers exchange, for the golden tests.

Starts libvirtd (Debian's libvirt-daemon, its built-in test driver) in a
scratch directory, puts a relay in front of its socket that logs every
REMOTE_PROGRAM call and successful reply, and drives it with the real virsh
and libvirt-python through the procedures apusd declares. Writes one line
per distinct payload: `PROCEDURE call|reply HEX`.

    Tests/LibvirtRPCTests/Golden/capture-libvirtd.py > Tests/LibvirtRPCTests/Golden/libvirtd-9.0-test-driver.txt

The output is data libvirt's own encoder and decoder produced (what the
tests compare Apus's types against), not code.
"""
import os, socket, struct, subprocess, sys, tempfile, threading, time

REMOTE_PROGRAM = 0x20008086


def relay(listen_path, target_path, records):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen_path)
    server.listen(16)

    def pump(src, dst, direction):
        buf = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            dst.sendall(data)
            buf += data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < n:
                    break
                packet, buf = buf[:n], buf[n:]
                prog, vers, proc, typ, serial, status = struct.unpack(">IIiiIi", packet[4:28])
                # CALL (0) from the client, REPLY (1) with status OK from the daemon.
                if prog == REMOTE_PROGRAM and ((direction == "c" and typ == 0) or (direction == "s" and typ == 1 and status == 0)):
                    records.add((proc, "call" if typ == 0 else "reply", packet[28:].hex()))
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def serve():
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(target_path)
            threading.Thread(target=pump, args=(client, upstream, "c"), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, "s"), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def main():
    work = tempfile.mkdtemp(prefix="apus-golden-")
    os.makedirs(work + "/no-drivers")
    conf = work + "/libvirtd.conf"
    with open(conf, "w") as f:
        f.write('unix_sock_dir = "%s"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n' % work)
    env = dict(os.environ, LIBVIRT_DRIVER_DIR=work + "/no-drivers")
    daemon = subprocess.Popen(["/usr/sbin/libvirtd", "-f", conf, "-p", work + "/pid"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        if os.path.exists(work + "/libvirt-sock"):
            break
        time.sleep(0.025)
    records = set()
    proxy = relay(work + "/proxy.sock", work + "/libvirt-sock", records)
    uri = "test+unix:///default?socket=" + work + "/proxy.sock"

    # The test driver forgets what was defined when its last connection
    # closes: one connection stays open for the whole capture.
    holder = subprocess.Popen(["/usr/bin/python3", "-c", "import libvirt, sys, time; c = libvirt.open(sys.argv[1]); time.sleep(3600)", uri])
    time.sleep(0.5)

    def virsh(*args):
        subprocess.run(["/usr/bin/virsh", "-q", "-c", uri] + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL, timeout=60)

    xml = work + "/extra.xml"
    with open(xml, "w") as f:
        f.write("<domain type='test'><name>extra</name><memory unit='MiB'>64</memory><vcpu current='1'>2</vcpu>"
                "<os><type>hvm</type></os><devices><interface type='network'><mac address='52:54:00:00:00:99'/>"
                "<source network='default'/></interface></devices></domain>")
    netxml = work + "/net.xml"
    with open(netxml, "w") as f:
        f.write("<network><name>n2</name><forward mode='nat'/><bridge name='virbr9'/><ip address='192.168.124.1' prefix='24'>"
                "<dhcp><range start='192.168.124.2' end='192.168.124.99'/></dhcp></ip></network>")
    disk = work + "/disk.xml"
    with open(disk, "w") as f:
        f.write("<disk type='file' device='disk'><source file='/guest/extra.img'/><target dev='vdb' bus='virtio'/></disk>")
    snapxml = work + "/snap.xml"
    with open(snapxml, "w") as f:
        f.write("<domainsnapshot><description>from a file</description></domainsnapshot>")
    for args in [
        ["list", "--all"], ["list", "--all", "--name"], ["list", "--title", "--all"], ["dominfo", "test"],
        ["domstate", "--reason", "test"], ["dumpxml", "test"], ["dumpxml", "--inactive", "test"], ["vcpuinfo", "test"],
        ["vcpucount", "test"], ["domblkstat", "test", "vda"], ["domifstat", "test", "testnet0"], ["dommemstat", "test"],
        ["domstats"], ["domstats", "--state", "--list-active"], ["domstats", "--cpu-total", "--balloon", "--vcpu", "--interface", "--block", "test"],
        ["domblkinfo", "test", "vda"], ["domifaddr", "test"], ["domjobinfo", "test"], ["domcontrol", "test"],
        ["domtime", "test"], ["cpu-stats", "test"], ["schedinfo", "test"], ["memtune", "test"], ["blkiotune", "test"],
        ["numatune", "test"], ["vcpupin", "test"], ["emulatorpin", "test"], ["nodeinfo"], ["nodecpustats"], ["nodecpustats", "0"],
        ["nodememstats"], ["freecell"], ["freecell", "--all"], ["maxvcpus"], ["capabilities"], ["domcapabilities"], ["sysinfo"],
        ["hostname"], ["version", "--daemon"], ["domiflist", "test"], ["domblklist", "test"],
        ["define", xml], ["define", "--validate", xml], ["autostart", "extra"], ["autostart", "--disable", "extra"],
        ["desc", "extra", "--title", "a title"], ["desc", "extra", "a description"], ["desc", "extra", "--title"],
        ["setmem", "extra", "32M", "--config"], ["setmaxmem", "extra", "128M", "--config"], ["setvcpus", "extra", "2", "--config"],
        ["attach-disk", "extra", "/guest/extra.img", "vdb", "--config"], ["detach-disk", "extra", "vdb", "--config"],
        ["attach-device", "extra", disk, "--config"], ["update-device", "extra", disk, "--config"],
        ["detach-device", "extra", disk, "--config"], ["domrename", "extra", "extra2"], ["domrename", "extra2", "extra"],
        ["start", "extra"], ["suspend", "extra"], ["resume", "extra"], ["send-key", "extra", "KEY_A", "KEY_B"],
        ["inject-nmi", "extra"], ["blockresize", "test", "vda", "2G"], ["reboot", "extra"], ["reset", "extra"],
        ["shutdown", "extra"], ["destroy", "extra"], ["start", "--paused", "extra"], ["destroy", "extra"],
        ["save", "test", work + "/test.save"], ["restore", work + "/test.save"], ["managedsave", "test"],
        ["managedsave-dumpxml", "test"], ["managedsave-define", "test", xml, "--paused"],
        ["managedsave-remove", "test"], ["start", "test"],
        ["start", "extra"], ["destroy", "--graceful", "extra"], ["save", "--bypass-cache", "test", work + "/test2.save"],
        ["save-image-dumpxml", work + "/test2.save"], ["save-image-define", work + "/test2.save", xml, "--running"],
        ["restore", "--bypass-cache", work + "/test2.save"], ["domxml-to-native", "xen-xl", xml],
        ["undefine", "extra"], ["create", xml], ["destroy", "extra"], ["domxml-from-native", "xen-xl", xml],
        ["event", "--all", "--timeout", "1"], ["event", "--event", "lifecycle", "--timeout", "1"],
        # Storage: the pool and volume commands, against the test driver's default-pool.
        ["pool-list", "--all", "--details"], ["pool-info", "default-pool"], ["pool-dumpxml", "default-pool"],
        ["pool-dumpxml", "--inactive", "default-pool"], ["pool-capabilities"], ["find-storage-pool-sources", "dir"],
        ["pool-define-as", "p2", "dir", "--target", work + "/p2"], ["pool-build", "p2"], ["pool-start", "p2"],
        ["pool-autostart", "p2"], ["pool-autostart", "--disable", "p2"], ["pool-refresh", "p2"],
        ["pool-uuid", "p2"], ["pool-name", "%s" % "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566"],
        ["vol-create-as", "default-pool", "v1.img", "10M"],
        ["vol-create-as", "default-pool", "v2.qcow2", "10M", "--format", "qcow2", "--prealloc-metadata"],
        ["vol-list", "default-pool", "--details"], ["vol-info", "--pool", "default-pool", "v1.img"],
        ["vol-info", "--pool", "default-pool", "--physical", "v1.img"], ["vol-dumpxml", "--pool", "default-pool", "v1.img"],
        ["vol-path", "--pool", "default-pool", "v1.img"], ["vol-key", "--pool", "default-pool", "v1.img"],
        ["vol-pool", "/default-pool/v1.img"], ["vol-name", "/default-pool/v1.img"],
        ["vol-clone", "--pool", "default-pool", "v1.img", "v3.img"], ["vol-resize", "--pool", "default-pool", "v1.img", "20M"],
        ["vol-wipe", "--pool", "default-pool", "v3.img"], ["vol-upload", "--pool", "default-pool", "v1.img", xml],
        ["vol-download", "--pool", "default-pool", "v1.img", work + "/down"], ["vol-delete", "--pool", "default-pool", "v3.img"],
        ["pool-destroy", "p2"], ["pool-delete", "p2"], ["pool-undefine", "p2"],
        ["pool-create-as", "p3", "dir", "--target", work + "/p3"], ["pool-destroy", "p3"],
        ["pool-event", "--event", "lifecycle", "--timeout", "1"], ["pool-event", "--event", "refresh", "--pool", "default-pool", "--timeout", "1"],
        # Networks: the net-* commands, against the test driver's default network.
        ["net-list", "--all"], ["net-list", "--name"], ["net-info", "default"], ["net-dumpxml", "default"],
        ["net-dumpxml", "--inactive", "default"], ["net-define", netxml], ["net-define", "--validate", netxml],
        ["net-start", "n2"], ["net-autostart", "n2"], ["net-autostart", "--disable", "n2"],
        ["net-update", "n2", "add", "ip-dhcp-host", "<host mac='52:54:00:00:00:07' name='h7' ip='192.168.124.7'/>", "--live", "--config"],
        ["net-dhcp-leases", "default"], ["net-dhcp-leases", "default", "--mac", "52:54:00:00:00:07"],
        ["net-port-list", "default"], ["net-destroy", "n2"], ["net-undefine", "n2"],
        ["net-create", netxml], ["net-destroy", "n2"], ["net-create", "--validate", netxml], ["net-destroy", "n2"],
        ["net-event", "--event", "lifecycle", "--timeout", "1"], ["net-event", "--event", "lifecycle", "--network", "default", "--timeout", "1"],
    ]:
        virsh(*args)

    script = r'''
import libvirt, sys
libvirt.registerErrorHandler(lambda *a: None, None)
c = libvirt.open(sys.argv[1])
def t(f, *a):
    try: f(*a)
    except libvirt.libvirtError: pass
    except Exception as e: print("capture:", f.__name__, e, file=sys.stderr)
d = c.lookupByName("test")
for f, a in [(c.getFreeMemory, ()), (c.getCellsFreeMemory, (0, 4)), (c.getMaxVcpus, (None,)), (c.getMaxVcpus, ("test",)),
             (c.getCPUStats, (-1,)), (c.getMemoryStats, (-1,)), (c.getAllDomainStats, ()), (c.getAllDomainStats, (1 | 8, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)),
             (c.domainListGetStats, ([d], libvirt.VIR_DOMAIN_STATS_BLOCK)), (c.listDomainsID, ()), (c.listDefinedDomains, ()),
             (c.numOfDomains, ()), (c.numOfDefinedDomains, ()), (c.lookupByID, (d.ID(),)), (c.lookupByUUID, (d.UUID(),)),
             (c.getURI, ()), (c.isSecure, ()), (c.isEncrypted, ()), (c.getSecurityModel, ()), (c.getLibVersion, ()),
             (d.isUpdated, ()), (d.jobInfo, ()), (d.jobStats, ()), (d.blockInfo, ("vda",)), (d.interfaceAddresses, (0,)),
             (d.interfaceAddresses, (2,)), (d.memoryParameters, ()), (d.blkioParameters, ()), (d.numaParameters, ()),
             (d.getCPUStats, (True,)), (d.getCPUStats, (False,)), (d.vcpuPinInfo, (0,)), (d.emulatorPinInfo, ()),
             (d.schedulerType, ()), (d.schedulerParameters, ()), (d.schedulerParametersFlags, (0,)), (d.ioThreadInfo, ()),
             (d.perfEvents, ()), (d.diskErrors, ()), (d.isActive, ()), (d.isPersistent, ()), (d.OSType, ()), (d.maxVcpus, ()),
             (d.maxMemory, ()), (d.XMLDesc, (libvirt.VIR_DOMAIN_XML_SECURE,)), (d.hasManagedSaveImage, ()), (d.snapshotNum, ()),
             (d.securityLabel, ()), (d.controlInfo, ()), (d.getTime, ()), (d.state, ()), (d.info, ()), (d.vcpus, ()),
             (d.vcpusFlags, (libvirt.VIR_DOMAIN_AFFECT_LIVE,)), (d.blockStats, ("vda",)), (d.blockStatsFlags, ("vda",)),
             (d.interfaceStats, ("testnet0",)), (d.memoryStats, ()), (d.autostart, ()), (d.messages, ()),
             (d.setMetadata, (libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<team>storage</team>", "own", "https://example.com/owner", 0)),
             (d.metadata, (libvirt.VIR_DOMAIN_METADATA_ELEMENT, "https://example.com/owner", 0)),
             (d.metadata, (libvirt.VIR_DOMAIN_METADATA_TITLE, None, 0)),
             (d.setSchedulerParameters, ({"weight": 50},)), (d.setSchedulerParametersFlags, ({"weight": 60}, 0)),
             (d.setMemoryParameters, ({"hard_limit": 1048576}, 0)), (d.setBlkioParameters, ({"weight": 500}, 0)),
             (d.setNumaParameters, ({"numa_mode": 0}, 0)), (d.pinVcpuFlags, (0, (True,), 0)), (d.pinEmulator, ((True,), 0)),
             (d.detachDeviceAlias, ("net0", 0)), (d.attachDevice, ("<disk type='file'><source file='/x'/><target dev='vdc'/></disk>",)),
             (d.detachDevice, ("<disk type='file'><source file='/x'/><target dev='vdc'/></disk>",)),
             (d.setAutostart, (0,)), (d.setMemory, (1048576,)), (d.setMaxMemory, (8388608,)), (d.setVcpus, (2,)),
             (d.sendKey, (libvirt.VIR_KEYCODE_SET_LINUX, 100, [29, 56, 111], 3, 0)), (d.injectNMI, (0,)),
             (d.blockResize, ("vda", 4 << 30, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)), (d.reset, (0,)), (d.shutdownFlags, (1,))]:
    t(f, *a)
p = c.storagePoolLookupByName("default-pool")
t(c.storagePoolDefineXML, "<pool type='dir'><name>inactive</name><target><path>/inactive</path></target></pool>", 0)
for f, a in [(c.listStoragePools, ()), (c.listDefinedStoragePools, ()), (c.numOfStoragePools, ()), (c.numOfDefinedStoragePools, ()),
             (c.storagePoolLookupByTargetPath, ("/default-pool",)), (p.numOfVolumes, ()), (p.listVolumes, ()),
             (p.isActive, ()), (p.isPersistent, ()), (p.autostart, ()), (p.info, ()),
             (p.createXML, ("<volume><name>py.img</name><capacity>1048576</capacity></volume>", 0))]:
    t(f, *a)
v = p.storageVolLookupByName("py.img")
for f, a in [(v.info, ()), (v.infoFlags, (1,)), (v.wipePattern, (0, 0)), (v.storagePoolLookupByVolume, ()),
             (c.storageVolLookupByKey, (v.key(),)), (c.storageVolLookupByPath, (v.path(),)), (v.delete, (0,))]:
    t(f, *a)
n = c.networkLookupByName("default")
t(c.networkDefineXML, "<network><name>inactive</name><bridge name='virbr8'/></network>")
for f, a in [(c.listNetworks, ()), (c.listDefinedNetworks, ()), (c.numOfNetworks, ()), (c.numOfDefinedNetworks, ()),
             (c.networkLookupByUUID, (n.UUID(),)), (n.bridgeName, ()), (n.isActive, ()), (n.isPersistent, ()), (n.autostart, ()),
             (n.DHCPLeases, ()), (n.listAllPorts, ()), (c.listAllNetworks, (0,))]:
    t(f, *a)
port = None
try:
    port = n.portCreateXML("<networkport><owner><name>test</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid></owner>"
                           "<mac address='52:54:00:00:00:42'/><plug type='network' bridge='virbr0'/></networkport>", 0)
except libvirt.libvirtError as e:
    print("capture: portCreateXML", e, file=sys.stderr)
if port is not None:
    for f, a in [(n.networkPortLookupByUUID, (port.UUID(),)), (port.XMLDesc, (0,)), (port.getParameters, (0,)),
                 (port.setParameters, ({"inbound.average": 1000}, 0)), (port.delete, (0,))]:
        t(f, *a)
'''
    subprocess.run(["/usr/bin/python3", "-c", script, uri], stdout=subprocess.DEVNULL, timeout=120)

    # Snapshots, last: a revert restarts the domain test (a new ID), which the calls above would otherwise see.
    # Snapshots of the running test (s1, then its child s2) and of the inactive extra, defined again. A snapshot
    # created without a name is named after the time: it is deleted (--current) at once so later listings stay the same.
    for args in [
        ["snapshot-create-as", "test", "s1", "--description", "d1"], ["snapshot-create-as", "test", "s2"],
        ["snapshot-create", "test"], ["snapshot-delete", "test", "--current"],
        ["snapshot-create", "test", snapxml], ["snapshot-delete", "test", "--current"],
        ["define", xml], ["snapshot-create-as", "extra", "e1"],
        ["snapshot-list", "test"], ["snapshot-list", "test", "--tree"], ["snapshot-list", "test", "--parent"],
        ["snapshot-list", "test", "--current"], ["snapshot-list", "test", "--name"], ["snapshot-list", "test", "--roots"],
        ["snapshot-list", "test", "--leaves"], ["snapshot-list", "extra"],
        ["snapshot-info", "test", "s1"], ["snapshot-info", "test", "--current"], ["snapshot-dumpxml", "test", "s1"],
        ["snapshot-dumpxml", "extra", "e1"], ["snapshot-current", "test"], ["snapshot-current", "test", "--name"],
        ["snapshot-current", "test", "s1"], ["snapshot-parent", "test", "s2"],
        ["snapshot-revert", "test", "s1"], ["snapshot-revert", "test", "s1", "--paused"], ["snapshot-revert", "test", "s2", "--running"],
        ["snapshot-delete", "test", "s2"], ["snapshot-create-as", "test", "s3"], ["snapshot-delete", "test", "--current"],
        ["snapshot-create-as", "test", "s4"], ["snapshot-delete", "test", "s1", "--children"],
        ["undefine", "--snapshots-metadata", "extra"],
    ]:
        virsh(*args)
    snapscript = r'''
import libvirt, sys
libvirt.registerErrorHandler(lambda *a: None, None)
c = libvirt.open(sys.argv[1])
def t(f, *a):
    try: f(*a)
    except libvirt.libvirtError: pass
    except Exception as e: print("capture:", f.__name__, e, file=sys.stderr)
d = c.lookupByName("test")
snaps = []
for x in ["<domainsnapshot><name>py1</name><description>from python</description></domainsnapshot>",
          "<domainsnapshot><name>py2</name></domainsnapshot>"]:
    try:
        snaps.append(d.snapshotCreateXML(x, 0))
    except libvirt.libvirtError as e:
        print("capture: snapshotCreateXML", e, file=sys.stderr)
if len(snaps) == 2:
    s1, s2 = snaps
    for f, a in [(d.listAllSnapshots, (0,)), (d.snapshotNum, (0,)), (d.snapshotListNames, (0,)),
                 (d.snapshotLookupByName, ("py1", 0)), (d.hasCurrentSnapshot, (0,)), (d.snapshotCurrent, (0,)),
                 (s1.getXMLDesc, (0,)), (s2.getParent, (0,)), (s1.isCurrent, (0,)), (s1.hasMetadata, (0,)),
                 (s1.listAllChildren, (0,)), (s1.numChildren, (0,)), (s1.listChildrenNames, (0,)),
                 (d.revertToSnapshot, (s1, 0)), (s2.delete, (0,)), (s1.delete, (0,))]:
        t(f, *a)
'''
    subprocess.run(["/usr/bin/python3", "-c", snapscript, uri], stdout=subprocess.DEVNULL, timeout=120)
    time.sleep(0.5)
    holder.kill()
    proxy.close()
    daemon.terminate()
    daemon.wait()
    for proc, kind, payload in sorted(records):
        print(proc, kind, payload or "-")


if __name__ == "__main__":
    main()
