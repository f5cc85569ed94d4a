"""A compact ring of metric rows: the open block raw, closed blocks encoded in one bytes object.

Rows are numbered (a second, or a minute) and grouped in blocks of `rows` consecutive numbers.
The open block is a raw `array('f')`, written by slice assignment as before. When a later
block opens, the closed one is encoded and appended to `seg`; blocks wholly older than the
window are cut from the front of `seg`. `seg` is rebuilt at its exact size each time (a copy
of a kilobyte or two every block): a bytearray's spare room would cost a fifth more memory.

A closed block keeps each column at the precision the API shows (`Spec.scales`): a scale of
100 keeps hundredths rounded half-even (as `round(x, 2)` does on the float32 value), 0 keeps
the integer part (as `int(x)` does). Each column is stored as one of: the same constant as the
previous block's last row (one bit), a constant, or offsets from the block's minimum in 1, 2,
4 or 8 bytes each. A block whose figures do not fit (infinity, beyond 2**62) is kept raw.

Block layout: u16 length, u16 blocks since the previous block, u8 flags (1: rows missing, a
bitmap follows the mask; 2: raw float32), u8 mask of columns equal to the previous block's last
row, then per other column a code byte (high nibble: offset width, low nibble: bytes of the
minimum, zigzag) and its bytes. Blocks go in groups of `GROUP` (by block number); "same as the
previous block" never crosses a group, so the front of `seg` is cut a whole group at a time
with nothing to re-encode.
"""

import math
from array import array
from dataclasses import dataclass, field
from itertools import compress

NAN = math.nan
WIDTHS = ("", "B", "H", "I", "Q")  # offset width codes: constant, 1, 2, 4, 8 bytes
LIMIT = 1 << 62  # larger figures make the block raw
RAW, GAPS = 2, 1
GROUP = 3  # blocks cut together; the first of a group refers to no earlier block

assert array("I").itemsize == 4 and array("Q").itemsize == 8


@dataclass(frozen=True, slots=True)
class Spec:
    """The shape shared by every ring of one kind: columns, scales, block and window size."""

    width: int
    scales: tuple[int, ...]
    rows: int  # rows per block
    window: int  # rows kept back from the newest
    nan_block: array = field(init=False, repr=False, compare=False)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nan_block", array("f", [NAN]) * (self.rows * self.width))

    @property
    def ceiling(self) -> int:
        """The most one ring can hold: every block raw, the window plus the open block."""
        blocks = -(-self.window // self.rows) + 2
        raw = self.rows * self.width * 4
        blocks += GROUP
        return (self.rows + 1) * self.width * 4 + blocks * (raw + 6) + 1 + 16 * self.width


def _unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -((z + 1) >> 1)


def encode_block(
    spec: Spec,
    raw: array,  # type: ignore[type-arg]
    kdelta: int,
    chain: bool,
    acc: array | None = None,  # type: ignore[type-arg]
) -> bytes | None:
    """Encode the block in `raw[:rows*width]`; its last row `raw[rows*width:]` is the previous
    block's last present row (NaN: none), updated in place; `chain`: columns may refer to it.
    None when no row is present.
    With `acc`, adds each column's present values to `acc[j]` (in row order, as `sum` does)
    and their number to `acc[width]`."""
    w, n_rows = spec.width, spec.rows
    end = n_rows * w
    col0 = raw[0:end:w]
    total = sum(col0)
    if total == total:  # no NaN: every row present
        present: list[bool] | None = None
        n = n_rows
        last = n_rows - 1
    else:
        present = [v == v for v in col0]
        n = sum(present)
        if not n:
            return None
        last = n_rows - 1 - present[::-1].index(True)
    carry = raw[end : end + w] if chain else array("f", [NAN]) * w
    scales = spec.scales
    out = bytearray(6)
    mask = 0
    sums = [0.0] * w
    try:
        for j in range(w):
            col = raw[j:end:w] if present is None else list(compress(raw[j:end:w], present))
            if acc is not None:
                sums[j] = sum(col, acc[j])
            first = col[0]
            c = carry[j]
            if first == c and col.count(first) == n:
                mask |= 1 << j
                continue
            scale = scales[j]
            if col.count(first) == n:
                lo = hi = round(first * scale) if scale else int(first)
                c = carry[j]
                if c == c and (round(c * scale) if scale else int(c)) == lo:
                    mask |= 1 << j
                    continue
                qs = None
            else:
                qs = (
                    list(map(round, map(float(scale).__mul__, col)))
                    if scale
                    else list(map(int, col))
                )
                lo, hi = min(qs), max(qs)
            if lo <= -LIMIT or hi >= LIMIT:
                raise OverflowError
            z = lo << 1 if lo >= 0 else ((-lo) << 1) - 1
            nb = (z.bit_length() + 7) >> 3
            span = hi - lo
            if not span:
                out.append(nb)
                out += z.to_bytes(nb, "little")
                continue
            code = 1 if span < 256 else 2 if span < 65536 else 3 if span < 1 << 32 else 4
            out.append(code << 4 | nb)
            out += z.to_bytes(nb, "little")
            out += array(WIDTHS[code], map(lo.__rsub__, qs)).tobytes()  # type: ignore[arg-type]
        flags = 0
    except (OverflowError, ValueError):
        if acc is not None:
            for j in range(w):
                col = raw[j:end:w] if present is None else list(compress(raw[j:end:w], present))
                sums[j] = sum(col, acc[j])
        out = bytearray(6)
        out += raw[0:end].tobytes()
        flags, mask = RAW, 0
        raw[end : end + w] = array("f", [NAN]) * w  # the next block cannot refer to this one
    else:
        raw[end : end + w] = raw[last * w : last * w + w]
    if acc is not None:
        acc[0:w] = array("d", sums)
        acc[w] += n
    if present is not None and not flags:
        bits = sum(1 << i for i, p in enumerate(present) if p)
        out[6:6] = bits.to_bytes((n_rows + 7) >> 3, "little")
        flags |= GAPS
    out[0:6] = (
        (len(out)).to_bytes(2, "little") + kdelta.to_bytes(2, "little") + bytes((flags, mask))
    )
    return bytes(out)


def decode_blocks(
    spec: Spec, seg: bytes, base_k: int
) -> list[tuple[int, list[int] | None, list[list[float]]]]:
    """Every block in `seg`: (block number, last quantized row or None, present rows as
    (row number, values)). Values come back as floats the API rounds to what was kept."""
    w, n_rows = spec.width, spec.rows
    prev: list[int] | None = None
    pos = 0
    k = base_k
    out: list[tuple[int, list[int] | None, list[list[float]]]] = []
    size = len(seg)
    while pos < size:
        length = int.from_bytes(seg[pos : pos + 2], "little")
        k += int.from_bytes(seg[pos + 2 : pos + 4], "little")
        flags, mask = seg[pos + 4], seg[pos + 5]
        p = pos + 6
        pos += length
        rows: list[list[float]] = []
        if flags & RAW:
            block = array("f")
            block.frombytes(seg[p:pos])
            for i in range(n_rows):
                row = list(block[i * w : i * w + w])
                if row[0] == row[0]:
                    rows.append([float(k * n_rows + i), *row])
            out.append((k, None, rows))
            prev = None
            continue
        if flags & GAPS:
            nb = (n_rows + 7) >> 3
            bits = int.from_bytes(seg[p : p + nb], "little")
            p += nb
            index = [i for i in range(n_rows) if bits >> i & 1]
        else:
            index = list(range(n_rows))
        n = len(index)
        qcols: list[list[int]] = []
        for j in range(w):
            if mask >> j & 1:
                assert prev is not None
                qcols.append([int(prev[j])] * n)
                continue
            code = seg[p]
            nb = code & 15
            lo = _unzigzag(int.from_bytes(seg[p + 1 : p + 1 + nb], "little"))
            p += 1 + nb
            wc = code >> 4
            if not wc:
                qcols.append([lo] * n)
                continue
            offsets = array(WIDTHS[wc])
            size_b = offsets.itemsize * n
            offsets.frombytes(seg[p : p + size_b])
            p += size_b
            qcols.append(list(map(lo.__add__, offsets)))
        prev = [col[-1] for col in qcols]
        cols = [
            [q / s for q in col] if (s := spec.scales[j]) else [float(q) for q in col]
            for j, col in enumerate(qcols)
        ]
        base = k * n_rows
        rows = [
            [float(base + i), *vals] for i, vals in zip(index, zip(*cols, strict=True), strict=True)
        ]
        out.append((k, prev, rows))
    return out


_SHARED: dict[int, int] = {}
SHARED_MAX = 4096  # numbers kept: rings close their blocks at the same few numbers at a time


def shared(n: int) -> int:
    """One int object for a number many rings hold (block boundaries and numbers, minutes):
    an int past 256 is 32 bytes, and a fleet's rings would each hold their own copies."""
    got = _SHARED.get(n)
    if got is None:
        if len(_SHARED) >= SHARED_MAX:
            _SHARED.clear()
        got = _SHARED[n] = n
    return got


class Ring:
    """Rows `last - window + 1 .. last`: the open block raw, older blocks encoded."""

    __slots__ = ("base_k", "end", "last", "last_k", "raw", "seg", "spec", "start")

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.raw = array("f", [NAN]) * ((spec.rows + 1) * spec.width)
        self.seg = b""
        self.last = -(1 << 62)  # newest row written
        self.start = self.end = self.last  # the open block's rows: start <= row < end
        self.last_k = self.base_k = 0  # newest block in seg; the one before its first

    def nbytes(self) -> int:
        return len(self.raw) * 4 + len(self.seg)

    def put_row(self, row: int, values: "array") -> None:  # type: ignore[type-arg]
        """Write a row at or after the open block's start (a new block first if past it)."""
        if row >= self.end:
            self.roll(row)
        base = (row - self.start) * self.spec.width
        self.raw[base : base + self.spec.width] = values
        if row > self.last:
            self.last = shared(row)

    def _append(self, raw: array, k: int, acc: array | None) -> None:  # type: ignore[type-arg]
        """Encode block `k` from `raw` after the newest one in `seg`."""
        if not self.seg or k - self.last_k > 0xFFFF:
            self._clear()
            self.base_k = self.last_k = shared(k - 1)
        chain = bool(self.seg) and self.last_k // GROUP == k // GROUP
        blob = encode_block(self.spec, raw, k - self.last_k, chain, acc)
        if blob is not None:
            self.seg = self.seg + blob
            self.last_k = shared(k)

    def roll(self, row: int, acc: array | None = None) -> None:  # type: ignore[type-arg]
        """Close the open block and open the one holding `row`; cut what left the window.
        `acc`: the closed block's sums go there (see `encode_block`)."""
        spec = self.spec
        n_rows = spec.rows
        if self.end > self.start:
            self._append(self.raw, self.start // n_rows, acc)
        k = row // n_rows
        self.start, self.end = shared(k * n_rows), shared(k * n_rows + n_rows)
        self.raw[0 : n_rows * spec.width] = spec.nan_block
        self._evict(row - spec.window + 1)

    def _clear(self) -> None:
        self.seg = b""
        end = self.spec.rows * self.spec.width
        self.raw[end:] = array("f", [NAN]) * self.spec.width

    def _evict(self, keep_from: int) -> None:
        """Cut whole groups of blocks older than row `keep_from` from the front of `seg`."""
        seg = self.seg
        if not seg:
            return
        rows_per_group = GROUP * self.spec.rows
        k = self.base_k + int.from_bytes(seg[2:4], "little")
        if (k // GROUP + 1) * rows_per_group > keep_from:
            return
        cut, size = 0, len(seg)
        while cut < size:
            k = self.base_k + int.from_bytes(seg[cut + 2 : cut + 4], "little")
            if (k // GROUP + 1) * rows_per_group > keep_from:
                break
            self.base_k = shared(k)
            cut += int.from_bytes(seg[cut : cut + 2], "little")
        if cut >= size:
            self._clear()
        else:
            self.seg = seg[cut:]

    def rows(self, first: int, final: int) -> list[list[float]]:
        """Present rows numbered `first..final` (each `[row, *values]`), oldest first."""
        out: list[list[float]] = []
        n_rows, w = self.spec.rows, self.spec.width
        if self.seg and (self.last_k + 1) * n_rows > first:
            for k, _, rows in decode_blocks(self.spec, self.seg, self.base_k):
                if (k + 1) * n_rows > first and k * n_rows <= final:
                    out.extend(r for r in rows if first <= r[0] <= final)
        raw = self.raw
        for row in range(max(first, self.start), min(final, self.end - 1) + 1):
            base = (row - self.start) * w
            values = raw[base : base + w]
            if values[0] == values[0]:
                out.append([float(row), *values])
        return out

    def rewrite(self, row: int, values: "array") -> list[float] | None:  # type: ignore[type-arg]
        """Replace or insert a row in an encoded block (a late sample: rare, so re-encodes
        every block). Returns the values it replaced, if any."""
        spec = self.spec
        n_rows, w = spec.rows, spec.width
        blocks: dict[int, dict[int, list[float]]] = {}
        for k, _, found in decode_blocks(spec, self.seg, self.base_k):
            blocks[k] = {int(r[0]): r[1:] for r in found}
        k = row // n_rows
        old = blocks.setdefault(k, {}).get(row)
        blocks[k][row] = list(values)
        self._clear()
        scratch = array("f", [NAN]) * ((n_rows + 1) * w)
        for bk, block in sorted(blocks.items()):
            scratch[0 : n_rows * w] = spec.nan_block
            for r, vals in block.items():
                base = (r - bk * n_rows) * w
                scratch[base : base + w] = array("f", vals)
            self._append(scratch, bk, None)
        self.raw[n_rows * w :] = scratch[n_rows * w :]
        return old
