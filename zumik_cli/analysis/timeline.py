"""The time-ordered blocks of a workload (each block's unit id and tokens), held in memory or spilled to files.

A trace's blocks outnumber its requests thirty to one (6 bytes a block: 1.8 GB for 10M Mooncake requests), and what
reads them (the levels pass that numbers them, the reference LRU that replays them) goes through them in time order.
So past a size the levels pass writes them to two flat files in a temporary folder, a batch at a time, and the
readers take them back a range at a time: plain reads and writes, whose pages are the kernel's page cache, not the
process's memory (a mapping of the files would count in its resident size). Held or spilled, ``read`` gives the same
values; ``units`` and ``sizes`` read them whole, for the consumers that need every block at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import numpy as np
import numpy.typing as npt

Values = npt.NDArray[np.integer]
_CHUNK = 1 << 26  # bytes a system call reads or writes at most: Linux moves at most 2 GiB less a page in one


class Timeline:
    """``n`` blocks in time order: unit ids (int32) and sizes in tokens (int16 while every size fits, else int32)."""

    def __init__(self, units: npt.NDArray[np.int32], sizes: Values) -> None:
        self.n = len(units)
        self._units, self._sizes = units, sizes
        self._folder: str | None = None
        self._files: dict[str, int] = {}
        self._tokens: int | None = None

    @classmethod
    def spilled(cls, n: int) -> Timeline:
        """An empty timeline of ``n`` blocks on files, filled with ``write_units`` and ``write_sizes``."""
        timeline = cls(np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int16))
        timeline.n, timeline._tokens = n, 0
        folder = tempfile.mkdtemp(prefix="zumik-timeline-")
        timeline._folder = folder
        for name in ("units", "sizes"):
            timeline._files[name] = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT, 0o600)
        weakref.finalize(timeline, _remove, folder, list(timeline._files.values()))
        return timeline

    @property
    def is_spilled(self) -> bool:
        return self._folder is not None

    @property
    def units_dtype(self) -> np.dtype[np.int32]:
        return np.dtype(np.int32)

    @property
    def sizes_dtype(self) -> np.dtype[np.integer]:
        return self._sizes.dtype

    @property
    def tokens(self) -> int:
        """Every block's tokens added up."""
        if self._tokens is None:
            self._tokens = int(self._sizes.sum())
        return self._tokens

    def read(self, start: int, stop: int) -> tuple[npt.NDArray[np.int32], Values]:
        """Blocks ``start``..``stop - 1``: views of the held arrays, or fresh arrays read from the files."""
        if not self.is_spilled:
            return self._units[start:stop], self._sizes[start:stop]
        return self.read_units(start, stop), self._read("sizes", start, stop, self._sizes.dtype)

    def read_units(self, start: int, stop: int) -> npt.NDArray[np.int32]:
        if not self.is_spilled:
            return self._units[start:stop]
        units: npt.NDArray[np.int32] = self._read("units", start, stop, np.dtype(np.int32)).view(np.int32)
        return units

    def write_units(self, start: int, units: npt.NDArray[np.int32]) -> None:
        """Blocks ``start``.. get these units (on a spilled timeline; a held one is filled in place)."""
        assert self.is_spilled, "a held timeline is filled in place"
        _write(self._files["units"], units, start * 4)

    def write_sizes(self, start: int, sizes: Values) -> None:
        """Blocks ``start``.. get these sizes, in int16 while every size so far fits (the file is rewritten in int32
        the first time one does not)."""
        assert self.is_spilled, "a held timeline is filled in place"
        sizes = np.asarray(sizes)
        if sizes.size and int(sizes.max()) > np.iinfo(self._sizes.dtype).max:
            self._widen(start)
        _write(self._files["sizes"], np.ascontiguousarray(sizes, dtype=self._sizes.dtype), start * self._sizes.itemsize)
        self._tokens = (self._tokens or 0) + int(sizes.sum())

    @property
    def units(self) -> npt.NDArray[np.int32]:
        """Every block's unit id, whole."""
        return self.read_units(0, self.n)

    @property
    def sizes(self) -> Values:
        """Every block's tokens, whole."""
        return self.read(0, self.n)[1] if self.is_spilled else self._sizes

    def _read(self, name: str, start: int, stop: int, dtype: np.dtype[np.integer]) -> Values:
        values = np.empty(max(0, stop - start), dtype=dtype)
        view = memoryview(values.data).cast("B")
        offset, done = start * dtype.itemsize, 0
        while done < len(view):
            got = os.preadv(self._files[name], [view[done : done + _CHUNK]], offset + done)
            if got <= 0:
                raise OSError(f"the spilled {name} of the timeline end before block {stop}")
            done += got
        return values

    def _widen(self, written: int) -> None:
        # int16 sizes of the first ``written`` blocks rewritten as int32, a range at a time, into the same file
        # from its end backwards, so that no value is overwritten before it is read
        step = _CHUNK // 4
        stop = written
        while stop > 0:
            start = max(0, stop - step)
            values = self._read("sizes", start, stop, np.dtype(np.int16)).astype(np.int32)
            _write(self._files["sizes"], values, start * 4)
            stop = start
        self._sizes = np.empty(0, dtype=np.int32)


def _write(descriptor: int, values: Values, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(values).data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(descriptor, view[done : done + _CHUNK], offset + done)


def _remove(folder: str, descriptors: list[int]) -> None:
    for descriptor in descriptors:
        os.close(descriptor)
    shutil.rmtree(folder, ignore_errors=True)
