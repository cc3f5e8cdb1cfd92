// The mplab module: read files of the host (the node container) through Arm semihosting.
//
// The emulated UART takes one byte per turn of QEMU's main loop, about 25 KB/s, so copying a
// project onto the guest through the REPL is slow. The lab instead stages a file inside the
// node container and the guest reads it with SYS_OPEN/SYS_READ, which QEMU serves by plain
// read(2) calls: a memory copy, with no UART in the way. This is a lab facility, like the
// semihosting entropy and clock of board_host.c; a real board has no such channel.
//
//   h = mplab.host_open("/tmp/mplab-stage/abc")   # OSError(ENOENT) when the host lacks it
//   n = mplab.host_readinto(h, buf)                # 0 at the end of the file
//   mplab.host_len(h); mplab.host_close(h)

#include <string.h>

#include "py/runtime.h"
#include "py/mperrno.h"
#include "board.h"

#define SYS_OPEN    (0x01)
#define SYS_CLOSE   (0x02)
#define SYS_READ    (0x06)
#define SYS_FLEN    (0x0c)
#define OPEN_MODE_RB (1)

static mp_obj_t mp_mplab_host_open(mp_obj_t path_in) {
    size_t len;
    const char *path = mp_obj_str_get_data(path_in, &len);
    uint32_t args[3] = { (uint32_t)path, OPEN_MODE_RB, len };
    int h = mplab_host_call(SYS_OPEN, args);
    if (h < 0) {
        mp_raise_OSError(MP_ENOENT);
    }
    return MP_OBJ_NEW_SMALL_INT(h);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mp_mplab_host_open_obj, mp_mplab_host_open);

static mp_obj_t mp_mplab_host_readinto(mp_obj_t h_in, mp_obj_t buf_in) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(buf_in, &buf, MP_BUFFER_WRITE);
    uint32_t args[3] = { (uint32_t)mp_obj_get_int(h_in), (uint32_t)buf.buf, buf.len };
    // SYS_READ returns the number of bytes *not* read (all of them at the end of the file).
    int left = mplab_host_call(SYS_READ, args);
    if (left < 0 || (size_t)left > buf.len) {
        mp_raise_OSError(MP_EIO);
    }
    return MP_OBJ_NEW_SMALL_INT(buf.len - left);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mp_mplab_host_readinto_obj, mp_mplab_host_readinto);

static mp_obj_t mp_mplab_host_len(mp_obj_t h_in) {
    uint32_t args[1] = { (uint32_t)mp_obj_get_int(h_in) };
    int n = mplab_host_call(SYS_FLEN, args);
    if (n < 0) {
        mp_raise_OSError(MP_EBADF);
    }
    return mp_obj_new_int(n);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mp_mplab_host_len_obj, mp_mplab_host_len);

static mp_obj_t mp_mplab_host_close(mp_obj_t h_in) {
    uint32_t args[1] = { (uint32_t)mp_obj_get_int(h_in) };
    mplab_host_call(SYS_CLOSE, args);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mp_mplab_host_close_obj, mp_mplab_host_close);

static const mp_rom_map_elem_t mp_module_mplab_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_mplab) },
    { MP_ROM_QSTR(MP_QSTR_host_open), MP_ROM_PTR(&mp_mplab_host_open_obj) },
    { MP_ROM_QSTR(MP_QSTR_host_readinto), MP_ROM_PTR(&mp_mplab_host_readinto_obj) },
    { MP_ROM_QSTR(MP_QSTR_host_len), MP_ROM_PTR(&mp_mplab_host_len_obj) },
    { MP_ROM_QSTR(MP_QSTR_host_close), MP_ROM_PTR(&mp_mplab_host_close_obj) },
};
static MP_DEFINE_CONST_DICT(mp_module_mplab_globals, mp_module_mplab_globals_table);

const mp_obj_module_t mp_module_mplab = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mp_module_mplab_globals,
};

MP_REGISTER_MODULE(MP_QSTR_mplab, mp_module_mplab);
