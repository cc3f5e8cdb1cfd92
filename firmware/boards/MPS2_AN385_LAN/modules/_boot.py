# Frozen boot script of the mplab board: mount a littlefs RAM disk at /.
# The disk lives in the AN385's second SSRAM bank (0x20000000), outside the GC heap and the
# firmware image, so it survives soft resets and machine.reset() (QEMU reloads only the image).
import uctypes
import vfs

_DISK_ADDR = const(0x20000000)
_DISK_SIZE = const(1024 * 1024)
# 4 KiB blocks, read and programmed whole, as littlefs runs on the flash of rp2 and esp32
# boards. With 512-byte blocks and littlefs's default 32-byte reads and programs, every small
# access was a call of the Python block device below: writes ran at about 20 KB/s, and
# copying an application onto a node took seconds. Now they run at about 1 MB/s.
_BLOCK_SIZE = const(4096)
_LFS = {"readsize": _BLOCK_SIZE, "progsize": _BLOCK_SIZE, "lookahead": 128}


class RAMDisk:
    def __init__(self):
        # a memoryview: slicing it copies no block into a temporary bytearray
        self.data = memoryview(uctypes.bytearray_at(_DISK_ADDR, _DISK_SIZE))

    def readblocks(self, block, buf, offset=0):
        start = block * _BLOCK_SIZE + offset
        buf[:] = self.data[start : start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        start = block * _BLOCK_SIZE + (offset or 0)
        self.data[start : start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return _DISK_SIZE // _BLOCK_SIZE
        if op == 5:  # block size
            return _BLOCK_SIZE
        if op == 6:  # erase
            return 0
        return None


def _mount():
    disk = RAMDisk()
    try:
        vfs.mount(vfs.VfsLfs2(disk, **_LFS), "/")
    except OSError:
        vfs.VfsLfs2.mkfs(disk, **_LFS)
        vfs.mount(vfs.VfsLfs2(disk, **_LFS), "/")


_mount()
del _mount, RAMDisk
