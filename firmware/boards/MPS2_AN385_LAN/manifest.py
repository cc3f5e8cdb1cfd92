# Frozen into the firmware:
# - the boot script that mounts the RAM filesystem;
# - asyncio, from the MicroPython tree (as rp2 and esp32 freeze it);
# - ssl, the CPython-style wrapper over the tls module. Boards freeze micropython-lib's ssl
#   package, which the Debian tarball does not carry; modules/ssl.py is our own.
freeze("$(BOARD_DIR)/modules", ("_boot.py", "ssl.py"))
include("$(MPY_DIR)/extmod/asyncio")
