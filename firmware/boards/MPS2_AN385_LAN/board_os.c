// os module hooks for the mplab board; included by extmod/modos.c.

#include "py/runtime.h"
#include "board.h"

// os.urandom: bytes from the host's entropy source (board_host.c).
static mp_obj_t mp_os_urandom(mp_obj_t num) {
    mp_int_t n = mp_obj_get_int(num);
    if (n < 0) {
        mp_raise_ValueError(NULL);
    }
    vstr_t vstr;
    vstr_init_len(&vstr, n);
    mplab_entropy_fill((uint8_t *)vstr.buf, n);
    return mp_obj_new_bytes_from_vstr(&vstr);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mp_os_urandom_obj, mp_os_urandom);
