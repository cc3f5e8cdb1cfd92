"""The board's host channel: the `mplab` module reads the host's files by Arm semihosting.

lab.guestfs writes large files onto a guest this way (docs/deploy.md). Here QEMU runs on this
host, so the guest reads this host's files: byte-exact, to the end, and with errors a guest
program can handle.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lab.console import GuestError
from lab.netns import Guest

READ_ALL = """
import mplab, hashlib
h = mplab.host_open({path!r})
n = mplab.host_len(h)
buf = bytearray({bufsize})
mv = memoryview(buf)
sha = hashlib.sha256()
got = 0
while True:
    k = mplab.host_readinto(h, buf)
    if not k:
        break
    sha.update(mv[:k])
    got += k
again = mplab.host_readinto(h, buf)
mplab.host_close(h)
print(n, got, again, sha.digest().hex())
"""


@pytest.mark.parametrize("size,bufsize", [(0, 64), (1, 64), (5000, 4096), (300_000, 4096), (3000, 7)])
def test_reads_a_host_file_byte_exact(guest: Guest, tmp_path: Path, size: int, bufsize: int) -> None:
    data = os.urandom(size)
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    assert guest.console is not None
    out = guest.console.exec(READ_ALL.format(path=str(f), bufsize=bufsize), timeout=60.0)
    assert out.split() == [str(size), str(size), "0", hashlib.sha256(data).hexdigest()]


def test_a_missing_host_file_is_enoent(guest: Guest, tmp_path: Path) -> None:
    assert guest.console is not None
    with pytest.raises(GuestError) as e:
        guest.console.exec(f"import mplab\nmplab.host_open({str(tmp_path / 'nope')!r})")
    assert e.value.exc_type == "OSError" and e.value.errno == 2


def test_a_staged_file_lands_on_the_guest_filesystem(guest: Guest, tmp_path: Path) -> None:
    """What lab.guestfs does: host file -> littlefs file, checked by the guest's own hash."""
    data = os.urandom(120_000)
    f = tmp_path / "app.bin"
    f.write_bytes(data)
    assert guest.console is not None
    code = (
        "import mplab, hashlib\n"
        f"h = mplab.host_open({str(f)!r})\n"
        "b = bytearray(4096); m = memoryview(b)\n"
        "with open('/t_host.bin', 'wb') as out:\n"
        "    while True:\n"
        "        k = mplab.host_readinto(h, b)\n"
        "        if not k: break\n"
        "        out.write(m[:k])\n"
        "mplab.host_close(h)\n"
        "s = hashlib.sha256()\n"
        "with open('/t_host.bin', 'rb') as g:\n"
        "    while True:\n"
        "        k = g.readinto(b)\n"
        "        if not k: break\n"
        "        s.update(m[:k])\n"
        "import os; os.remove('/t_host.bin')\n"
        "print(s.digest().hex())\n"
    )
    assert guest.console.exec(code, timeout=60.0).strip() == hashlib.sha256(data).hexdigest()
