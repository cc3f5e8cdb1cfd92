// lwIP's system hooks for NO_SYS=1.

#include "py/mphal.h"
#include "lwip/sys.h"

u32_t sys_now(void) {
    return mp_hal_ticks_ms();
}
