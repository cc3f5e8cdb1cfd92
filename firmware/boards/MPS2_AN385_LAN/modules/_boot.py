# Frozen boot script of the mplab board: mount a littlefs RAM disk at /.
# The disk lives in the AN385's second SSRAM bank (0x20000000), outside the GC heap and the
# firmware image, so it survives soft resets and machine.reset() (QEMU reloads only the image).
import uctypes
import vfs

_DISK_ADDR = const(0x20000000)
_DISK_SIZE = const(1024 * 1024)
_BLOCK_SIZE = const(512)


class RAMDisk:
    def __init__(self):
        self.data = uctypes.bytearray_at(_DISK_ADDR, _DISK_SIZE)

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
        vfs.mount(vfs.VfsLfs2(disk), "/")
    except OSError:
        vfs.VfsLfs2.mkfs(disk)
        vfs.mount(vfs.VfsLfs2(disk), "/")


_mount()
del _mount, RAMDisk
