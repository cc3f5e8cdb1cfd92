// mplab board: boot, REPL loop and soft reset.

#include <stdlib.h>

#include "py/compile.h"
#include "py/gc.h"
#include "py/mperrno.h"
#include "py/runtime.h"
#include "py/stackctrl.h"
#include "shared/runtime/gchelper.h"
#include "shared/runtime/pyexec.h"
#include "board.h"
#include "eth_netif.h"

static uint32_t gc_heap[MICROPY_HEAP_SIZE / sizeof(uint32_t)];

int main(int argc, char **argv) {
    mp_stack_ctrl_init();
    mp_stack_set_limit(40 * 1024);
    mplab_board_init();
    gc_init(gc_heap, (char *)gc_heap + MICROPY_HEAP_SIZE);
    mplab_lwip_init();

    for (;;) {
        mp_init();
        // sys.path = ['', '.frozen', '/lib'], as on rp2 and esp32: mip and `mplab install`
        // put packages in /lib.
        mp_obj_list_append(mp_sys_path, mp_obj_new_str_from_cstr("/lib"));

        // Mounts the RAM filesystem at / (modules/_boot.py), then the user's scripts.
        pyexec_frozen_module("_boot.py", false);
        int ret = pyexec_file_if_exists("boot.py");
        if (ret & PYEXEC_FORCED_EXIT) {
            goto soft_reset;
        }
        if (pyexec_mode_kind == PYEXEC_MODE_FRIENDLY_REPL) {
            ret = pyexec_file_if_exists("main.py");
            if (ret & PYEXEC_FORCED_EXIT) {
                goto soft_reset;
            }
        }

        for (;;) {
            if (pyexec_mode_kind == PYEXEC_MODE_RAW_REPL) {
                if (pyexec_raw_repl() != 0) {
                    break;
                }
            } else {
                if (pyexec_friendly_repl() != 0) {
                    break;
                }
            }
        }

    soft_reset:
        mp_printf(&mp_plat_print, "MPY: soft reboot\n");
        gc_sweep_all();
        mp_deinit();
    }
}

void gc_collect(void) {
    gc_collect_start();
    gc_helper_collect_regs_and_stack();
    gc_collect_end();
}

void nlr_jump_fail(void *val) {
    mp_printf(&mp_plat_print, "FATAL: uncaught NLR %p\n", val);
    exit(1);
}
