// time module hooks for the mplab board; included by extmod/modtime.c.
// The AN385 has no RTC: time() counts seconds since boot from the port's epoch.

#include "py/obj.h"

static mp_obj_t mp_time_time_get(void) {
    return mp_obj_new_int_from_uint(mp_hal_ticks_ms() / 1000);
}
