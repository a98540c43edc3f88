"""Minimal pure-Python reader for R's serialization format (XDR, versions 2/3).

Used to read the six Jane Austen novels out of the Debian package
`r-cran-janeaustenr` (an R lazy-load database: data/Rdata.rdx + data/Rdata.rdb)
without needing R installed. Supports exactly what that package needs:
character vectors, lists, pairlists, integer/logical/double vectors, symbols,
references and attributes (names).
"""
import bz2
import gzip
import lzma
import struct
import zlib

_SPECIAL_NIL_LIKE = {254, 242, 241, 253, 247, 251, 252}  # NILVALUE, envs, MISSINGARG, UNBOUNDVALUE


class RReader:
    def __init__(self, data: bytes):
        self.b = data
        self.p = 0
        self.refs = []

    def _int(self) -> int:
        v = struct.unpack_from(">i", self.b, self.p)[0]
        self.p += 4
        return v

    def _raw(self, n: int) -> bytes:
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def header(self):
        magic = self._raw(2)
        if magic != b"X\n":
            raise ValueError(f"only the XDR serialization format is supported, got {magic!r}")
        version = self._int()
        self._int()  # writer R version
        self._int()  # minimal reader R version
        if version == 3:
            n = self._int()
            self._raw(n)  # native encoding

    def item(self):
        flags = self._int()
        t = flags & 0xFF
        has_attr = flags & (1 << 9)
        has_tag = flags & (1 << 10)
        if t in _SPECIAL_NIL_LIKE:
            return None
        if t == 255:  # REFSXP
            idx = flags >> 8
            if idx == 0:
                idx = self._int()
            return self.refs[idx - 1]
        if t == 1:  # SYMSXP
            sym = ("sym", self.item())
            self.refs.append(sym)
            return sym
        if t == 9:  # CHARSXP
            n = self._int()
            return None if n == -1 else self._raw(n).decode("utf-8")
        if t in (2, 3, 5, 6, 17):  # LISTSXP, CLOSXP, PROMSXP, LANGSXP, DOTSXP (pairlist layout)
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            out = [(tag[1] if tag else None, car)]
            if isinstance(cdr, list):
                out += cdr
            return out
        if t in (10, 13):  # LGLSXP, INTSXP
            n = self._int()
            v = list(struct.unpack_from(">%di" % n, self.b, self.p))
            self.p += 4 * n
        elif t == 14:  # REALSXP
            n = self._int()
            v = list(struct.unpack_from(">%dd" % n, self.b, self.p))
            self.p += 8 * n
        elif t in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            n = self._int()
            v = [self.item() for _ in range(n)]
        else:
            raise ValueError(f"unsupported R SEXP type {t}")
        if has_attr:
            attrs = dict(self.item())
            if t == 19 and "names" in attrs:
                return dict(zip(attrs["names"], v))
        return v


def read_rds(path: str):
    """Read a gzip-compressed .rds file (as written by saveRDS)."""
    r = RReader(gzip.open(path).read())
    r.header()
    return r.item()


def read_lazyload_db(rdx_path: str, rdb_path: str) -> dict:
    """Read every object of an R lazy-load database (name.rdx index + name.rdb blobs)."""
    index = read_rds(rdx_path)
    blob_all = open(rdb_path, "rb").read()
    out = {}
    for name, (off, length) in index["variables"].items():
        blob = blob_all[off:off + length]
        kind = blob[4:5]  # 4-byte big-endian uncompressed length, then (for types 2/3/0) a type byte
        if kind == b"2":
            raw = bz2.decompress(blob[5:])
        elif kind == b"X":
            raw = lzma.decompress(blob[5:])
        elif kind == b"0":
            raw = blob[5:]
        else:
            raw = zlib.decompress(blob[4:])
        r = RReader(raw)
        r.header()
        out[name] = r.item()
    return out
