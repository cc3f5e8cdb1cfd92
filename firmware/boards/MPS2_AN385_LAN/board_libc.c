// The few C library functions that lwIP and mbedTLS need beyond shared/libc (the board links
// no libc: -nostdlib).

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "py/mpconfig.h"
#include "shared/timeutils/timeutils.h"

// lwIP's netif_find parses an interface number.
int atoi(const char *s) {
    int sign = 1, n = 0;
    while (*s == ' ' || (*s >= '\t' && *s <= '\r')) {
        s++;
    }
    if (*s == '-' || *s == '+') {
        sign = *s++ == '-' ? -1 : 1;
    }
    while (*s >= '0' && *s <= '9') {
        n = n * 10 + (*s++ - '0');
    }
    return sign * n;
}

#if MICROPY_SSL_MBEDTLS
// mbedTLS checks certificate validity dates against the board's clock (MBEDTLS_HAVE_TIME_DATE).
struct tm *mbedtls_platform_gmtime_r(const time_t *tt, struct tm *tm_buf) {
    timeutils_struct_time_t tm;
    timeutils_seconds_since_epoch_to_struct_time(*tt, &tm);
    tm_buf->tm_year = tm.tm_year - 1900;
    tm_buf->tm_mon = tm.tm_mon - 1;
    tm_buf->tm_mday = tm.tm_mday;
    tm_buf->tm_hour = tm.tm_hour;
    tm_buf->tm_min = tm.tm_min;
    tm_buf->tm_sec = tm.tm_sec;
    tm_buf->tm_wday = (tm.tm_wday + 1) % 7; // struct tm counts from Sunday
    tm_buf->tm_yday = tm.tm_yday - 1;
    tm_buf->tm_isdst = 0;
    return tm_buf;
}
#endif
