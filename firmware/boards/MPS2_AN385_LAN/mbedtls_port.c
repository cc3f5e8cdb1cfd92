// mbedTLS hooks of the mplab board: entropy and time (see board_host.c).

#include "py/mpconfig.h"

#if MICROPY_SSL_MBEDTLS

#include "mbedtls_config_board.h"
#include "mbedtls/platform_time.h"
#include "py/mphal.h"
#include "board.h"

int mbedtls_hardware_poll(void *data, unsigned char *output, size_t len, size_t *olen) {
    (void)data;
    mplab_entropy_fill(output, len);
    *olen = len;
    return 0;
}

time_t mplab_mbedtls_time(time_t *timer) {
    time_t now = (time_t)(mp_hal_time_ns() / 1000000000ULL);
    if (timer) {
        *timer = now;
    }
    return now;
}

mbedtls_ms_time_t mbedtls_ms_time(void) {
    return (mbedtls_ms_time_t)(mp_hal_time_ns() / 1000000ULL);
}

#endif
