# mplab board: QEMU mps2-an385 (Cortex-M3) with its SMSC LAN9118 Ethernet controller,
# lwIP, network.LAN, socket/usocket, time, select and a RAM filesystem.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'
CFLAGS += -DMICROPY_BOARD_CONFIG_HEADER='"$(BOARD_DIR)/mpconfigboard.h"'

LDSCRIPT = $(BOARD_DIR)/mps2_lan.ld
SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o
MPY_CROSS_FLAGS += -march=armv7m

# The GC heap; the RAM filesystem lives outside it (see modules/_boot.py).
MICROPY_HEAP_SIZE = 1048576

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
	$(BOARD_DIR)/lwip_sys.c


FROZEN_MANIFEST = $(BOARD_DIR)/manifest.py
QSTR_GLOBAL_DEPENDENCIES += $(BOARD_DIR)/mpconfigboard.h
