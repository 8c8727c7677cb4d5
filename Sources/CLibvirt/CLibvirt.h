// The libvirt client library (Debian's libvirt-dev), for the apus CLI and
// the tests that drive apusd the way libvirt's bindings do.
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
