# mplab board: QEMU mps2-an385 (Cortex-M3) with its SMSC LAN9118 Ethernet controller,
# lwIP (IPv4 and IPv6), mbedTLS, network.LAN, socket, ssl/tls, asyncio and a RAM filesystem.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'
CFLAGS += -DMICROPY_BOARD_CONFIG_HEADER='"$(BOARD_DIR)/mpconfigboard.h"'

LDSCRIPT = $(BOARD_DIR)/mps2_lan.ld
SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o
SRC_C += shared/timeutils/timeutils.c
MPY_CROSS_FLAGS += -march=armv7m

# The GC heap; the RAM filesystem lives outside it (see modules/_boot.py). Sized so that two
# TLS connections (about 40 KiB each with mbedTLS's 16 KiB input record) and an asyncio
# server fit with room to spare; the AN385 has 4 MiB of SSRAM1 for code, data and heap.
MICROPY_HEAP_SIZE = 2097152

# TLS: mbedTLS (from the pinned mbedtls package, linked into lib/mbedtls by firmware/Makefile),
# configured as upstream's ports are (extmod/mbedtls) plus the board's clock and entropy.
MICROPY_PY_SSL = 1
MICROPY_SSL_MBEDTLS = 1
MBEDTLS_CONFIG_FILE = '"$(BOARD_DIR)/mbedtls_config_board.h"'

# Networking: lwIP (from the pinned lwip package, linked into lib/lwip by firmware/Makefile).
MICROPY_PY_LWIP = 1
MICROPY_VFS_LFS2 = 1
INC += -I$(BOARD_DIR) -I$(BOARD_DIR)/lwip_inc

# Our own main and HAL replace the port's busy-polling ones (see patches/0001).
PORT_SRC_C = \
	$(BOARD_DIR)/board_main.c \
	$(BOARD_DIR)/board_hal.c \
	$(BOARD_DIR)/lan9118.c \
	$(BOARD_DIR)/eth_netif.c \
	$(BOARD_DIR)/network_lan.c \
	$(BOARD_DIR)/lwip_sys.c \
	$(BOARD_DIR)/board_host.c \
	$(BOARD_DIR)/board_hostfile.c \
	$(BOARD_DIR)/board_libc.c \
	$(BOARD_DIR)/mbedtls_port.c


FROZEN_MANIFEST = $(BOARD_DIR)/manifest.py
QSTR_GLOBAL_DEPENDENCIES += $(BOARD_DIR)/mpconfigboard.h $(BOARD_DIR)/mbedtls_config_board.h
