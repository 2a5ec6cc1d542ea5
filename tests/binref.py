"""A small, independent reader and writer of CPython 3.15's `.bin` capture format, written
from the format's description and sharing no code with `host/`. The tests use CPython 3.15's own
reader and writer (bin_oracle.py) when that interpreter is unpacked, and this one otherwise; the
writer also makes FULL-only captures, which CPython's writer never does.

Samples are (tid, interpreter_id, timestamp_us, status, stack) with the stack innermost first and
each frame (filename, funcname, lineno, end_lineno, col, end_col, opcode-or-None).
"""
import struct

MAGIC = 0x54414348
HEADER = struct.Struct("<IIBBBBQQQIQQII")  # magic, version, py major/minor/micro, pad, start, interval, samples, threads, strings@, frames@, compression, config
FOOTER = struct.Struct("<IIQ16s")  # strings, frames, file size, reserved
STATS = struct.Struct("<ddddII8sII")  # duration, rate, error rate, missed, present bits, pad, tag, version, size
REPEAT, FULL, SUFFIX, POP_PUSH = range(4)


def uvarint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def svarint(value):
    return uvarint(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)


class _Cursor:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def uvarint(self):
        result = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def svarint(self):
        raw = self.uvarint()
        return (raw >> 1) ^ -(raw & 1)

    def byte(self):
        self.pos += 1
        return self.data[self.pos - 1]

    def unpack(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values


def decode(path):
    """(info, samples): the header fields and every sample in file order."""
    data = open(path, "rb").read()
    (magic, version, major, minor, micro, _pad, start, interval, count, threads,
     strings_at, frames_at, compression, config) = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError(f"not a capture (magic {magic:#x})")
    n_strings, n_frames, size, _ = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    if size != len(data):
        raise ValueError("footer size does not match the file")
    cur = _Cursor(data, strings_at)
    strings = []
    for _ in range(n_strings):
        n = cur.uvarint()
        strings.append(data[cur.pos:cur.pos + n].decode("utf-8", "replace"))
        cur.pos += n
    cur.pos = frames_at
    frames = []
    for _ in range(n_frames):
        file, func, line = cur.uvarint(), cur.uvarint(), cur.svarint()
        end_delta, col, end_col_delta, opcode = cur.svarint(), cur.svarint(), cur.svarint(), cur.byte()
        frames.append((strings[file], strings[func], line, -1 if line == -1 else line + end_delta,
                       col, -1 if col == -1 else col + end_col_delta, None if opcode == 255 else opcode))
    body = data[HEADER.size:strings_at]
    if compression == 1:
        import zstandard

        body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    samples = []
    state = {}  # (tid, iid) -> [previous timestamp, current stack of frame indices]
    cur = _Cursor(body)
    while cur.pos < len(body):
        tid, iid, encoding = cur.unpack("<QIB")
        st = state.setdefault((tid, iid), [start, []])
        if encoding == REPEAT:
            for _ in range(cur.uvarint()):
                st[0] += cur.uvarint()
                samples.append((tid, iid, st[0], cur.byte(), tuple(frames[i] for i in st[1])))
            continue
        st[0] += cur.uvarint()
        status = cur.byte()
        if encoding == FULL:
            st[1] = [cur.uvarint() for _ in range(cur.uvarint())]
        elif encoding == SUFFIX:
            shared = cur.uvarint()
            new = [cur.uvarint() for _ in range(cur.uvarint())]
            st[1] = new + (st[1][len(st[1]) - shared:] if shared else [])
        elif encoding == POP_PUSH:
            pop = cur.uvarint()
            st[1] = [cur.uvarint() for _ in range(cur.uvarint())] + st[1][pop:]
        else:
            raise ValueError(f"unknown record encoding {encoding}")
        samples.append((tid, iid, st[0], status, tuple(frames[i] for i in st[1])))
    info = {"version": version, "python": (major, minor, micro), "start_time_us": start,
            "sample_interval_us": interval, "sample_count": count, "thread_count": threads,
            "compression_type": compression, "config": config}
    return info, samples


def write(path, samples, interval_us=1000, start_us=0, compress=False, stats=None):
    """A capture of FULL records only. stats: (duration_s, rate, error_rate, missed) or None."""
    strings, string_ids, frames, frame_ids = [], {}, [], {}

    def string(s):
        if s not in string_ids:
            string_ids[s] = len(strings)
            strings.append(s)
        return string_ids[s]

    def frame(f):
        if f not in frame_ids:
            frame_ids[f] = len(frames)
            frames.append(f)
            string(f[0]), string(f[1])
        return frame_ids[f]

    body, last_ts, threads = bytearray(), {}, set()
    for tid, iid, ts, status, stack in samples:
        ids = [frame(tuple(f)) for f in stack][:256]
        threads.add((tid, iid))
        body += struct.pack("<QIB", tid, iid, FULL) + uvarint(ts - last_ts.get((tid, iid), start_us))
        body += bytes([status]) + uvarint(len(ids)) + b"".join(map(uvarint, ids))
        last_ts[(tid, iid)] = ts
    if compress:
        import zstandard

        body = zstandard.ZstdCompressor(level=5).compress(bytes(body))
    out = bytearray(HEADER.size) + body
    strings_at = len(out)
    for s in strings:
        encoded = s.encode("utf-8")
        out += uvarint(len(encoded)) + encoded
    frames_at = len(out)
    for file, func, line, end_line, col, end_col, opcode in frames:
        out += uvarint(string_ids[file]) + uvarint(string_ids[func]) + svarint(line)
        out += svarint(0 if -1 in (line, end_line) else end_line - line) + svarint(col)
        out += svarint(0 if -1 in (col, end_col) else end_col - col) + bytes([255 if opcode is None else opcode])
    if stats:
        duration, rate, error_rate, missed = stats
        present = (error_rate is not None) | (missed is not None) << 1
        out += STATS.pack(duration, rate, error_rate or 0.0, missed or 0.0, present, 0, b"TACHSTAT", 1, STATS.size)
    out += FOOTER.pack(len(strings), len(frames), len(out) + FOOTER.size, bytes(16))
    config = 1 | 1 << 3 | 0b101 << 4  # wall mode, mode recorded, all_threads + gc captured
    HEADER.pack_into(out, 0, MAGIC, 1, 3, 15, 2, 0, start_us, interval_us, len(samples), len(threads),
                     strings_at, frames_at, 1 if compress else 0, config)
    with open(path, "wb") as f:
        f.write(out)
