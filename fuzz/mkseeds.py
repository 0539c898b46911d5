#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the committed seed corpus fuzz/corpus/<target>/ : small valid (and nearly valid) inputs
# for each target, so a few seconds of fuzzing start past the first checks. Rerun after a format
# change: python3 fuzz/mkseeds.py
import os, struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def hdr(length, typ, ident=0, flags=0):
    return struct.pack("<IHHQ", length, typ, flags, ident)

def hello(role, session=0, features=1, batch=64, version=2, reserved=0):
    b = b"PAGEINET" + struct.pack("<IIIIIIQ", version, 4096, role, features, batch, reserved, session)
    return hdr(len(b), 1) + b

def req(ident, gpa, n):
    return hdr(16, 3, ident) + struct.pack("<QII", gpa, n, 0)

def error(code, text):
    b = struct.pack("<I", code) + text
    return hdr(len(b), 6) + b

# an LZ4 block that decompresses to 4096 bytes of 0x07 (one literal, a long match, 5 literals)
LZ4_PAGE = bytes([0x1F, 0x07, 0x01, 0x00]) + b"\xff" * 15 + bytes([246]) + bytes([0x50]) + b"\x07" * 5

def pages(ident, gpa, descs, payload):
    b = struct.pack("<QII", gpa, len(descs), 0) + b"".join(struct.pack("<I", d) for d in descs) + payload
    return hdr(len(b), 4, ident) + b

# --- server connection: what a client sends. The target's server has 8 pages at 0 and 4 at
# 1 MiB, and two sessions: 0x1234 (with a secret: joins are challenged) and 0x5678 (without).
LZ4, HB, RESUME, PROOF = 1, 2, 4, 8
def have_frame(enc, last, first, count, payload):
    b = struct.pack("<IIQQ", enc, last, first, count) + payload
    return hdr(len(b), 9) + b
def runs(*pairs):
    return b"".join(struct.pack("<QQ", a, n) for a, n in pairs)
S = "fuzz_server_conn"
put(S, "urgent_req", hello(1) + req(1, 0, 1) + req(2, 4096, 7) + req(3, 1 << 20, 4))
put(S, "bulk", hello(2, batch=16))
put(S, "bulk_nolz4", hello(2, features=0, batch=512) + req(9, 8192, 2))
put(S, "error", hello(1) + error(5, b"bye"))
put(S, "join", hello(2, session=0x5678) + req(4, 0, 8) + req(5, 1 << 20, 1))
put(S, "join_proof", hello(1, session=0x1234, features=PROOF) + hdr(32, 8) + b"\x11" * 32)
put(S, "join_noproof", hello(2, session=0x1234, batch=8))
put(S, "join_unknown", hello(1, session=0x9999, features=PROOF))
put(S, "open_proof", hello(1, features=LZ4 | HB | PROOF) + req(6, 12288, 2))
put(S, "req_outside", hello(1) + req(1, 6 << 12, 4))
put(S, "heartbeat", hello(1, features=HB) + hdr(0, 10) + req(7, 0, 2) + hdr(0, 10))
put(S, "resume_ranges", hello(2, features=LZ4 | RESUME, batch=8) +
    have_frame(1, 1, 0, 12, runs((0, 3), (8, 2))) + req(8, 1 << 20, 2))
put(S, "resume_bitmap", hello(1, features=RESUME | HB) + have_frame(2, 0, 0, 8, b"\x0f") +
    have_frame(1, 1, 8, 4, runs((9, 1))) + hdr(0, 10))
put(S, "have_late", hello(1, features=RESUME) + have_frame(1, 1, 0, 12, b"") +
    have_frame(1, 1, 0, 12, b""))
put(S, "v1", hello(1, version=1, features=HB))  # a version-1 client: the clear refusal
put(S, "tls", bytes([0x16, 3, 1, 0, 0xc8, 1, 0, 0, 0xc4, 3, 3]) + bytes(range(32)))

# --- client frames: flags, waiting request (gpa, npages-1), then the server's bytes
RID = (1 << 16) | 1
def client(flags, gpa, n, stream):
    return bytes([flags]) + struct.pack("<QI", gpa, n - 1) + stream
put("fuzz_client_frames", "reply", client(2 | 4, 0, 2, pages(RID, 0, [0, 1], b"\xab" * 4096)))
put("fuzz_client_frames", "reply_abandoned", client(2 | 4 | 16, 0, 1, pages(RID, 0, [0], b"\x01" * 4096)))
put("fuzz_client_frames", "bulk_lz4", client(1 | 8, 0, 1,
    pages(0, 4 << 20, [0, 1, 2 | (len(LZ4_PAGE) << 8)], b"\x02" * 4096 + LZ4_PAGE) + hdr(0, 5)))
put("fuzz_client_frames", "bulk_raw", client(8, 0, 1, pages(0, 0, [0] * 4, b"\x05" * 4 * 4096) + hdr(0, 5)))
put("fuzz_client_frames", "error", client(2, 0, 1, error(22, b"bad request")))
put("fuzz_client_frames", "single", client(1 | 2 | 4 | 8, 4 << 20, 3,
    pages(0, 4 << 20, [1] * 8, b"") + pages(RID, 4 << 20, [1, 0, 1], b"\x09" * 4096) + hdr(0, 5)))

# --- HAVE bodies: mode byte (odd: decode), total pages, body
def have(enc, last, first, count, payload):
    return struct.pack("<IIQQ", enc, last, first, count) + payload
put("fuzz_have", "ranges", b"\x01" + struct.pack("<I", 1000) + have(1, 1, 0, 1000, struct.pack("<QQQQ", 0, 10, 20, 30)))
put("fuzz_have", "bitmap", b"\x01" + struct.pack("<I", 1000) + have(2, 0, 100, 12, b"\xff\x0a"))
put("fuzz_have", "empty", b"\x01" + struct.pack("<I", 64) + have(1, 1, 0, 64, b""))
put("fuzz_have", "roundtrip", b"\x00" + bytes(range(256)))
put("fuzz_have", "roundtrip_sparse", b"\x00" + b"\x00" * 100 + b"\x80" + b"\x00" * 50 + b"\xff" * 30)

# --- snapshot files: flag byte (1: fix the header digest), then the file
def snapshot(regions, data_pages):
    h = b"PAGEINSN" + struct.pack("<IIQQ", 1, len(regions), 4096 + data_pages * 4096, 0)
    for (gpa, size, off) in regions:
        h += struct.pack("<QQQIIQ", gpa, size, off, 0, 0, 0)
    h = h.ljust(4096, b"\0")
    return h + b"\x11" * (data_pages * 4096)
put("fuzz_snapshot", "one_region", b"\x01" + snapshot([(0, 4096, 4096)], 1))
put("fuzz_snapshot", "two_regions", b"\x01" + snapshot([(0, 4096, 4096), (1 << 20, 8192, 8192)], 3))
put("fuzz_snapshot", "truncated", b"\x01" + snapshot([(0, 8192, 4096)], 1))
put("fuzz_snapshot", "bad_digest", b"\x00" + snapshot([(0, 4096, 4096)], 1))

# --- Firecracker region JSON (fuzz_fcmap: the message itself)
def fc_region(base, size, offset, **extra):
    fields = ['"base_host_virt_addr":%d' % base, '"size":%d' % size, '"offset":%d' % offset]
    fields += ['"%s":%s' % (k, v) for k, v in extra.items()]
    return "{" + ",".join(fields) + "}"
def fc(*regions, sep=","):
    return ("[" + sep.join(regions) + "]").encode()
FC = {
    "one": fc(fc_region(0x7f0000000000, 4096, 0, page_size=4096, page_size_kib=4096)),
    "two_huge": fc(fc_region(0x7f0000000000, 4 << 20, 0, page_size=2 << 20),
                   fc_region(0x7f0000800000, 2 << 20, 4 << 20, page_size_kib=2 << 20)),
    "old": fc(fc_region(0x10000, 0x30000, 0x1000), fc_region(0x80000, 0x1000, 0x40000)),
    "unknown": fc(fc_region(4096, 4096, 0, x='{"a":[1,-2.5e+3,true,false,null,"\\u00e9\\n\\"",{}],"b":[]}',
                            page_size=4096)),
    "blanks": b" \n[ {\t\"offset\" : 0 ,\r\"size\":8192, \"base_host_virt_addr\": 8192 } ] \n",
    "overlap": fc(fc_region(4096, 8192, 0), fc_region(8192, 4096, 65536)),
    "kib": fc(fc_region(4096, 4096, 0, page_size_kib=4)),
    "disagree": fc(fc_region(4096, 4096, 0, page_size=4096, page_size_kib=2097152)),
    "trailing": fc(fc_region(4096, 4096, 0)) + b"x",
    "deep": fc(fc_region(4096, 4096, 0, y="[" * 15 + "]" * 15)),
}
for name, text in FC.items():
    put("fuzz_fcmap", name, text)

# --- the hand-off socket (fuzz_fcsock): fds byte, messages byte, then what the VMM sends
put("fuzz_fcsock", "uffd_one", b"\x01\x00" + FC["one"])
put("fuzz_fcsock", "uffd_parts", b"\x01\x07" + FC["two_huge"])
put("fuzz_fcsock", "memfds", bytes([3 | 1 << 2, 0]) + FC["old"])
put("fuzz_fcsock", "memfds_again", bytes([3 | 3 << 2, 0x80 | 3]) + FC["unknown"])
put("fuzz_fcsock", "fds_65", bytes([3 | 5 << 2, 0x80 | 1]) + FC["one"])
put("fuzz_fcsock", "fds_70", bytes([3 | 7 << 2, 0]) + FC["one"])
put("fuzz_fcsock", "no_fd", b"\x00\x00" + FC["one"])
put("fuzz_fcsock", "eventfd", bytes([2 | 1 << 2, 1]) + FC["one"])
put("fuzz_fcsock", "truncated", b"\x01\x00" + FC["one"][:-3])
put("fuzz_fcsock", "not_array", b"\x01\x00" + b'{"size":1}')
put("fuzz_fcsock", "bad_json", b"\x01\x02" + FC["overlap"])

# --- the answer to HELLO (fuzz_client_welcome): flags byte, then what the server sends.
# flags: 1 join 0x1234, 2 the session has a secret, 4 pause, 8 reopen, 16 LZ4, 32 bulk.
# The client's known table (joins, reopens): 1 MiB at 0, 2 MiB at 4 MiB, digests 0x1111, 0x2222.
TABLE = [(0, 1 << 20, 0x1111), (4 << 20, 2 << 20, 0x2222)]
def welcome(session, features, regions, secret=b"", version=2):
    b = b"PAGEINET" + struct.pack("<IIQII", version, 4096, session, features, len(regions))
    b += b"".join(struct.pack("<QQQ", *r) for r in regions) + secret
    return hdr(len(b), 2) + b
W = "fuzz_client_welcome"
put(W, "open", b"\x00" + welcome(0x99, 0, TABLE))
put(W, "open_secret", bytes([16]) + welcome(0x99, LZ4 | PROOF, TABLE, b"\x42" * 32))
put(W, "open_pause", bytes([4 | 16 | 32]) + welcome(0x99, LZ4 | HB | RESUME, TABLE))
put(W, "join", bytes([1 | 32]) + welcome(0x1234, 0, TABLE))
put(W, "join_challenge", bytes([1 | 2 | 32]) + hdr(32, 7) + bytes(range(32)) + welcome(0x1234, PROOF, TABLE))
put(W, "reopen_same", bytes([4 | 8]) + welcome(0x77, HB | RESUME, TABLE))
put(W, "reopen_other", bytes([4 | 8]) + welcome(0x77, 0, [(0, 1 << 20, 0x1111), (4 << 20, 2 << 20, 0x3333)]))
put(W, "refused", b"\x00" + error(16, b"this server already serves 16 sessions"))
put(W, "overlap", b"\x00" + welcome(0x99, 0, [(0, 8192, 1), (4096, 4096, 2)]))
put(W, "version1", b"\x00" + welcome(0x99, 0, TABLE, version=1))  # a version-1 server
put(W, "unasked", b"\x00" + welcome(0x99, HB, TABLE))
