#include <stddef.h>
#include <string.h>
#include <zlib.h>

/// Inflates one raw-deflate stream (no zlib header, window 2^12, as qcow2's
/// compressed clusters are written) into `out`. Returns the number of bytes
/// produced, or -1 if the input is not a valid stream. Stops when `out` is
/// full: qcow2 stores a whole cluster and may pad the input past its end.
static inline long apus_inflate_raw(const unsigned char *in, size_t in_len, unsigned char *out, size_t out_len) {
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -12) != Z_OK) return -1;
    s.next_in = (unsigned char *)in;
    s.avail_in = (uInt)in_len;
    s.next_out = out;
    s.avail_out = (uInt)out_len;
    int r = inflate(&s, Z_FINISH);
    long produced = (long)(out_len - s.avail_out);
    inflateEnd(&s);
    if (r == Z_STREAM_END || ((r == Z_OK || r == Z_BUF_ERROR) && s.avail_out == 0)) return produced;
    return -1;
}
