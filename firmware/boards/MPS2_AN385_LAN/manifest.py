# Frozen into the firmware: the boot script that mounts the RAM filesystem.
freeze("$(BOARD_DIR)/modules", "_boot.py")
