// machine module hooks for the mplab board; included by extmod/modmachine.c.

#include "board.h"



static void mp_machine_idle(void) {
    mplab_wait_for_event();
}

static void mp_machine_reset(void) {
    mplab_system_reset();
}

static mp_int_t mp_machine_reset_cause(void) {
    return 0;
}

// ---------------------------------------------------------------------------
// machine.RTC: the board's wall clock (board_hal.c), which ntptime and applications set.
// datetime() takes and gives (year, month, day, weekday, hours, minutes, seconds, subseconds),
// weekday 0 = Monday and subseconds in microseconds, as on esp32.

#include "py/mphal.h"
#include "shared/timeutils/timeutils.h"

typedef struct _machine_rtc_obj_t {
    mp_obj_base_t base;
} machine_rtc_obj_t;

static const machine_rtc_obj_t machine_rtc_obj = {{&machine_rtc_type}};

static mp_obj_t machine_rtc_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 0, 0, false);
    return MP_OBJ_FROM_PTR(&machine_rtc_obj);
}

static mp_obj_t machine_rtc_datetime(size_t n_args, const mp_obj_t *args) {
    if (n_args == 1) {
        uint64_t ns = mp_hal_time_ns();
        timeutils_struct_time_t tm;
        timeutils_seconds_since_epoch_to_struct_time(ns / 1000000000ULL, &tm);
        mp_obj_t tuple[8] = {
            mp_obj_new_int(tm.tm_year),
            mp_obj_new_int(tm.tm_mon),
            mp_obj_new_int(tm.tm_mday),
            mp_obj_new_int(tm.tm_wday),
            mp_obj_new_int(tm.tm_hour),
            mp_obj_new_int(tm.tm_min),
            mp_obj_new_int(tm.tm_sec),
            mp_obj_new_int((ns / 1000) % 1000000),
        };
        return mp_obj_new_tuple(8, tuple);
    }
    mp_obj_t *items;
    mp_obj_get_array_fixed_n(args[1], 8, &items);
    uint64_t seconds = timeutils_seconds_since_epoch(
        mp_obj_get_int(items[0]), mp_obj_get_int(items[1]), mp_obj_get_int(items[2]),
        mp_obj_get_int(items[4]), mp_obj_get_int(items[5]), mp_obj_get_int(items[6]));
    mplab_rtc_set_ns(seconds * 1000000000ULL + (uint64_t)mp_obj_get_int(items[7]) * 1000ULL);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(machine_rtc_datetime_obj, 1, 2, machine_rtc_datetime);

static const mp_rom_map_elem_t machine_rtc_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_datetime), MP_ROM_PTR(&machine_rtc_datetime_obj) },
};
static MP_DEFINE_CONST_DICT(machine_rtc_locals_dict, machine_rtc_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    machine_rtc_type,
    MP_QSTR_RTC,
    MP_TYPE_FLAG_NONE,
    make_new, machine_rtc_make_new,
    locals_dict, &machine_rtc_locals_dict
    );
